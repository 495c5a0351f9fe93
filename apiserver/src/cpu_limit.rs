//! `cpu_limit` finds the CPU limit this process runs under: the CFS quota of its cgroup and of
//! every ancestor (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`), which is
//! what a container's CPU limit sets. The tightest level wins. No quota anywhere: no limit.
//!
//! A process that uses its whole quota within a CFS period is throttled until the next one —
//! every thread, whatever it was doing — so knowing the limit lets the workers leave headroom
//! for queries and probes (see `workers::Pacer`).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A CPU quota: `cpus` CPUs' worth of time per `period`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuLimit {
    pub cpus: f64,
    pub period: Duration,
}

/// The limit of this process now (`None`: no quota, or no cgroup file system readable).
pub fn detect() -> Option<CpuLimit> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    detect_in(&cgroups, &mounts, Path::new("/"))
}

/// [`detect`] over the given `/proc/self/cgroup` and `/proc/self/mountinfo` texts, with the
/// file system under `root`.
fn detect_in(cgroups: &str, mountinfo: &str, root: &Path) -> Option<CpuLimit> {
    let mut tightest: Option<CpuLimit> = None;
    for mount in cgroup_mounts(mountinfo) {
        let Some(path) = cgroups.lines().find_map(|line| own_path(line, &mount.kind)) else {
            continue;
        };
        for dir in candidate_dirs(root, &mount, path) {
            let limit = match mount.kind {
                MountKind::V2 => read_v2(&dir),
                MountKind::V1 => read_v1(&dir),
            };
            if let Some(limit) = limit {
                if tightest.is_none_or(|t| limit.cpus < t.cpus) {
                    tightest = Some(limit);
                }
            }
        }
    }
    tightest
}

#[derive(Debug, Clone, PartialEq)]
enum MountKind {
    /// The unified hierarchy.
    V2,
    /// A v1 hierarchy with the `cpu` controller.
    V1,
}

#[derive(Debug)]
struct CgroupMount {
    kind: MountKind,
    /// The cgroup the mount shows at its mount point (a container sees its own cgroup as `/`).
    root: String,
    mount_point: String,
}

/// The cgroup file systems carrying the cpu controller, from mountinfo lines
/// (`id parent dev root mount-point options [optional…] - fstype source super-options`).
fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fields: Vec<&str> = left.split(' ').collect();
            let (root, mount_point) = (fields.get(3)?, fields.get(4)?);
            let mut right = right.split(' ');
            let kind = match (right.next()?, right.nth(1)) {
                ("cgroup2", _) => MountKind::V2,
                ("cgroup", Some(options)) if options.split(',').any(|o| o == "cpu") => MountKind::V1,
                _ => return None,
            };
            Some(CgroupMount { kind, root: unescape(root), mount_point: unescape(mount_point) })
        })
        .collect()
}

/// mountinfo escapes spaces and a few other bytes as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(byte)) => {
                out.push(byte);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's cgroup path in the hierarchy of `kind`, from one `/proc/self/cgroup` line
/// (`id:controllers:path`).
fn own_path<'a>(line: &'a str, kind: &MountKind) -> Option<&'a str> {
    let mut parts = line.splitn(3, ':');
    let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
    let matches = match kind {
        MountKind::V2 => id == "0" && controllers.is_empty(),
        MountKind::V1 => controllers.split(',').any(|c| c == "cpu"),
    };
    matches.then_some(path)
}

/// The process's cgroup directory under `mount` and each ancestor's up to the mount point.
fn candidate_dirs(root: &Path, mount: &CgroupMount, path: &str) -> Vec<PathBuf> {
    // A path outside what the mount shows (another namespace's view) leaves only the mount
    // point's own cgroup known to be an ancestor.
    let below_mount = path.strip_prefix(mount.root.trim_end_matches('/')).unwrap_or_default();
    let base = root.join(mount.mount_point.trim_start_matches('/'));
    let mut dirs = vec![base.clone()];
    let mut dir = base;
    for part in below_mount.split('/').filter(|p| !p.is_empty() && *p != "." && *p != "..") {
        dir = dir.join(part);
        dirs.push(dir.clone());
    }
    dirs
}

fn read_v2(dir: &Path) -> Option<CpuLimit> {
    let text = std::fs::read_to_string(dir.join("cpu.max")).ok()?;
    let mut fields = text.split_whitespace();
    let (quota, period) = (fields.next()?, fields.next()?);
    limit(quota.parse().ok()?, period.parse().ok()?)
}

fn read_v1(dir: &Path) -> Option<CpuLimit> {
    let quota: i64 = std::fs::read_to_string(dir.join("cpu.cfs_quota_us")).ok()?.trim().parse().ok()?;
    let period: u64 = std::fs::read_to_string(dir.join("cpu.cfs_period_us")).ok()?.trim().parse().ok()?;
    limit(u64::try_from(quota).ok()?, period)
}

fn limit(quota_us: u64, period_us: u64) -> Option<CpuLimit> {
    (quota_us > 0 && period_us > 0)
        .then(|| CpuLimit { cpus: quota_us as f64 / period_us as f64, period: Duration::from_micros(period_us) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_MOUNTS: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
        32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct\n\
        34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n";
    const V2_MOUNTS: &str = "25 23 0:23 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";

    fn write(root: &Path, dir: &str, files: &[(&str, &str)]) {
        let dir = root.join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
    }

    #[test]
    fn v2_takes_the_tightest_quota_up_the_tree() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "sys/fs/cgroup/kubepods", &[("cpu.max", "400000 100000\n")]);
        write(root.path(), "sys/fs/cgroup/kubepods/pod1", &[("cpu.max", "max 100000\n")]);
        write(root.path(), "sys/fs/cgroup/kubepods/pod1/ctr", &[("cpu.max", "50000 100000\n")]);
        let limit = detect_in("0::/kubepods/pod1/ctr\n", V2_MOUNTS, root.path()).unwrap();
        assert_eq!(limit, CpuLimit { cpus: 0.5, period: Duration::from_millis(100) });
        assert_eq!(detect_in("0::/kubepods/pod1\n", V2_MOUNTS, root.path()).map(|l| l.cpus), Some(4.0));
        assert_eq!(detect_in("0::/elsewhere\n", V2_MOUNTS, root.path()), None);
    }

    #[test]
    fn v1_reads_the_cpu_hierarchy_and_ignores_an_unlimited_quota() {
        let root = tempfile::tempdir().unwrap();
        let cpu = "sys/fs/cgroup/cpu,cpuacct";
        write(root.path(), cpu, &[("cpu.cfs_quota_us", "-1\n"), ("cpu.cfs_period_us", "100000\n")]);
        write(
            root.path(),
            &format!("{cpu}/ringtail"),
            &[("cpu.cfs_quota_us", "1000\n"), ("cpu.cfs_period_us", "10000\n")],
        );
        let cgroups = "4:memory:/x\n3:cpu,cpuacct:/ringtail\n0::/\n";
        let limit = detect_in(cgroups, V1_MOUNTS, root.path()).unwrap();
        assert_eq!(limit, CpuLimit { cpus: 0.1, period: Duration::from_millis(10) });
        assert_eq!(detect_in("3:cpu,cpuacct:/\n", V1_MOUNTS, root.path()), None, "-1 is no quota");
    }

    #[test]
    fn a_container_sees_its_own_cgroup_at_the_mount_point() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "sys/fs/cgroup", &[("cpu.max", "250000 100000\n")]);
        let mounts = "25 23 0:23 /kubepods/pod1/ctr /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
        assert_eq!(detect_in("0::/kubepods/pod1/ctr\n", mounts, root.path()).map(|l| l.cpus), Some(2.5));
        assert_eq!(detect_in("0::/\n", mounts, root.path()).map(|l| l.cpus), Some(2.5), "namespaced path");
    }

    #[test]
    fn garbage_is_no_limit_not_a_panic() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "sys/fs/cgroup", &[("cpu.max", "lots\n")]);
        for (cgroups, mounts) in
            [("", ""), ("0::/", V2_MOUNTS), (":::", "x - cgroup2"), ("0::/a/../..", V2_MOUNTS), ("\u{0}", "\\777 - y")]
        {
            assert_eq!(detect_in(cgroups, mounts, root.path()), None, "{cgroups:?} {mounts:?}");
        }
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("\\9"), "\\9");
    }
}
