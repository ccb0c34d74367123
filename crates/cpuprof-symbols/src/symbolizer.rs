//! The entry point: per-process address spaces, a shared library cache, and
//! `unwind(pid, regs, stack) -> frames`.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpuprof_model::{Frame, FrameKey, FrameKind};
use framehop::x86_64::{CacheX86_64, UnwindRegsX86_64};
use framehop::{FrameAddress, Unwinder};
use rustc_hash::FxHashMap;

use crate::address_space::AddressSpace;
use crate::demangle::demangle;
use crate::interpreted::InterpretedPids;
use crate::library::Library;
use crate::live_stack::{LiveStack, ProcessMemory};
use crate::maps::{self, Mapping};
use crate::scan::{direct_call_target, follows_call, plt_slot, rip_call_slot};

/// The user registers framehop needs on x86_64.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Regs {
    /// Instruction pointer.
    pub ip: u64,
    /// Stack pointer (the copied stack starts here).
    pub sp: u64,
    /// Frame pointer.
    pub bp: u64,
}

/// Counters for the benchmark and the docs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SymbolizerStats {
    /// Samples unwound.
    pub samples: u64,
    /// Frames produced.
    pub frames: u64,
    /// Libraries parsed.
    pub libraries: u64,
    /// Times `/proc/PID/maps` was read.
    pub maps_reads: u64,
    /// Frames found by stack scanning.
    pub scans: u64,
    /// Cut stacks completed from the same thread's last complete stack.
    pub stitched: u64,
    /// Cut stacks completed from the running thread's own stack (see `live_stack`).
    pub live: u64,
    /// Walks ended at the interpreter's frame evaluation: the Python sampler has the frames
    /// above it ([`InterpretedPids`]).
    pub left_to_python: u64,
}

/// Library cache key: device + inode when known, else the path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum LibKey {
    Inode(u64, u64),
    Path(String),
}

/// Unwinds and names samples of any number of processes.
pub struct Symbolizer {
    libraries: HashMap<LibKey, Option<Arc<Library>>>,
    processes: FxHashMap<u32, AddressSpace>,
    cache: CacheX86_64,
    /// Named frames by (library identity, file address); addresses repeat across samples.
    names: FxHashMap<(usize, u64), FrameKey>,
    exited: VecDeque<(Instant, u32)>,
    /// Per thread: the last stack that unwound to its root (addresses with frame stack
    /// pointers), to complete stacks cut short by the size of the stack copy.
    complete: FxHashMap<u32, VecDeque<Walk>>,
    /// `/proc/PID/mem` per process (`None`: not readable), to finish cut stacks.
    memories: HashMap<u32, Option<ProcessMemory>>,
    /// Processes whose interpreter frames the Python sampler records ([`InterpretedPids`]).
    interpreted: InterpretedPids,
    stats: SymbolizerStats,
}

/// Deepest stack walked.
const MAX_FRAMES: usize = 512;
/// A walked stack, leaf first: (address, is a return address, stack pointer of the frame).
type Walk = Vec<(u64, bool, u64)>;

/// Complete stacks remembered per thread for stitching.
const COMPLETE_STACKS: usize = 16;
/// Stack scans per sample (each skips one frame without unwind information).
const MAX_SCANS: u64 = 2;
/// Call sites remembered per function a scan starts from (an OpenBLAS kernel is called from
/// two places in its driver, taking turns).
const SCAN_HINTS: usize = 4;
/// Words of stack a scan looks at: the whole 64 KB copy. OpenBLAS's Haswell kernels move the
/// stack pointer down by a page-aligned buffer before doing any work; on the main thread the
/// caller's return address was measured 32.9 KiB above it, beyond the 32 KiB this used to be
/// (one process in ten then had no stack above the kernel at all).
const SCAN_WORDS: u64 = 8192;
/// `/proc/PID/maps` is read again at most this often for one process.
const REFRESH_INTERVAL: Duration = Duration::from_millis(20);

impl Default for Symbolizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Symbolizer {
    /// An empty symbolizer.
    pub fn new() -> Self {
        Symbolizer {
            libraries: HashMap::new(),
            processes: FxHashMap::default(),
            cache: CacheX86_64::new(),
            names: FxHashMap::default(),
            exited: VecDeque::new(),
            complete: FxHashMap::default(),
            memories: HashMap::new(),
            interpreted: InterpretedPids::default(),
            stats: SymbolizerStats::default(),
        }
    }

    /// Walks of the processes in `pids` end at CPython's innermost frame evaluation: their
    /// Python frames are recorded by another reader, which the merge puts in their place.
    pub fn leave_interpreter_to(&mut self, pids: InterpretedPids) {
        self.interpreted = pids;
    }

    /// Counters so far.
    pub fn stats(&self) -> SymbolizerStats {
        self.stats
    }

    /// A new mapping in `pid` (perf `MMAP2`); non-executable mappings are ignored.
    pub fn add_mapping(&mut self, pid: u32, mapping: Mapping) {
        if !mapping.exec {
            return;
        }
        let lib = self.library(pid, &mapping);
        self.processes.entry(pid).or_default().insert(mapping, lib);
    }

    /// `child` was forked from `parent`: it starts with the parent's mappings.
    pub fn fork(&mut self, parent: u32, child: u32) {
        if let Some(space) = self.processes.get(&parent).cloned() {
            self.processes.insert(child, space);
        }
    }

    /// `pid` called `exec`: its old mappings are gone.
    pub fn exec(&mut self, pid: u32) {
        self.processes.remove(&pid);
        self.memories.remove(&pid);
    }

    /// Thread `tid` ended: its last complete stack is no longer needed.
    pub fn thread_exit(&mut self, tid: u32) {
        self.complete.remove(&tid);
    }

    /// `pid` exited. Its mappings are forgotten a little later (samples from other CPUs may
    /// still be in flight).
    pub fn exit(&mut self, pid: u32) {
        self.memories.remove(&pid);
        let now = Instant::now();
        self.exited.push_back((now, pid));
        while let Some(&(t, p)) = self.exited.front() {
            if now.duration_since(t) < Duration::from_secs(2) {
                break;
            }
            self.exited.pop_front();
            if !self.exited.iter().any(|&(_, q)| q == p) {
                self.processes.remove(&p);
            }
        }
    }

    /// Re-reads `/proc/PID/maps` and adds executable mappings not yet known.
    pub fn refresh(&mut self, pid: u32) {
        let space = self.processes.entry(pid).or_default();
        if space
            .refreshed
            .is_some_and(|t| t.elapsed() < REFRESH_INTERVAL)
        {
            return;
        }
        space.refreshed = Some(Instant::now());
        self.stats.maps_reads += 1;
        let Ok(mappings) = maps::read_exec(pid) else {
            return;
        };
        for m in mappings {
            if !self.processes.get(&pid).is_some_and(|s| s.has(&m)) {
                self.add_mapping(pid, m);
            }
        }
    }

    /// Unwinds one sample of thread `tid` of `pid` (registers + the user stack copied from
    /// `regs.sp` up) and returns its frames, root first. Never empty: at least the instruction
    /// pointer's frame.
    pub fn unwind(&mut self, pid: u32, tid: u32, regs: Regs, stack: &[u8]) -> Vec<FrameKey> {
        self.stats.samples += 1;
        if self
            .processes
            .get(&pid)
            .is_none_or(|s| s.find(regs.ip).is_none())
        {
            self.refresh(pid);
        }
        let (mut addrs, end) = self.walk(pid, regs, stack);
        let known = self.complete.entry(tid).or_default();
        if end == WalkEnd::Interpreter {
            // Not a whole stack, and not one to complete from another.
        } else if end == WalkEnd::Root {
            // Most recent first, without duplicates.
            known.retain(|k| *k != addrs);
            known.push_front(addrs.clone());
            known.truncate(COMPLETE_STACKS);
        } else if known.iter().any(|root| stitch(&mut addrs, root)) {
            self.stats.stitched += 1;
        }
        // A return address in an unknown mapping may be a library loaded since the last look.
        if addrs.iter().any(|a| {
            self.processes
                .get(&pid)
                .is_none_or(|s| s.find(a.0).is_none())
        }) {
            self.refresh(pid);
        }
        let mut frames: Vec<FrameKey> = addrs
            .iter()
            .map(|&(addr, is_return, _)| self.name(pid, addr, is_return))
            .collect();
        frames.reverse();
        self.stats.frames += frames.len() as u64;
        frames
    }

    /// The addresses of the stack, leaf first, each with "is a return address" and the
    /// stack pointer of its frame, and how the walk ended.
    fn walk(&mut self, pid: u32, regs: Regs, stack: &[u8]) -> (Walk, WalkEnd) {
        let mut out = vec![(regs.ip, false, regs.sp)];
        let Some(space) = self.processes.get(&pid) else {
            return (out, WalkEnd::Lost);
        };
        let sp0 = regs.sp;
        let copy_end = sp0.saturating_add(stack.len() as u64);
        // The live stack past the copy, once the walk is allowed there.
        let live: RefCell<Option<LiveStack>> = RefCell::new(None);
        let past_end = Cell::new(false);
        let mut read_stack = |addr: u64| -> Result<u64, ()> {
            if let Some(word) = copied_word(sp0, stack, addr) {
                return Ok(word);
            }
            if addr < sp0 {
                return Err(());
            }
            if let Some(word) = live.borrow_mut().as_mut().and_then(|l| l.word(addr)) {
                return Ok(word);
            }
            past_end.set(true);
            Err(())
        };
        let memory = self
            .memories
            .entry(pid)
            .or_insert_with(|| ProcessMemory::open(pid))
            .as_ref();
        let mut walker = Walker {
            past_end: &past_end,
            copy: (sp0, stack),
            space,
            cache: &mut self.cache,
            read_stack: &mut read_stack,
            scans: 0,
            resume: None,
            memory,
            stop_at_python: self.interpreted.contains(pid),
        };
        let mut end = if walker.stop_at_python && is_python_eval(space, regs.ip) {
            // Interpreting: the Python sampler has the rest.
            WalkEnd::Interpreter
        } else {
            walker.walk(
                UnwindRegsX86_64::new(regs.ip, regs.sp, regs.bp),
                FrameAddress::from_instruction_pointer(regs.ip),
                &mut out,
            )
        };
        if end == WalkEnd::PastCopy {
            // Cut by the size of the copy: go on in the live stack if the thread is still
            // inside the frames the copy ends in (their return addresses are still in place).
            let slots: Vec<(u64, u64)> = out
                .iter()
                .filter(|&&(_, is_return, sp)| is_return && sp <= copy_end)
                .rev()
                .take(2)
                .map(|&(ra, _, sp)| (sp - 8, ra))
                .collect();
            if let (Some(memory), Some((r, a))) = (memory, walker.resume.take()) {
                if let Some(resumed) = LiveStack::resume(memory, &slots, copy_end) {
                    *live.borrow_mut() = Some(resumed);
                    past_end.set(false);
                    let cut = out.len();
                    end = walker.walk(r, a, &mut out);
                    if matches!(end, WalkEnd::Root | WalkEnd::Interpreter) {
                        self.stats.live += 1;
                    } else {
                        out.truncate(cut);
                    }
                }
            }
        }
        self.stats.scans += walker.scans;
        self.stats.left_to_python += u64::from(end == WalkEnd::Interpreter);
        (out, end)
    }

    /// Names one address of `pid`.
    fn name(&mut self, pid: u32, addr: u64, is_return: bool) -> FrameKey {
        let lookup = if is_return { addr - 1 } else { addr };
        let Some(m) = self.processes.get(&pid).and_then(|s| s.find(lookup)) else {
            return Arc::new(Frame {
                kind: FrameKind::Native,
                name: format!("{addr:#x}"),
                module: None,
                line: None,
                short_file: None,
            });
        };
        let svma = lookup.wrapping_sub(m.bias);
        let identity = match &m.library {
            Some(l) => Arc::as_ptr(l) as usize,
            // Files we could not read: one identity per mapping start.
            None => m.mapping.start as usize,
        };
        if let Some(f) = self.names.get(&(identity, svma)) {
            return f.clone();
        }
        let symbol = m
            .library
            .as_ref()
            .and_then(|l| l.symbols().lookup(svma))
            .map(|(name, _)| demangle(name));
        let frame = Arc::new(Frame {
            kind: FrameKind::Native,
            name: symbol.unwrap_or_else(|| format!("{}+{:#x}", m.mapping.base_name(), svma)),
            module: Some(m.mapping.path.clone()),
            line: None,
            short_file: None,
        });
        self.names.insert((identity, svma), frame.clone());
        frame
    }

    /// The parsed file behind a mapping of `pid`, loaded once per file.
    fn library(&mut self, pid: u32, mapping: &Mapping) -> Option<Arc<Library>> {
        if !mapping.is_file() {
            return None;
        }
        let key = if mapping.inode != 0 {
            LibKey::Inode(mapping.dev, mapping.inode)
        } else {
            LibKey::Path(mapping.path.clone())
        };
        if let Some(lib) = self.libraries.get(&key) {
            return lib.clone();
        }
        let candidates = [
            PathBuf::from(format!("/proc/{pid}/root{}", mapping.path)),
            PathBuf::from(&mapping.path),
            PathBuf::from(format!(
                "/proc/{pid}/map_files/{:x}-{:x}",
                mapping.start, mapping.end
            )),
        ];
        let lib = candidates
            .iter()
            .find_map(|p| Library::load(&mapping.path, p).ok())
            .map(Arc::new);
        if lib.is_some() {
            self.stats.libraries += 1;
        }
        // Remember failures too, but not for a process we could not see into yet.
        self.libraries.insert(key, lib.clone());
        lib
    }
}

/// Whether `addr` lies in CPython's frame evaluation function.
fn is_python_eval(space: &AddressSpace, addr: u64) -> bool {
    space.find(addr).is_some_and(|m| {
        m.library
            .as_ref()
            .and_then(|l| l.python_eval())
            .is_some_and(|r| r.contains(&addr.wrapping_sub(m.bias)))
    })
}

/// The word at `addr` if it lies in `bytes`, a copy of the stack from address `start` up.
fn copied_word(start: u64, bytes: &[u8], addr: u64) -> Option<u64> {
    let off = usize::try_from(addr.checked_sub(start)?).ok()?;
    let word = bytes.get(off..off.checked_add(8)?)?;
    Some(u64::from_le_bytes(word.try_into().ok()?))
}

/// How a walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WalkEnd {
    /// At the stack's root (`_start`, `clone3`: the unwind information says "no caller").
    Root,
    /// It needed stack beyond the copy: the stack is cut, not garbage.
    PastCopy,
    /// Unwinding failed, or the stack was too deep.
    Lost,
    /// At CPython's frame evaluation, in a process whose Python frames another reader records:
    /// the merge puts those in place of the interpreter's frames above.
    Interpreter,
}

/// One stack walk: framehop's rules, plus a stack scan where they give up.
struct Walker<'a, F> {
    /// Set when the walk wanted stack beyond the copy: the stack is cut, not garbage.
    past_end: &'a Cell<bool>,
    /// The copied stack and the address it starts at, for fast scans.
    copy: (u64, &'a [u8]),
    space: &'a AddressSpace,
    cache: &'a mut CacheX86_64,
    read_stack: &'a mut F,
    scans: u64,
    /// Where a walk that ran past the copy can go on from: registers and frame address.
    resume: Option<(UnwindRegsX86_64, FrameAddress)>,
    /// The process's memory, to read the GOT slots of PLT stubs.
    memory: Option<&'a ProcessMemory>,
    /// End the walk at CPython's frame evaluation ([`InterpretedPids`]).
    stop_at_python: bool,
}

impl<F: FnMut(u64) -> Result<u64, ()>> Walker<'_, F> {
    /// Appends return addresses to `out` from `regs`, and says how the walk ended.
    fn walk(
        &mut self,
        mut regs: UnwindRegsX86_64,
        mut address: FrameAddress,
        out: &mut Walk,
    ) -> WalkEnd {
        while out.len() < MAX_FRAMES {
            let before = regs;
            let step = self.space.unwinder.unwind_frame(
                address,
                &mut regs,
                self.cache,
                &mut *self.read_stack,
            );
            let ra = match step {
                Ok(Some(ra)) => ra,
                // "End of stack" right after the leaf usually means a frame-pointer guess on
                // code without unwind information (bp = 0): scan instead.
                Ok(None) if out.len() > 1 || self.scans >= MAX_SCANS => return WalkEnd::Root,
                Err(_) if self.past_end.get() => {
                    self.resume = Some((regs, address));
                    return WalkEnd::PastCopy;
                }
                _ if self.scans < MAX_SCANS => return self.scan(regs, address, out),
                _ => return WalkEnd::Lost,
            };
            // A return address outside the process's code is a wrong guess (a frame-pointer
            // rule applied to code that keeps no frame pointer): look for the real one.
            let Some(a) = FrameAddress::from_return_address(ra)
                .filter(|_| self.space.find(ra.wrapping_sub(1)).is_some())
            else {
                if self.scans < MAX_SCANS {
                    return self.scan(before, address, out);
                }
                return WalkEnd::Lost;
            };
            out.push((ra, true, regs.sp()));
            if self.stop_at_python && is_python_eval(self.space, ra.wrapping_sub(1)) {
                return WalkEnd::Interpreter;
            }
            regs.set_ip(ra);
            address = a;
        }
        WalkEnd::Lost
    }

    /// Continues the walk from the first word above `regs.sp` that is a plausible return
    /// address for a call of the function at `address`: right after a call instruction, and
    /// for a direct call, one whose target is that function or a PLT stub (stale return
    /// addresses left on the stack by earlier calls elsewhere fail this).
    fn scan(&mut self, regs: UnwindRegsX86_64, address: FrameAddress, out: &mut Walk) -> WalkEnd {
        self.scans += 1;
        let callee = self.function_start(address.address_for_lookup());
        let code = self.space.code_range();
        // Most words are data and the scan often crosses most of the copy: test the copied
        // words straight from the slice, and go through `read_stack` only past it.
        let sp = regs.sp();
        let copied = sp
            .checked_sub(self.copy.0)
            .and_then(|off| self.copy.1.get(usize::try_from(off).ok()?..))
            .unwrap_or(&[]);
        let words = copied.chunks_exact(8).take(SCAN_WORDS as usize);
        let in_copy = words.len() as u64;
        // Where the last scan from this function found its caller: the same call site puts
        // its return address at the same distance (an OpenBLAS kernel's is ~32 KiB up, past
        // the packed panels: 4 000 words scanned a sample). The same return address there,
        // checked as any found word is, ends the scan; anything else scans.
        let hint = callee.and_then(|c| {
            let hints = self.space.scan_hints.borrow();
            hints.get(&c)?.iter().find_map(|&(distance, value)| {
                let word = copied.get(distance as usize..distance as usize + 8)?;
                (u64::from_le_bytes(word.try_into().ok()?) == value
                    && self.is_return_address(value, callee))
                .then_some((sp + distance, value))
            })
        });
        let mut found = hint;
        if found.is_none() {
            for (i, word) in words.enumerate() {
                let value = u64::from_le_bytes(word.try_into().expect("8-byte chunk"));
                if code.contains(&value) && self.is_return_address(value, callee) {
                    found = Some((sp + i as u64 * 8, value));
                    break;
                }
            }
        }
        if found.is_none() {
            for i in in_copy..SCAN_WORDS {
                let slot = sp + i * 8;
                let Ok(value) = (self.read_stack)(slot) else {
                    break;
                };
                if code.contains(&value) && self.is_return_address(value, callee) {
                    found = Some((slot, value));
                    break;
                }
            }
        }
        if let (Some(c), Some((slot, value)), None) = (callee, found, hint) {
            let mut hints = self.space.scan_hints.borrow_mut();
            let known = hints.entry(c).or_default();
            known.insert(0, (slot - sp, value));
            known.truncate(SCAN_HINTS);
        }
        if let Some((slot, value)) = found {
            if let Some(next) = FrameAddress::from_return_address(value) {
                out.push((value, true, slot + 8));
                let mut r = regs;
                r.set_sp(slot + 8);
                r.set_ip(value);
                return self.walk(r, next, out);
            }
        }
        if self.past_end.get() {
            // Scan again from here with more stack.
            self.scans -= 1;
            self.resume = Some((regs, address));
            WalkEnd::PastCopy
        } else {
            WalkEnd::Lost
        }
    }

    /// The process address where the function containing `addr` starts.
    fn function_start(&self, addr: u64) -> Option<u64> {
        let m = self.space.find(addr)?;
        let lib = m.library.as_ref()?;
        Some(
            lib.function_start(addr.wrapping_sub(m.bias))?
                .wrapping_add(m.bias),
        )
    }

    fn is_return_address(&self, value: u64, callee: Option<u64>) -> bool {
        let Some(m) = self.space.find(value) else {
            return false;
        };
        let Some(lib) = m.library.as_ref() else {
            return false;
        };
        let Some(before) = lib.code_before(value.wrapping_sub(m.bias), 7) else {
            return false;
        };
        if !follows_call(before) {
            return false;
        }
        match (direct_call_target(before, value), callee) {
            (Some(target), Some(callee)) => target == callee || self.plt_may_reach(target, callee),
            (None, Some(callee)) => match rip_call_slot(before, value) {
                Some(slot) => self.slot_may_reach(slot, callee),
                None => true,
            },
            _ => true,
        }
    }

    /// Whether a call through the pointer at `slot` (a GOT entry) may end in `callee`: the
    /// pointer leads into the callee's library. Unreadable: the benefit of the doubt.
    fn slot_may_reach(&self, slot: u64, callee: u64) -> bool {
        let reaches = |dest: u64| dest == callee || self.same_library(dest, callee);
        match self.memory.and_then(|m| m.pointer(slot, reaches)) {
            Some(dest) => reaches(dest),
            None => true,
        }
    }

    /// Whether two addresses lie in the same library, when both are known.
    fn same_library(&self, a: u64, b: u64) -> bool {
        match (self.space.find(a), self.space.find(b)) {
            (Some(x), Some(y)) => {
                x.library.as_ref().map(|l| l.path()) == y.library.as_ref().map(|l| l.path())
            }
            _ => true,
        }
    }

    /// Whether a direct call to `target` may end up in `callee`: `target` is a PLT stub and,
    /// where the process's GOT can be read, the slot it jumps through points into the
    /// callee's library. (A stale return address from an earlier call through a PLT, to
    /// `wcslen` in libc say, is taken for the caller of an OpenBLAS kernel otherwise.) An
    /// unreadable or not yet resolved slot (lazy binding) gives the benefit of the doubt.
    fn plt_may_reach(&self, target: u64, callee: u64) -> bool {
        let Some(t) = self.space.find(target) else {
            return false;
        };
        let Some(lib) = t.library.as_ref() else {
            return false;
        };
        let svma = target.wrapping_sub(t.bias);
        if !lib.in_plt(svma) {
            return false;
        }
        let Some(memory) = self.memory else {
            return true;
        };
        let Some(slot) = lib
            .code_at(svma, 16)
            .and_then(|code| plt_slot(code, svma))
            .map(|s| s.wrapping_add(t.bias))
        else {
            return true;
        };
        // Still the lazy-binding stub of the same PLT (not resolved yet), or resolved to the
        // callee.
        let may = |dest: u64| {
            self.space.find(dest).is_some_and(|d| std::ptr::eq(d, t))
                || dest == callee
                || self.same_library(dest, callee)
        };
        memory.pointer(slot, may).is_none_or(may)
    }
}

/// Completes a stack that was cut short (the copy of the user stack ended) with the outer
/// frames of the same thread's last complete stack: where both have the same return address
/// at the same stack address, the callers above it are the same. Looks at the last few
/// frames of `cut` only (the very last one may be a guess). True when stitched.
fn stitch(cut: &mut Walk, complete: &[(u64, bool, u64)]) -> bool {
    let n = cut.len();
    for i in (n.saturating_sub(4)..n).rev() {
        let (addr, is_return, sp) = cut[i];
        if !is_return {
            continue;
        }
        if let Some(j) = complete
            .iter()
            .position(|&(a, r, s)| r && a == addr && s == sp)
        {
            cut.truncate(i + 1);
            cut.extend_from_slice(&complete[j + 1..]);
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::stitch;

    #[test]
    fn cut_stack_takes_the_outer_frames_of_a_matching_complete_one() {
        // (address, is return address, stack pointer), leaf first.
        let complete = [
            (0x10, false, 0x1000),
            (0x20, true, 0x1100),
            (0x30, true, 0x1200),
            (0x40, true, 0x1300),
        ];
        let mut cut = vec![
            (0x99, false, 0x0f00),
            (0x20, true, 0x1100),
            (0x77, true, 0x1180),
        ];
        assert!(stitch(&mut cut, &complete));
        assert_eq!(
            cut,
            vec![
                (0x99, false, 0x0f00),
                (0x20, true, 0x1100),
                (0x30, true, 0x1200),
                (0x40, true, 0x1300)
            ]
        );
    }

    #[test]
    fn same_address_at_another_stack_depth_is_not_stitched() {
        let complete = [
            (0x10, false, 0x1000),
            (0x20, true, 0x1100),
            (0x30, true, 0x1200),
        ];
        let mut cut = vec![(0x99, false, 0x0f00), (0x20, true, 0x1108)];
        assert!(!stitch(&mut cut, &complete));
        assert_eq!(cut.len(), 2);
    }
}
