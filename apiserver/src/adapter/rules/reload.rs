//! `run` keeps the adapter rules in step with `--adapter-config`: the file is re-read when its
//! contents change (polled, which also follows a ConfigMap's symlink swap) and on SIGHUP. A new
//! file that does not load or compile is rejected with the error logged, and the rules in force
//! stay as they were.

use crate::adapter::provider::{ObjectResolver, Provider};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Outcome of one reload attempt.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReloadOutcome {
    Unchanged,
    Reloaded { custom_rules: usize, external_rules: usize },
    Rejected(String),
}

/// Re-reads `path` if its bytes differ from `last` (or when `force`), swapping the rules in on
/// success. `last` is updated either way, so a bad file is reported once, not every poll.
pub(crate) fn reload_if_changed(
    path: &Path,
    last: &mut Option<Vec<u8>>,
    force: bool,
    rate_window: Duration,
    provider: &Provider,
) -> ReloadOutcome {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            // A ConfigMap update briefly removes the file; keep the rules and look again later.
            return if force {
                ReloadOutcome::Rejected(format!("cannot read {}: {e}", path.display()))
            } else {
                ReloadOutcome::Unchanged
            };
        }
    };
    if !force && last.as_deref() == Some(bytes.as_slice()) {
        return ReloadOutcome::Unchanged;
    }
    *last = Some(bytes);
    let resolver: &dyn ObjectResolver = provider.resolver().as_ref();
    match super::load_rules(Some(path), rate_window, resolver) {
        Ok((rules, warnings)) => {
            for warning in warnings {
                tracing::warn!(path = %path.display(), "{warning}");
            }
            let outcome =
                ReloadOutcome::Reloaded { custom_rules: rules.custom.len(), external_rules: rules.external.len() };
            provider.replace_rules(rules);
            outcome
        }
        Err(e) => ReloadOutcome::Rejected(e.to_string()),
    }
}

/// Watches `path` every `poll` and on SIGHUP until `shutdown` turns true.
pub async fn run(
    path: PathBuf,
    provider: Arc<Provider>,
    rate_window: Duration,
    poll: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut last = std::fs::read(&path).ok();
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP; the adapter config is still reloaded on change");
            None
        }
    };
    let mut ticker = tokio::time::interval(poll.max(Duration::from_millis(50)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let force = tokio::select! {
            _ = ticker.tick() => false,
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        let path_for_task = path.clone();
        let provider_for_task = provider.clone();
        let mut last_for_task = last.take();
        let result = tokio::task::spawn_blocking(move || {
            let outcome = reload_if_changed(&path_for_task, &mut last_for_task, force, rate_window, &provider_for_task);
            (outcome, last_for_task)
        })
        .await;
        match result {
            Ok((outcome, new_last)) => {
                last = new_last;
                match outcome {
                    ReloadOutcome::Unchanged => {}
                    ReloadOutcome::Reloaded { custom_rules, external_rules } => {
                        tracing::info!(path = %path.display(), custom_rules, external_rules, "adapter config reloaded")
                    }
                    ReloadOutcome::Rejected(error) => {
                        tracing::error!(path = %path.display(), %error, "new adapter config rejected; keeping the previous rules")
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "adapter config reload task failed"),
        }
    }
}
