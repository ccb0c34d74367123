//! The executable mappings of one process and the framehop unwinder that knows their
//! unwind sections.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use framehop::x86_64::UnwinderX86_64;
use framehop::{Module, Unwinder};
use rustc_hash::FxHashMap;

use crate::library::{Library, SectionData};
use crate::maps::Mapping;

/// One executable mapping and, if its file could be read, the parsed file.
#[derive(Debug, Clone)]
pub struct Mapped {
    /// The mapping.
    pub mapping: Mapping,
    /// The file, parsed.
    pub library: Option<Arc<Library>>,
    /// Process address − file address.
    pub bias: u64,
}

/// A process's code as the unwinder sees it.
#[derive(Clone, Default)]
pub struct AddressSpace {
    /// Executable mappings, sorted by start.
    mapped: Vec<Mapped>,
    /// Unwind information of the mapped files.
    pub unwinder: UnwinderX86_64<SectionData>,
    /// When `/proc/PID/maps` was last read for this process.
    pub refreshed: Option<Instant>,
    /// Where stack scans found their return address, by the function scanned from: its
    /// distance above the stack pointer and the return address, the last few call sites'
    /// (see `Walker::scan`).
    pub scan_hints: RefCell<FxHashMap<u64, Vec<(u64, u64)>>>,
}

impl AddressSpace {
    /// The mapping containing `addr`.
    pub fn find(&self, addr: u64) -> Option<&Mapped> {
        let i = self
            .mapped
            .partition_point(|m| m.mapping.start <= addr)
            .checked_sub(1)?;
        let m = &self.mapped[i];
        m.mapping.contains(addr).then_some(m)
    }

    /// From the lowest to the highest executable user-space address (a quick filter for stack
    /// scans). `[vsyscall]` lives in the kernel's half at `0xffffffffff600000`: counting it
    /// would let almost any 64-bit value through (a double's bits, say), so the upper half of
    /// the address space is left out.
    pub fn code_range(&self) -> std::ops::Range<u64> {
        let mut user = self.mapped.iter().filter(|m| m.mapping.end <= 1 << 63);
        match (user.clone().next(), user.next_back()) {
            (Some(a), Some(b)) => a.mapping.start..b.mapping.end,
            _ => 0..0,
        }
    }

    /// Whether this exact mapping (same place, same file) is already known.
    pub fn has(&self, mapping: &Mapping) -> bool {
        self.mapped.iter().any(|m| {
            m.mapping.start == mapping.start
                && m.mapping.end == mapping.end
                && m.mapping.inode == mapping.inode
                && m.mapping.path == mapping.path
        })
    }

    /// Adds a mapping, replacing any it overlaps (a new `mmap` over old pages).
    pub fn insert(&mut self, mapping: Mapping, library: Option<Arc<Library>>) {
        let overlapping: Vec<u64> = self
            .mapped
            .iter()
            .filter(|m| m.mapping.start < mapping.end && mapping.start < m.mapping.end)
            .map(|m| m.mapping.start)
            .collect();
        for start in overlapping {
            self.unwinder.remove_module(start);
            self.mapped.retain(|m| m.mapping.start != start);
        }
        let bias = library
            .as_ref()
            .map_or(mapping.start.wrapping_sub(mapping.offset), |l| {
                l.bias(mapping.start, mapping.offset)
            });
        if let Some(lib) = &library {
            self.unwinder.add_module(Module::new(
                lib.path().to_string(),
                mapping.start..mapping.end,
                bias,
                lib.section_info(),
            ));
        }
        let at = self
            .mapped
            .partition_point(|m| m.mapping.start < mapping.start);
        self.mapped.insert(
            at,
            Mapped {
                mapping,
                library,
                bias,
            },
        );
    }
}
