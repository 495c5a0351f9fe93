//! Shared workload generators for Ringtail benchmarks.
#![forbid(unsafe_code)]
