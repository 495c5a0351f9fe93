//! The Ringtail time-series store.
//!
//! PROVISIONAL map (the ring store issue fills it in): `labels` (series identity), `matcher`
//! (selector conditions), `sample` (points and the staleness marker), `error`, and `db` (the
//! public API: append, select, label listing, stats).
#![forbid(unsafe_code)]

mod db;
mod error;
mod labels;
mod matcher;
mod sample;

pub use db::{AppendReport, Db, Options, Rejection, SelectedSeries, SeriesId, SeriesSamples, Stats};
pub use error::{Error, RejectReason};
pub use labels::{Label, Labels, METRIC_NAME};
pub use matcher::{MatchOp, Matcher};
pub use sample::{is_stale_nan, stale_nan, Sample, STALE_NAN_BITS};
