//! Ringtail's serving side: configuration, the HTTP router (readiness, remote-write, the
//! Prometheus query API, self-metrics) and the wiring of store, ingest and query into one server.
#![forbid(unsafe_code)]

pub mod adapter;
pub mod config;
pub mod http;
pub mod k8s;
pub mod scrape;
pub mod server;

/// How many query evaluations run at once, on each of the two query surfaces (the adapter's
/// metric requests, the Prometheus API's queries): two per core. The rest wait their turn without
/// a thread each, so a burst of requests costs queueing, not hundreds of blocking-pool threads
/// each with its own allocator heap.
pub fn evaluation_slots() -> usize {
    2 * std::thread::available_parallelism().map_or(1, |n| n.get())
}
