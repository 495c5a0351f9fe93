//! Ringtail's ingestion: the Prometheus remote-write receiver, the exposition-format parser and
//! the standalone scraper. Everything here writes into the tsdb store; nothing reads from it.
#![forbid(unsafe_code)]
