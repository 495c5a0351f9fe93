//! `MachineInfo` is the description of the machine and software a report was measured on:
//! cores, CPU model, memory, kernel, the versions of every system under test and the git commit.

use serde::Serialize;
use std::process::Command;

/// The machine and software versions.
#[derive(Clone, Debug, Serialize)]
pub struct MachineInfo {
    pub cores: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
    pub ringtail_version: String,
    pub prometheus_version: String,
    pub victoria_metrics_version: String,
    pub git_commit: String,
    pub load_average_at_start: String,
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let first = text.lines().find(|l| !l.trim().is_empty())?.trim().to_string();
    Some(first)
}

/// What `git args` printed on standard output, trimmed; `None` when git failed (its complaint on
/// standard error is not a commit).
fn git_stdout(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Reads `/proc`, runs `--version` of each system and `git`; anything unreadable is "unknown".
pub async fn describe() -> MachineInfo {
    let unknown = || "unknown".to_string();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(unknown);
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kib| kib.parse::<f64>().ok()))
        .map(|kib| kib / (1024.0 * 1024.0))
        .unwrap_or(f64::NAN);
    let ringtail_version = crate::ringtail_bin()
        .ok()
        .and_then(|bin| command_output(&bin.display().to_string(), &["--version"]))
        .unwrap_or_else(unknown);
    // victoria-metrics 1.79 prints nothing for -version in Debian's build; the package says it.
    let victoria_metrics_version = command_output("/usr/bin/victoria-metrics", &["-version"])
        .or_else(|| command_output("dpkg-query", &["-W", "-f", "${Version}", "victoria-metrics"]))
        .unwrap_or_else(unknown);
    let git_commit = git_stdout(&["rev-parse", "HEAD"])
        .filter(|commit| !commit.is_empty())
        .unwrap_or_else(|| "unknown (the suite was not started inside a git work tree)".to_string());
    let dirty =
        git_stdout(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|changes| !changes.is_empty());
    MachineInfo {
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        cpu_model,
        memory_gib,
        kernel: command_output("uname", &["-r"]).unwrap_or_else(unknown),
        ringtail_version,
        prometheus_version: command_output("/usr/bin/prometheus", &["--version"]).unwrap_or_else(unknown),
        victoria_metrics_version,
        git_commit: if dirty { format!("{git_commit} (with uncommitted changes)") } else { git_commit },
        load_average_at_start: std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.trim().to_string())
            .unwrap_or_else(|_| unknown()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_git_gives_nothing_rather_than_its_complaint() {
        assert!(git_stdout(&["--version"]).is_some_and(|v| v.starts_with("git version")));
        assert_eq!(git_stdout(&["no-such-git-command"]), None);
    }
}
