//! `Exporter` is the bench's own fleet of scrape targets: one HTTP listener per target on its own
//! loopback address (`127.1.x.y`, all on one port, so each target has a distinct `instance` as
//! pods do), each serving `/metrics` rendered on request by a shared page function. It counts
//! the pages served per target, which is how the scrape workloads know how many samples each
//! system actually ingested.

use anyhow::{anyhow, Context, Result};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Renders target `index`'s page into the buffer (cleared first by the renderer).
pub type PageRenderer = Arc<dyn Fn(usize, &mut String) + Send + Sync>;

#[derive(Clone)]
struct TargetState {
    index: usize,
    render: PageRenderer,
    hits: Arc<Vec<AtomicU64>>,
}

/// Running scrape targets; the listeners stop when this is dropped.
pub struct Exporter {
    /// `host:port` of each target, in index order.
    pub targets: Vec<String>,
    hits: Arc<Vec<AtomicU64>>,
    tasks: Vec<JoinHandle<()>>,
}

/// The loopback address of target `index` (127.1.0.1, 127.1.0.2, …; 250 per third octet).
fn target_ip(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, (index / 250) as u8, (index % 250 + 1) as u8)
}

impl Exporter {
    /// Starts `count` targets (at most 62 500) serving pages from `render`.
    pub async fn start(count: usize, render: PageRenderer) -> Result<Exporter> {
        if count > 62_500 {
            return Err(anyhow!("{count} scrape targets: at most 62500 loopback addresses are used"));
        }
        let hits: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
        // One port for all addresses; retried with a new port if another program holds it on one.
        let mut last_error = None;
        for _ in 0..5 {
            let port = crate::free_port().map_err(|e| anyhow!(e))?;
            match Self::bind_all(count, port).await {
                Ok(listeners) => {
                    let mut tasks = Vec::with_capacity(count);
                    let mut targets = Vec::with_capacity(count);
                    for (index, listener) in listeners.into_iter().enumerate() {
                        targets.push(format!("{}:{port}", target_ip(index)));
                        let state = TargetState { index, render: render.clone(), hits: hits.clone() };
                        let router = Router::new().route("/metrics", get(serve_page)).with_state(state);
                        tasks.push(tokio::spawn(async move {
                            // A listener error ends this target only; the scrapers report it as down.
                            let _ = axum::serve(listener, router).await;
                        }));
                    }
                    return Ok(Exporter { targets, hits, tasks });
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow!("no port found for the exporter")))
    }

    async fn bind_all(count: usize, port: u16) -> Result<Vec<tokio::net::TcpListener>> {
        let mut listeners = Vec::with_capacity(count);
        for index in 0..count {
            let address = (target_ip(index), port);
            listeners.push(
                tokio::net::TcpListener::bind(address)
                    .await
                    .with_context(|| format!("binding scrape target {}:{port}", address.0))?,
            );
        }
        Ok(listeners)
    }

    /// Pages served to all scrapers so far, summed over targets.
    pub fn total_hits(&self) -> u64 {
        self.hits.iter().map(|h| h.load(Ordering::Relaxed)).sum()
    }

    /// The fewest pages any one target has served.
    pub fn min_hits(&self) -> u64 {
        self.hits.iter().map(|h| h.load(Ordering::Relaxed)).min().unwrap_or(0)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn serve_page(State(state): State<TargetState>) -> impl IntoResponse {
    let mut page = String::new();
    (state.render)(state.index, &mut page);
    state.hits[state.index].fetch_add(1, Ordering::Relaxed);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_and_counts_pages() -> Result<()> {
        let render: PageRenderer = Arc::new(|index, page: &mut String| {
            page.clear();
            page.push_str(&format!("up_value{{target=\"{index}\"}} 1\n"));
        });
        let exporter = Exporter::start(3, render).await?;
        let client = reqwest::Client::builder().no_proxy().build()?;
        let body = client.get(format!("http://{}/metrics", exporter.targets[2])).send().await?.text().await?;
        assert_eq!(body, "up_value{target=\"2\"} 1\n");
        assert_eq!(exporter.total_hits(), 1);
        assert_eq!(exporter.min_hits(), 0);
        Ok(())
    }
}
