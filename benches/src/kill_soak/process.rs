//! `RingtailProcess` is one run of the real `ringtail serve` binary under the kill soak: spawned
//! on a fresh loopback port over the soak's data directory, polled until `/-/ready` answers 200,
//! and ended with SIGKILL through its own `Child` handle (never by name). Also the data
//! directory's size, read at each kill.

use anyhow::{anyhow, Context, Result};
use std::io::Write as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How often `/-/ready` is polled while Ringtail starts.
const READY_POLL: Duration = Duration::from_millis(5);

/// A running `ringtail serve`; killed with SIGKILL and reaped on drop.
pub(crate) struct RingtailProcess {
    child: Child,
    pub(crate) url: String,
    spawned_at: Instant,
}

impl RingtailProcess {
    /// Starts `binary serve --data-dir data_dir --listen 127.0.0.1:<free port> extra_args…`,
    /// appending its output to `log` after a line naming `label`.
    pub(crate) fn spawn(
        binary: &Path,
        data_dir: &Path,
        log: &Path,
        label: &str,
        extra_args: &[String],
    ) -> Result<Self> {
        let port = crate::free_port().map_err(|e| anyhow!(e))?;
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        writeln!(out, "=== kill soak: {label} (port {port}) ===")
            .with_context(|| format!("writing {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log handle")?;
        let spawned_at = Instant::now();
        let child = Command::new(binary)
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--standalone")
            .args(extra_args)
            .env("RINGTAIL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(RingtailProcess { child, url: format!("http://127.0.0.1:{port}"), spawned_at })
    }

    /// Polls `/-/ready` until it answers 200 and returns the time since the spawn; an error when
    /// the process exits first or `timeout` passes.
    pub(crate) async fn wait_ready(&mut self, client: &reqwest::Client, timeout: Duration) -> Result<Duration> {
        let url = format!("{}/-/ready", self.url);
        loop {
            if let Ok(response) = client.get(&url).timeout(Duration::from_secs(1)).send().await {
                if response.status() == reqwest::StatusCode::OK {
                    return Ok(self.spawned_at.elapsed());
                }
            }
            if let Some(status) = self.child.try_wait().context("polling the ringtail process")? {
                return Err(anyhow!("ringtail exited before it was ready: {status}"));
            }
            if self.spawned_at.elapsed() > timeout {
                return Err(anyhow!("ringtail was not ready {timeout:?} after it was started"));
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }

    /// Time since the spawn.
    pub(crate) fn age(&self) -> Duration {
        self.spawned_at.elapsed()
    }

    /// Sends SIGKILL (what `Child::kill` does on Unix) and reaps the process. `Ok(false)` when it
    /// had already exited by itself.
    pub(crate) fn kill(mut self) -> Result<bool> {
        let exited_before = self.child.try_wait().context("polling the ringtail process")?.is_some();
        if !exited_before {
            self.child.kill().context("sending SIGKILL to ringtail")?;
        }
        self.child.wait().context("reaping ringtail")?;
        Ok(!exited_before)
    }
}

impl Drop for RingtailProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
