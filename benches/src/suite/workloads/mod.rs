//! The workloads, one file each, and what they share: sending a pre-encoded request batch in
//! lanes that keep every series in time order, and dispatch by [`WorkloadKey`].
//!
//! Each workload file gives `info` (what it is, its parameters and figures, for the report),
//! `estimate_seconds` (for the plan and the progress bar) and `run`.

pub mod adapter_api;
pub mod churn;
pub mod freshness;
pub mod promql;
pub mod promql_selective;
pub mod remote_write;
pub mod scrape;

use super::fleet::RequestBatch;
use super::options::{Scale, WorkloadKey};
use super::systems::remote_write;
use super::Suite;
use anyhow::{anyhow, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Senders writing at once, like Prometheus's remote-write shards.
pub const SEND_CONCURRENCY: usize = 4;
/// The report's line about repeats.
pub fn repeats_text(scale: &Scale) -> String {
    if scale.repeat_small_only && scale.repeats > 1 {
        format!(
            "repeats: {} at the smaller half of the points, 1 at the larger half (--repeat-small-only)",
            scale.repeats
        )
    } else {
        format!("repeats: {} at every point", scale.repeats)
    }
}

/// Estimated seconds of workload `key` at `scale`.
pub fn estimate_seconds(key: WorkloadKey, scale: &Scale) -> f64 {
    match key {
        WorkloadKey::RemoteWrite => remote_write::estimate_seconds(scale),
        WorkloadKey::Scrape => scrape::estimate_seconds(scale),
        WorkloadKey::Promql => promql::estimate_seconds(scale),
        WorkloadKey::PromqlSelective => promql_selective::estimate_seconds(scale),
        WorkloadKey::AdapterApi => adapter_api::estimate_seconds(scale),
        WorkloadKey::Churn => churn::estimate_seconds(scale),
        WorkloadKey::Freshness => freshness::estimate_seconds(scale),
    }
}

/// Runs workload `key`, recording into `suite.results`.
pub async fn run(key: WorkloadKey, suite: &mut Suite) -> Result<()> {
    match key {
        WorkloadKey::RemoteWrite => remote_write::run(suite).await,
        WorkloadKey::Scrape => scrape::run(suite).await,
        WorkloadKey::Promql => promql::run(suite).await,
        WorkloadKey::PromqlSelective => promql_selective::run(suite).await,
        WorkloadKey::AdapterApi => adapter_api::run(suite).await,
        WorkloadKey::Churn => churn::run(suite).await,
        WorkloadKey::Freshness => freshness::run(suite).await,
    }
}

/// How a batch went: wall time from the first send to the last response, and requests that
/// failed after retries.
pub struct SendOutcome {
    pub wall: Duration,
    pub failed_requests: u64,
}

/// Sends every request of `batch` to `url` with [`SEND_CONCURRENCY`] lanes; request `i` goes to
/// lane `(i % per_slice) % lanes`, so the requests carrying one series are sent one after another
/// and each system sees every series in time order. A batch where every request failed is an
/// error (the system is down); otherwise failures are counted.
pub async fn send_batch(http: &reqwest::Client, url: &str, batch: &Arc<RequestBatch>) -> Result<SendOutcome> {
    let lanes = SEND_CONCURRENCY.min(batch.per_slice.max(1));
    let failed = Arc::new(AtomicU64::new(0));
    let last_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(lanes);
    for lane in 0..lanes {
        let (http, url, batch, failed, last_error) =
            (http.clone(), url.to_string(), batch.clone(), failed.clone(), last_error.clone());
        tasks.push(tokio::spawn(async move {
            let per_slice = batch.per_slice.max(1);
            for (i, body) in batch.bodies.iter().enumerate() {
                if (i % per_slice) % lanes != lane {
                    continue;
                }
                if let Err(e) = remote_write(&http, &url, body.clone()).await {
                    failed.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut slot) = last_error.lock() {
                        *slot = Some(format!("{e:#}"));
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.map_err(|e| anyhow!("a sender task failed: {e}"))?;
    }
    let failed_requests = failed.load(Ordering::Relaxed);
    if failed_requests as usize == batch.bodies.len() && failed_requests > 0 {
        let error = last_error.lock().ok().and_then(|e| e.clone()).unwrap_or_default();
        return Err(anyhow!("every request to {url} failed; the last: {error}"));
    }
    Ok(SendOutcome { wall: started.elapsed(), failed_requests })
}

pub use tsdb::now_ms;
