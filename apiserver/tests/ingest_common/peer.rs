//! `peer` decides whether a test that needs a real peer program (Prometheus, VictoriaMetrics,
//! vmagent) runs. Run alone with `cargo test` on a machine without the peers, such a test says on
//! stderr that it is skipped and why, then passes; `scripts/test-all` installs the peers and sets
//! `RINGTAIL_REQUIRE_PEERS=1`, under which a missing peer fails the test, so CI never skips one.
//! Shared by `ingest_common` and `promql_support` (included by path).

use std::io::Write;
use std::path::Path;

/// A peer program and the Debian package that installs it.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub binary: &'static str,
    pub package: &'static str,
}

/// Prometheus 2.42 (Debian's `prometheus`).
pub const PROMETHEUS: Peer = Peer { binary: "/usr/bin/prometheus", package: "prometheus" };
/// promtool 2.42 (shipped in Debian's `prometheus`).
pub const PROMTOOL: Peer = Peer { binary: "/usr/bin/promtool", package: "prometheus" };
/// VictoriaMetrics single-node 1.79 (Debian's `victoria-metrics`).
pub const VICTORIA_METRICS: Peer = Peer { binary: "/usr/bin/victoria-metrics", package: "victoria-metrics" };
/// vmagent 1.79 (shipped in Debian's `victoria-metrics`).
pub const VMAGENT: Peer = Peer { binary: "/usr/bin/vmagent", package: "victoria-metrics" };
/// vmauth 1.79 (shipped in Debian's `victoria-metrics`): routes requests by bearer token.
pub const VMAUTH: Peer = Peer { binary: "/usr/bin/vmauth", package: "victoria-metrics" };

/// Environment variable that turns a missing peer from a skip into a failure when set to `1`.
pub const REQUIRE_PEERS_ENV: &str = "RINGTAIL_REQUIRE_PEERS";

/// Whether `test` can run: `true` when every peer in `peers` is installed. Otherwise it prints
/// `SKIPPED: <test>: <what is missing and how to install it>` and returns `false` (the test then
/// returns at once), or, with `RINGTAIL_REQUIRE_PEERS=1`, panics with the same reason.
#[must_use]
pub fn peers_installed(test: &str, peers: &[Peer]) -> bool {
    let missing: Vec<String> = peers
        .iter()
        .filter(|peer| !Path::new(peer.binary).is_file())
        .map(|peer| {
            format!("{} not found — install Debian's `{}` package (scripts/test-all does)", peer.binary, peer.package)
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    let reason = missing.join("; ");
    if std::env::var(REQUIRE_PEERS_ENV).is_ok_and(|v| v == "1") {
        panic!("{test}: {reason} ({REQUIRE_PEERS_ENV}=1 makes a missing peer a failure, not a skip)");
    }
    // Written to stderr directly: libtest captures `eprintln!` of passing tests, and a skip must be
    // visible in a plain `cargo test` run.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {reason}");
    false
}
