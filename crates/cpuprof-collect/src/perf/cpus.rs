//! The CPUs to open one event (and one ring buffer) on: the online CPUs
//! ([`crate::procfs::online_cpus`], the one reader of `/sys/devices/system/cpu/online`).

/// The online CPUs.
pub fn online() -> Vec<u32> {
    crate::procfs::online_cpus()
}
