//! The kill soak's sender: one task per lane of the [`Ledger`], each posting its lane's next
//! Remote-Write 1.0 request as soon as the previous one is answered, until told to stop. A
//! request's samples count as acknowledged only when it was answered 2xx; anything else (a refusal,
//! a reset connection when Ringtail is killed mid-request, a refused connection after) leaves them
//! unacknowledged, and the lane goes on with new samples, as it cannot know what was stored.

use super::ledger::{Lane, Ledger};
use anyhow::{anyhow, Result};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Pause after a failed request, so a lane does not spin on a dead port until it is stopped.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_millis(10);

/// What the lanes saw, summed over lanes and rounds.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct SenderStats {
    pub(crate) requests_acknowledged: u64,
    /// Answers other than 2xx, by status.
    pub(crate) refused_by_status: BTreeMap<u16, u64>,
    /// Requests that got no answer (connection refused or reset).
    pub(crate) failed: u64,
    /// 200 answers whose body says some samples were skipped, with the first such body.
    pub(crate) partial_acknowledgements: u64,
    pub(crate) first_partial_body: Option<String>,
    /// Lane-seconds spent writing.
    pub(crate) writing_seconds: f64,
}

impl SenderStats {
    pub(crate) fn add(&mut self, other: SenderStats) {
        self.requests_acknowledged += other.requests_acknowledged;
        for (status, count) in other.refused_by_status {
            *self.refused_by_status.entry(status).or_default() += count;
        }
        self.failed += other.failed;
        self.partial_acknowledgements += other.partial_acknowledgements;
        if self.first_partial_body.is_none() {
            self.first_partial_body = other.first_partial_body;
        }
        self.writing_seconds += other.writing_seconds;
    }
}

/// Moves the ledger's lanes into one writing task each, posting to `url` until `stop` is set.
pub(crate) fn start(
    ledger: &mut Ledger,
    client: &reqwest::Client,
    url: &str,
    per_series: u64,
    stop: &Arc<AtomicBool>,
) -> Vec<JoinHandle<(Lane, SenderStats)>> {
    let write_url = format!("{url}/api/v1/write");
    ledger
        .lanes
        .drain(..)
        .map(|lane| tokio::spawn(write_lane(lane, client.clone(), write_url.clone(), per_series, stop.clone())))
        .collect()
}

/// Waits for the lanes and puts them back into the ledger, in their order.
pub(crate) async fn join(lanes: Vec<JoinHandle<(Lane, SenderStats)>>, ledger: &mut Ledger) -> Result<SenderStats> {
    let mut total = SenderStats::default();
    for handle in lanes {
        let (lane, stats) = handle.await.map_err(|e| anyhow!("BUG: a sender lane failed: {e}"))?;
        ledger.lanes.push(lane);
        total.add(stats);
    }
    Ok(total)
}

async fn write_lane(
    mut lane: Lane,
    client: reqwest::Client,
    url: String,
    per_series: u64,
    stop: Arc<AtomicBool>,
) -> (Lane, SenderStats) {
    let mut stats = SenderStats::default();
    let started = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let (body, range) = lane.next_request(per_series);
        let answer = crate::remote_write_request(&client, &url, body).send().await;
        match answer {
            Ok(response) if response.status().is_success() => {
                lane.settle(range, true);
                stats.requests_acknowledged += 1;
                if response.status() == reqwest::StatusCode::OK {
                    stats.partial_acknowledgements += 1;
                    if stats.first_partial_body.is_none() {
                        stats.first_partial_body = Some(response.text().await.unwrap_or_default());
                    }
                }
            }
            Ok(response) => {
                lane.settle(range, false);
                *stats.refused_by_status.entry(response.status().as_u16()).or_default() += 1;
                tokio::time::sleep(PAUSE_AFTER_FAILURE).await;
            }
            Err(_) => {
                lane.settle(range, false);
                stats.failed += 1;
                tokio::time::sleep(PAUSE_AFTER_FAILURE).await;
            }
        }
    }
    stats.writing_seconds = started.elapsed().as_secs_f64();
    (lane, stats)
}
