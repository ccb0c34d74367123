//! The target's cgroup: CPU quota (v1 and v2) and throttling counters.
//!
//! Containers limit CPU with a CFS quota while BLAS and OpenMP size their pools from the
//! affinity mask, so the quota is often the real budget and the cause of oversubscription.
//! The cgroup comes from `/proc/PID/cgroup`, its directory from `/proc/self/mountinfo`; the
//! quota is the smallest one on the path from the cgroup up to the mount's root (a parent's
//! limit applies to its children).

use std::path::{Path, PathBuf};

use cpuprof_model::{CgroupInfo, Throttling};

/// One cgroup hierarchy the process belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// 1 or 2.
    pub version: u8,
    /// Path inside the hierarchy.
    pub path: String,
}

/// The hierarchy that holds the CPU controller, from `/proc/PID/cgroup` text: the v1 line
/// whose controllers include `cpu`, else the v2 line (`0::`).
pub fn cpu_membership(text: &str) -> Option<Membership> {
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && ctrls.is_empty() {
            v2 = Some(Membership {
                version: 2,
                path: path.to_string(),
            });
        } else if ctrls.split(',').any(|c| c == "cpu") {
            return Some(Membership {
                version: 1,
                path: path.to_string(),
            });
        }
    }
    v2
}

/// A cgroup mount from `mountinfo`: (root inside the hierarchy, mount point).
pub fn find_mount(mountinfo: &str, version: u8) -> Option<(String, PathBuf)> {
    for line in mountinfo.lines() {
        let (pre, post) = line.split_once(" - ")?;
        let pre: Vec<&str> = pre.split(' ').collect();
        let post: Vec<&str> = post.split(' ').collect();
        let (Some(root), Some(mnt), Some(fstype)) = (pre.get(3), pre.get(4), post.first()) else {
            continue;
        };
        let ok = match version {
            2 => *fstype == "cgroup2",
            _ => {
                *fstype == "cgroup"
                    && post
                        .get(2)
                        .is_some_and(|o| o.split(',').any(|c| c == "cpu"))
            }
        };
        if ok {
            return Some((root.to_string(), PathBuf::from(mnt)));
        }
    }
    None
}

/// Quota in CPUs from v2 `cpu.max` text (`max 100000` = none).
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut it = text.split_ascii_whitespace();
    let quota: f64 = it.next()?.parse().ok()?;
    let period: f64 = it.next()?.parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// Quota in CPUs from v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us` (`-1` = none).
pub fn parse_cfs(quota: &str, period: &str) -> Option<f64> {
    let q: f64 = quota.trim().parse().ok()?;
    let p: f64 = period.trim().parse().ok()?;
    (q > 0.0 && p > 0.0).then(|| q / p)
}

/// Throttling counters from `cpu.stat` (v2 `throttled_usec`, v1 `throttled_time` in ns).
pub fn parse_cpu_stat(text: &str) -> Option<Throttling> {
    let mut t = Throttling::default();
    let mut seen = false;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(' ') else {
            continue;
        };
        let Ok(v) = v.trim().parse::<u64>() else {
            continue;
        };
        match k {
            "nr_periods" => t.nr_periods = v,
            "nr_throttled" => t.nr_throttled = v,
            "throttled_usec" => t.throttled_ns = v.saturating_mul(1000),
            "throttled_time" => t.throttled_ns = v,
            _ => continue,
        }
        seen = true;
    }
    seen.then_some(t)
}

/// The directory of a cgroup path under its mount.
fn cgroup_dir(mount_root: &str, mount_point: &Path, path: &str) -> PathBuf {
    let rel = path
        .strip_prefix(mount_root)
        .unwrap_or(path)
        .trim_start_matches('/');
    mount_point.join(rel)
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// The quota of one cgroup directory.
fn dir_quota(version: u8, dir: &Path) -> Option<f64> {
    if version == 2 {
        parse_cpu_max(&read(&dir.join("cpu.max"))?)
    } else {
        parse_cfs(
            &read(&dir.join("cpu.cfs_quota_us"))?,
            &read(&dir.join("cpu.cfs_period_us"))?,
        )
    }
}

/// The CPU cgroup of `pid` with its quota and current throttling, if it can be found: not
/// while `pid` exits. An exiting task leaves its groups before it becomes a zombie, and a
/// zombie's `cgroup` file names the root groups (which made a target in a 0.5-CPU group end
/// with the machine's 2 CPUs as its budget). The exit flag is set before the task leaves, so
/// a task not exiting after the read was in the group read.
pub fn read_cgroup(pid: u32) -> Option<CgroupInfo> {
    let m = cpu_membership(&read(Path::new(&format!("/proc/{pid}/cgroup")))?)?;
    if crate::procfs::stat::read(pid).is_none_or(|s| s.exiting()) {
        return None;
    }
    group_info(m)
}

/// The group a membership names, with its quota and throttling now.
fn group_info(m: Membership) -> Option<CgroupInfo> {
    let (root, mnt) = find_mount(&read(Path::new("/proc/self/mountinfo"))?, m.version)?;
    let leaf = cgroup_dir(&root, &mnt, &m.path);
    Some(CgroupInfo {
        version: m.version,
        path: m.path,
        quota_cpus: quota_up(m.version, &leaf, &mnt),
        throttling_start: throttling(&leaf),
        throttling_end: None,
    })
}

/// The smallest quota from `leaf` up to the mount point `mnt` (a parent's limit applies to
/// its children).
fn quota_up(version: u8, leaf: &Path, mnt: &Path) -> Option<f64> {
    let mut quota: Option<f64> = None;
    let mut dir = leaf.to_path_buf();
    loop {
        if let Some(q) = dir_quota(version, &dir) {
            quota = Some(quota.map_or(q, |old| old.min(q)));
        }
        if dir == mnt || !dir.pop() || !dir.starts_with(mnt) {
            break;
        }
    }
    quota
}

/// A cgroup given by its directory (`cpuprof top --cgroup DIR`): version, path inside its
/// hierarchy, quota and throttling now. `None` when `dir` is not a cgroup directory.
pub fn read_dir(dir: &Path) -> Option<CgroupInfo> {
    let dir = dir.canonicalize().ok()?;
    if !dir.join("cgroup.procs").is_file() {
        return None;
    }
    // v2 groups list their controllers; v1 groups do not have the file.
    let version = if dir.join("cgroup.controllers").is_file() {
        2
    } else {
        1
    };
    let mountinfo = read(Path::new("/proc/self/mountinfo"))?;
    let (root, mnt) = mountinfo
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let fstype = post.split(' ').next()?;
            let wanted = if version == 2 { "cgroup2" } else { "cgroup" };
            if fstype != wanted {
                return None;
            }
            Some((pre.get(3)?.to_string(), PathBuf::from(pre.get(4)?)))
        })
        .filter(|(_, mnt)| dir.starts_with(mnt))
        .max_by_key(|(_, mnt)| mnt.as_os_str().len())?;
    let rel = dir.strip_prefix(&mnt).ok()?;
    let path = Path::new(&root).join(rel).display().to_string();
    Some(CgroupInfo {
        version,
        path,
        quota_cpus: quota_up(version, &dir, &mnt),
        throttling_start: throttling(&dir),
        throttling_end: None,
    })
}

/// The processes of a cgroup directory and of every group below it (`cgroup.procs`).
pub fn procs(dir: &Path) -> Vec<cpuprof_model::Pid> {
    let mut pids = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        if let Some(text) = read(&d.join("cgroup.procs")) {
            pids.extend(
                text.lines()
                    .filter_map(|l| l.trim().parse::<cpuprof_model::Pid>().ok()),
            );
        }
        if let Ok(entries) = std::fs::read_dir(&d) {
            dirs.extend(
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
    }
    pids
}

/// Throttling counters of a cgroup directory.
pub fn throttling(dir: &Path) -> Option<Throttling> {
    parse_cpu_stat(&read(&dir.join("cpu.stat"))?)
}

/// Throttling counters now of the cgroup `info` describes (the target's, not cpuprof's).
pub fn throttling_now(info: &CgroupInfo) -> Option<Throttling> {
    let (root, mnt) = find_mount(&read(Path::new("/proc/self/mountinfo"))?, info.version)?;
    throttling(&cgroup_dir(&root, &mnt, &info.path))
}

/// The CPU cgroups of many processes (`cpuprof top` on a machine): each process costs one
/// read of its `/proc/PID/cgroup`, each distinct group one read of the mount table and of
/// its quota, again after `max_age_ns`.
#[derive(Debug, Default)]
pub struct GroupCache {
    groups: std::collections::HashMap<String, (u64, Option<CgroupInfo>)>,
}

impl GroupCache {
    /// The CPU cgroup of `pid` at monotonic time `now`, its group read at most `max_age_ns`
    /// ago. `None` when it cannot be read (or `pid` exits: see [`read_cgroup`]).
    pub fn of(&mut self, pid: u32, now: u64, max_age_ns: u64) -> Option<CgroupInfo> {
        let text = read(Path::new(&format!("/proc/{pid}/cgroup")))?;
        let m = cpu_membership(&text)?;
        if let Some((at, info)) = self.groups.get(&m.path) {
            if now.saturating_sub(*at) < max_age_ns {
                return info.clone();
            }
        }
        if crate::procfs::stat::read(pid).is_none_or(|s| s.exiting()) {
            return None;
        }
        let path = m.path.clone();
        let info = group_info(m);
        self.groups.insert(path, (now, info.clone()));
        info
    }
}

/// Follows the CPU cgroup of a running target.
///
/// A target can change cgroups after it starts: a launcher script that writes itself into a
/// container's `cgroup.procs` and then execs the real program, or a service manager moving a
/// process. The budget and the throttling counters must be those of the group the target ran
/// in, so the watch re-reads the target's membership while it lives and keeps the last group
/// seen; at the end it reads that group's throttling counters.
#[derive(Debug)]
pub struct CgroupWatch {
    pid: u32,
    current: Option<CgroupInfo>,
    /// `/proc/PID/cgroup` as last read: the full read happens only when it changes.
    membership: Vec<u8>,
}

impl CgroupWatch {
    /// Watches `pid`, whose cgroup at the start was `initial`.
    pub fn new(pid: u32, initial: Option<CgroupInfo>) -> Self {
        CgroupWatch {
            pid,
            current: initial,
            membership: std::fs::read(format!("/proc/{pid}/cgroup")).unwrap_or_default(),
        }
    }

    /// Re-reads the target's cgroup (a no-op once the target is gone). True when it moved.
    pub fn refresh(&mut self) -> bool {
        let membership = match std::fs::read(format!("/proc/{}/cgroup", self.pid)) {
            Ok(m) if m != self.membership => m,
            _ => return false,
        };
        // Remember the new membership only once the group was read: a failed read is retried.
        // Not while the target exits (see `read_cgroup`): then it is not a move.
        let Some(now) = read_cgroup(self.pid) else {
            return false;
        };
        self.membership = membership;
        if self.current.as_ref().is_some_and(|c| c.path == now.path) {
            return false;
        }
        self.current = Some(now);
        true
    }

    /// The last group the target was in, with its throttling counters now.
    pub fn finish(self) -> Option<CgroupInfo> {
        self.current.map(|mut c| {
            c.throttling_end = throttling_now(&c);
            c
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str =
        "9:name=systemd:/\n4:memory:/process_api/af8a\n2:cpuacct:/\n1:cpu:/job\n0::/\n";
    const V2: &str = "0::/user.slice/user-1000.slice/session-2.scope\n";
    const MOUNTINFO: &str = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

    #[test]
    fn memberships() {
        assert_eq!(
            cpu_membership(V1),
            Some(Membership {
                version: 1,
                path: "/job".into()
            })
        );
        assert_eq!(cpu_membership(V2).unwrap().version, 2);
        assert_eq!(cpu_membership("junk"), None);
    }

    #[test]
    fn mounts() {
        assert_eq!(
            find_mount(MOUNTINFO, 1),
            Some(("/".into(), PathBuf::from("/sys/fs/cgroup/cpu")))
        );
        assert_eq!(
            find_mount(MOUNTINFO, 2),
            Some(("/".into(), PathBuf::from("/sys/fs/cgroup/unified")))
        );
        assert_eq!(
            cgroup_dir("/", Path::new("/sys/fs/cgroup/cpu"), "/job"),
            PathBuf::from("/sys/fs/cgroup/cpu/job")
        );
    }

    #[test]
    fn quotas_and_throttling() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(parse_cfs("-1\n", "100000\n"), None);
        assert_eq!(parse_cfs("200000\n", "100000\n"), Some(2.0));
        assert_eq!(
            parse_cpu_stat("usage_usec 5\nnr_periods 10\nnr_throttled 3\nthrottled_usec 7\n"),
            Some(Throttling {
                nr_periods: 10,
                nr_throttled: 3,
                throttled_ns: 7000
            })
        );
        assert_eq!(
            parse_cpu_stat("nr_periods 0\nnr_throttled 0\nthrottled_time 42\n")
                .unwrap()
                .throttled_ns,
            42
        );
        assert_eq!(parse_cpu_stat(""), None);
    }

    #[test]
    fn a_zombie_keeps_the_group_it_ran_in() {
        let root = Path::new("/sys/fs/cgroup/cpu");
        let dir = root.join(format!("cpuprof-unit-zombie-{}", std::process::id()));
        if !root.join("cpu.cfs_quota_us").exists() || std::fs::create_dir(&dir).is_err() {
            eprintln!("skipped: no writable cgroup v1 cpu controller");
            return;
        }
        struct Removed<'a>(&'a Path);
        impl Drop for Removed<'_> {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir(self.0);
            }
        }
        let _removed = Removed(&dir);
        std::fs::write(dir.join("cpu.cfs_quota_us"), "50000").unwrap();
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec sleep 0.3",
                dir.display()
            ))
            .spawn()
            .unwrap();
        let pid = child.id();
        let state = || crate::procfs::stat::read(pid).unwrap().state;
        let group = || std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        while !group().contains(&name) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mut watch = CgroupWatch::new(pid, read_cgroup(pid));
        // Not reaped: a zombie, whose `cgroup` file now names the root group.
        while state() != 'Z' {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(!group().contains(&name), "{}", group());
        let moved = watch.refresh();
        let info = watch.finish();
        child.wait().unwrap();
        assert!(!moved, "a zombie's root group was taken for a move");
        assert_eq!(info.and_then(|i| i.quota_cpus), Some(0.5));
    }

    #[test]
    fn reads_this_machine() {
        // Every Linux process has a cgroup; where no CPU controller is mounted, None is fine.
        if let Some(c) = read_cgroup(std::process::id()) {
            assert!(c.version == 1 || c.version == 2);
        }
    }
}
