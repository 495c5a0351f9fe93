//! `ports` hands out the loopback ports the tests start servers on, and tells whether the server
//! answering on one is the one a test started. Tests run in parallel threads, so a port is handed
//! out at most once per test process; it comes from below the kernel's ephemeral range (32768+),
//! where no outgoing connection of a running test can be holding it; and it is bound once to show
//! nobody listens there now. Another program may still take it before the server binds it, so a
//! harness checks [`serves_data_dir`] after the server is ready and starts again when it is not.
#![allow(dead_code)]

use rand::Rng;
use std::collections::HashSet;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

/// The ports handed out come from `FIRST_PORT..LAST_PORT`.
const FIRST_PORT: u16 = 20_000;
const LAST_PORT: u16 = 32_000;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A loopback port nobody listens on right now and no other test of this process was given.
pub fn free_port() -> u16 {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    let span = LAST_PORT - FIRST_PORT;
    let start = rand::thread_rng().gen_range(0..span);
    for step in 0..span {
        let port = FIRST_PORT + (start + step) % span;
        if handed_out.contains(&port) || TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        handed_out.insert(port);
        return port;
    }
    panic!("no free loopback port in {FIRST_PORT}..{LAST_PORT}");
}

/// Whether the Ringtail answering at `base_url` stores into `data_dir` (its `data-dir` flag):
/// `false` when another server took the port first.
pub async fn serves_data_dir(base_url: &str, data_dir: &Path) -> bool {
    let client = reqwest::Client::builder().no_proxy().build().expect("HTTP client");
    let Ok(response) = client.get(format!("{base_url}/api/v1/status/flags")).send().await else {
        return false;
    };
    let Ok(body) = response.json::<serde_json::Value>().await else {
        return false;
    };
    body["data"]["data-dir"].as_str() == Some(&data_dir.display().to_string())
}
