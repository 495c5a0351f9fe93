//! The server's stop signal is a `watch::Receiver<bool>` that turns true once, when shutdown
//! begins; every listener and background loop takes one. [`stopped`] waits for it,
//! [`spawn_periodic`] runs a refresh at a fixed period until it, and [`spawn_stream`] drains a
//! stream (a Kubernetes watch) until it.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Resolves once `shutdown` is true (or its sender is gone). The watch guard is dropped inside,
/// keeping callers `Send`.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Spawns a task that hands every item of `stream` to `on_item` until the stream ends or
/// `shutdown` turns true.
pub(crate) fn spawn_stream<S, F>(stream: S, mut shutdown: watch::Receiver<bool>, mut on_item: F) -> JoinHandle<()>
where
    S: futures::Stream + Send + 'static,
    F: FnMut(S::Item) + Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            let item = tokio::select! {
                item = futures::StreamExt::next(&mut stream) => item,
                _ = stopped(&mut shutdown) => return,
            };
            match item {
                Some(item) => on_item(item),
                None => return,
            }
        }
    })
}

/// Spawns a task that calls `refresh` on `target` every `period` (first after one period) until
/// `shutdown` turns true or `target` is dropped; a refresh under way when shutdown begins is
/// abandoned, never awaited.
pub(crate) fn spawn_periodic<T, F, Fut>(
    target: &Arc<T>,
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
    refresh: F,
) -> JoinHandle<()>
where
    T: Send + Sync + 'static,
    F: Fn(Arc<T>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let target: Weak<T> = Arc::downgrade(target);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = stopped(&mut shutdown) => return,
            }
            let Some(target) = target.upgrade() else { return };
            tokio::select! {
                _ = refresh(target) => {}
                _ = stopped(&mut shutdown) => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn periodic_refresh_runs_until_shutdown_even_mid_refresh() {
        let count = Arc::new(AtomicUsize::new(0));
        let (stop, stop_rx) = watch::channel(false);
        let task = spawn_periodic(&count, Duration::from_millis(5), stop_rx, |count| async move {
            if count.fetch_add(1, Ordering::SeqCst) >= 2 {
                std::future::pending::<()>().await; // a refresh that never answers
            }
        });
        while count.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), task).await.expect("stops on shutdown").unwrap();
    }

    #[tokio::test]
    async fn periodic_refresh_ends_with_its_target() {
        let target = Arc::new(());
        let (_stop, stop_rx) = watch::channel(false);
        let task = spawn_periodic(&target, Duration::from_millis(5), stop_rx, |_| async {});
        drop(target);
        tokio::time::timeout(Duration::from_secs(2), task).await.expect("stops without its target").unwrap();
    }
}
