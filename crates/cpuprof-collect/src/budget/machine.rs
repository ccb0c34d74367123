//! Online CPUs, the target's affinity, its cgroup quota, kernel and CPU model.
//!
//! The CPU budget is the smallest of online CPUs, affinity and quota
//! ([`cpuprof_model::Machine::cpu_budget`]); every "cores busy" figure is measured against it.

use cpuprof_model::Machine;

use crate::procfs::status;

/// The number of online CPUs ([`crate::procfs::online_cpus`]).
pub fn online_cpus() -> u32 {
    crate::procfs::online_cpus().len() as u32
}

/// CPUs in the affinity mask of `pid` (`Cpus_allowed_list`), 0 if unreadable.
pub fn affinity_cpus(pid: u32) -> u32 {
    std::fs::read(format!("/proc/{pid}/status"))
        .map(|t| status::parse(&t).affinity_cpus)
        .unwrap_or(0)
}

/// `uname -r`.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The `model name` of the first CPU in `/proc/cpuinfo` text.
pub fn parse_cpu_model(cpuinfo: &str) -> String {
    cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// The machine as the target `pid` sees it.
pub fn read_machine(pid: u32) -> Machine {
    Machine {
        online_cpus: online_cpus(),
        affinity_cpus: affinity_cpus(pid),
        cgroup: crate::cgroup::read_cgroup(pid),
        kernel: kernel_release(),
        cpu_model: std::fs::read_to_string("/proc/cpuinfo")
            .map(|s| parse_cpu_model(&s))
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_from_cpuinfo() {
        assert_eq!(
            parse_cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags : x\n"),
            "AMD EPYC 7B13"
        );
        assert_eq!(parse_cpu_model(""), "");
    }

    #[test]
    fn this_machine() {
        let m = read_machine(std::process::id());
        assert!(m.online_cpus >= 1);
        assert!(m.affinity_cpus >= 1 && m.affinity_cpus <= m.online_cpus);
        assert!(m.cpu_budget() >= 1.0 - 1e-9 || m.quota_cpus().is_some());
        assert!(!m.kernel.is_empty());
    }
}
