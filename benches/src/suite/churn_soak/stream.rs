//! `send` is the soak's Remote-Write stream: every scrape interval, one sample per live series
//! timestamped with the send time, encoded once and sent to every system at once (each over the
//! suite's lanes, each series in time order). At every generation boundary all pods are replaced
//! by pods of the next generation (new `pod` and `instance` values, same namespaces, apps, nodes
//! and metric names), so the old generation's series receive nothing more and die.

use super::SoakPlan;
use crate::suite::fleet::{encode_requests, write_series, Pod, WriteSeries, DATA_STEP_MS};
use crate::suite::systems::SystemKind;
use crate::suite::workloads::{now_ms, send_batch};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const JOB: &str = "kubernetes-pods";
const SAMPLES_PER_REQUEST: usize = 2_000;

/// How the stream went.
#[derive(Clone, Debug, Default)]
pub struct StreamStats {
    /// Scrape intervals sent (each carries one sample per live series).
    pub ticks: u64,
    /// Ticks whose sending to the slowest system took longer than the scrape interval (the next
    /// tick then starts late, for every system alike).
    pub late_ticks: u64,
    /// Samples sent to each system.
    pub samples_per_system: u64,
    /// Generations started.
    pub generations: u64,
    pub per_system: BTreeMap<SystemKind, SystemSendStats>,
}

/// One system's side of the stream.
#[derive(Clone, Debug, Default)]
pub struct SystemSendStats {
    /// Requests refused after the sender's retries (or ticks where every request failed).
    pub failed_requests: u64,
    /// The longest one tick took to be acknowledged by this system.
    pub slowest_tick: Duration,
    pub last_error: Option<String>,
}

/// Sends the stream to every `(system, write URL)` until `stop`.
pub async fn send(
    plan: SoakPlan,
    targets: Vec<(SystemKind, String)>,
    http: reqwest::Client,
    started: Instant,
    stop: Arc<AtomicBool>,
) -> StreamStats {
    let mut stats = StreamStats::default();
    for (kind, _) in &targets {
        stats.per_system.insert(*kind, SystemSendStats::default());
    }
    let mut ticker = tokio::time::interval(plan.scrape_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut generation = None;
    let mut series: Vec<WriteSeries> = Vec::new();
    for step in 0.. {
        ticker.tick().await;
        let elapsed = started.elapsed();
        if stop.load(Ordering::Relaxed) || elapsed >= plan.duration {
            break;
        }
        let now_generation = plan.generation_at(elapsed);
        if generation != Some(now_generation) {
            series = generation_series(&plan, now_generation);
            generation = Some(now_generation);
            stats.generations += 1;
        }
        // `encode_requests` stamps step s at first + s × DATA_STEP_MS; choosing `first` so this
        // step lands on now keeps sample time equal to wall time, as a live sender's is.
        let first_step_ms = now_ms() - step * DATA_STEP_MS;
        let batch = Arc::new(encode_requests(&series, step..step + 1, first_step_ms, 1, SAMPLES_PER_REQUEST));
        let tick_started = Instant::now();
        let sends: Vec<_> = targets
            .iter()
            .map(|(kind, url)| {
                let (http, url, batch, kind) = (http.clone(), url.clone(), batch.clone(), *kind);
                tokio::spawn(async move {
                    let outcome = send_batch(&http, &url, &batch).await;
                    (kind, outcome, tick_started.elapsed(), batch.bodies.len() as u64)
                })
            })
            .collect();
        for send in sends {
            let Ok((kind, outcome, took, requests)) = send.await else { continue };
            let Some(system) = stats.per_system.get_mut(&kind) else { continue };
            system.slowest_tick = system.slowest_tick.max(took);
            match outcome {
                Ok(outcome) => system.failed_requests += outcome.failed_requests,
                Err(e) => {
                    system.failed_requests += requests;
                    system.last_error = Some(format!("{e:#}"));
                }
            }
        }
        stats.ticks += 1;
        stats.samples_per_system += batch.samples;
        if tick_started.elapsed() > plan.scrape_interval {
            stats.late_ticks += 1;
        }
    }
    stats
}

/// Every series of generation `generation`'s pods.
fn generation_series(plan: &SoakPlan, generation: u64) -> Vec<WriteSeries> {
    let pods: Vec<Pod> = (0..plan.pods).map(|i| Pod::new(i, generation as usize)).collect();
    write_series(&pods, plan.series_per_pod, JOB)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_generation_renames_every_pod() {
        let plan = crate::suite::churn_soak::ChurnSoakOptions {
            out: None,
            quick: true,
            duration: None,
            retention: None,
            generation_every: None,
            scrape_interval: None,
            pods: Some(50),
            series_per_pod: Some(20),
            probe_every: None,
            ringtail_storage_size: None,
        }
        .plan()
        .unwrap();
        let pod_values = |generation| -> HashSet<String> {
            generation_series(&plan, generation)
                .iter()
                .flat_map(|s| s.labels.iter().filter(|l| l.name == "pod").map(|l| l.value.clone()))
                .collect()
        };
        let (first, second) = (pod_values(0), pod_values(1));
        assert_eq!((first.len(), second.len()), (50, 50));
        assert!(first.is_disjoint(&second));
        assert_eq!(generation_series(&plan, 3).len(), 1000);
    }
}
