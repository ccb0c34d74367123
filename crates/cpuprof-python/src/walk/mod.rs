//! cpuprof's own reader of CPython stacks: what py-spy's `get_stack_traces` returns, for a
//! fraction of its reads.
//!
//! py-spy reads every frame's code object, both its strings and its line table again at every
//! sample: about eight `process_vm_readv` calls per frame, which is most of what sampling a
//! busy Python program costs (measured: docs/benchmarks.md). A code object does not change
//! while it lives, so the walker reads one frame per call and then the heads of all the
//! stack's code objects in **one** call, and takes names, file and line table from its cache
//! when a code object's head still names the same strings and table (a freed code object
//! whose address was reused does not). A stack of 12 frames costs 14 calls instead of ~100.
//!
//! py-spy still finds the interpreter (symbols, version, the interpreter and GIL addresses),
//! names the threads (it reads `threading`'s dictionaries) and serves as the fallback: the
//! sampler asks it whenever the walker sees a thread py-spy has not named yet, and for good
//! when the walker fails where py-spy reads. The field offsets come from each CPython's own
//! headers ([`layout`]); `tests/python_versions.rs` compares the two readers on every
//! installed CPython.

mod layout;
pub mod lines;
mod memory;

use std::collections::HashMap;
use std::path::Path;

use cpuprof_model::Pid;
use py_spy::{Frame, PythonSpy, StackTrace};

pub use layout::Layout;
use memory::{i32_at, u64_at};
pub use memory::{Memory, Unreadable};

/// `_PyInterpreterFrame.owner` of the shim frames CPython 3.12+ puts on the C stack between
/// blocks of Python frames (`FRAME_OWNED_BY_CSTACK`).
const FRAME_OWNED_BY_CSTACK: u8 = 3;
/// Longest chain followed (threads of a process, frames of a thread): beyond, the read tore.
const MAX_CHAIN: usize = 4096;
/// Longest string or line table read (bytes): beyond, the read tore.
const MAX_OBJECT: u64 = 1 << 20;
/// Code objects remembered per process before the cache starts again.
const MAX_CODES: usize = 1 << 16;

/// The stack reader of one Python process.
pub struct Walker {
    pid: Pid,
    mem: Memory,
    layout: Layout,
    minor: u64,
    format: lines::Format,
    /// `PyInterpreterState` of the main interpreter.
    interp: u64,
    /// Where the GIL holder is (py-spy's `threadstate_address`); 0 when unknown.
    gil: u64,
    codes: HashMap<u64, Code>,
    short_names: HashMap<String, Option<String>>,
    /// Each thread's last stack (by thread state): what it was read from and what it gave.
    last: HashMap<u64, LastStack>,
    /// Where the last read found the thread states and their frames, in list order.
    known: Vec<Known>,
}

/// Where the last read found one thread's state and frames.
struct Known {
    state: u64,
    /// The `_PyCFrame` its innermost frame was read through (3.11–3.12; 0 otherwise).
    cframe: u64,
    /// The memory its frames were read from.
    windows: Ranges,
}

/// Bytes read at the GIL's address (the widest layout's fields fit).
const GIL_READ: usize = 32;

/// A thread state the last read found, as read again ([`Walker::threads`]).
struct Again {
    state: u64,
    cframe: u64,
    bytes: Vec<u8>,
    /// The `_PyCFrame`'s current frame (when `cframe` is not 0).
    frame: [u8; 8],
    windows: Vec<Window>,
}

/// One thread state as read.
struct ThreadRead {
    state: u64,
    /// Its first [`Layout::tstate_read`] bytes.
    bytes: Vec<u8>,
    /// Its innermost frame (0: none).
    frame: u64,
    /// The `_PyCFrame` that frame was read through (3.11–3.12; 0 otherwise).
    cframe: u64,
    /// Memory around its frames read with it ([`Walker::threads`]).
    windows: Windows,
}

/// A thread's stack as last read: every frame's address, code object and instruction offset,
/// innermost first, and the frames they gave.
///
/// A frame holds a strong reference to its code object, so while the same frames run the same
/// code objects at the same instructions the stack is the one read before: its code objects'
/// heads need not be read again to know them (a thread inside a long C call, a NumPy worker in
/// a BLAS product, reads the same chain tick after tick).
struct LastStack {
    chain: Vec<(u64, u64, i64)>,
    frames: Vec<Frame>,
}

/// Bytes read around a 3.11+ frame: the interpreter's frames of a thread sit one after another
/// on its data stack (callers below), so one read usually holds the whole stack.
const WINDOW: usize = 4096;

/// Memory read around a thread's frames: every range read for it so far.
#[derive(Default)]
struct Windows {
    read: Vec<Window>,
}

/// One range of another process's memory, as read.
struct Window {
    start: u64,
    bytes: Vec<u8>,
    /// The part frames were taken from (offsets into `bytes`): what is worth reading again.
    used: Option<(usize, usize)>,
}

impl Window {
    fn new(start: u64, bytes: Vec<u8>) -> Window {
        Window {
            start,
            bytes,
            used: None,
        }
    }
}

impl Windows {
    /// The `n` bytes of the frame at `addr`: from a window that holds them, else read (with
    /// the `WINDOW` bytes below it when `contiguous`, the frame alone if that fails).
    fn frame(
        &mut self,
        mem: &Memory,
        addr: u64,
        n: usize,
        contiguous: bool,
    ) -> Result<&[u8], Unreadable> {
        // Addresses come from another process's memory, read without stopping it: anything.
        let end = addr.checked_add(n as u64).ok_or(Unreadable(addr))?;
        let held = self
            .read
            .iter()
            .position(|w| addr >= w.start && end <= w.start + w.bytes.len() as u64);
        let i = match held {
            Some(i) => i,
            None => {
                let below = if contiguous { WINDOW - n } else { 0 };
                let start = addr.saturating_sub(below as u64);
                let mut bytes = vec![0u8; (end - start) as usize];
                let w = if mem.read(start, &mut bytes).is_ok() {
                    Window::new(start, bytes)
                } else {
                    bytes.resize(n, 0);
                    mem.read(addr, &mut bytes)?;
                    Window::new(addr, bytes)
                };
                self.read.push(w);
                self.read.len() - 1
            }
        };
        let w = &mut self.read[i];
        let at = (addr - w.start) as usize;
        w.used = Some(
            w.used
                .map_or((at, at + n), |(lo, hi)| (lo.min(at), hi.max(at + n))),
        );
        Ok(&w.bytes[at..at + n])
    }

    /// Where the frames were found in the windows, to read those parts again at the next read
    /// ([`MAX_REREAD`] bytes at most): a busy NumPy worker's dozen frames take ~1 KiB of the
    /// 4 KiB windows, and every page more is another page the kernel pins for the read.
    fn ranges(&self) -> Ranges {
        let mut total = 0;
        self.read
            .iter()
            .filter_map(|w| w.used.map(|(lo, hi)| (w.start + lo as u64, hi - lo)))
            .take_while(|&(_, len)| {
                total += len;
                total <= MAX_REREAD
            })
            .collect()
    }
}

/// Most bytes of a thread's frames read again, unasked, at the next read.
const MAX_REREAD: usize = 64 << 10;

/// Where windows were read from: (start, length) of each.
type Ranges = Vec<(u64, usize)>;

/// What a code object gives a frame, and the head fields it was read under.
struct Code {
    key: CodeKey,
    name: String,
    filename: String,
    short: Option<String>,
    first_line: i32,
    table: Vec<u8>,
}

/// The fields of a code object's head that name its strings and table: equal heads at the same
/// address are the same code object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CodeKey {
    filename: u64,
    name: u64,
    qualname: u64,
    table: u64,
    first_line: i32,
}

impl Walker {
    /// The walker of the process `spy` reads, if its version's layout is known.
    pub fn for_spy(spy: &PythonSpy) -> Option<Walker> {
        Walker::new(
            spy.pid as Pid,
            (spy.version.major, spy.version.minor),
            spy.addresses.interpreter_address as u64,
            spy.addresses.threadstate_address as u64,
        )
    }

    /// The walker of CPython `version` in `pid`, with its interpreter state at `interp` and its
    /// GIL holder at `gil` (0: unknown).
    pub fn new(pid: Pid, version: (u64, u64), interp: u64, gil: u64) -> Option<Walker> {
        let layout = Layout::for_version(version.0, version.1)?;
        Some(Walker {
            pid,
            mem: Memory::new(pid),
            layout,
            minor: version.1,
            format: lines::Format::of(version.1),
            interp,
            gil,
            codes: HashMap::new(),
            short_names: HashMap::new(),
            last: HashMap::new(),
            known: Vec::new(),
        })
    }

    /// Every thread's stack, innermost frame first, as py-spy's `get_stack_traces` gives them
    /// (without thread names, and `active` left for the caller: it reads the OS state).
    pub fn stacks(&mut self) -> Result<Vec<StackTrace>, Unreadable> {
        let l = self.layout;
        let (threads, holder) = self.threads()?;
        self.known.clear();
        let mut traces = Vec::with_capacity(threads.len());
        let mut states = Vec::with_capacity(threads.len());
        for t in threads {
            let (frames, windows) = self.frames(t.state, t.frame, t.windows)?;
            self.known.push(Known {
                state: t.state,
                cframe: t.cframe,
                windows,
            });
            states.push(t.state);
            traces.push(StackTrace {
                pid: self.pid as py_spy::Pid,
                thread_id: u64_at(&t.bytes, l.tstate_thread_id),
                thread_name: None,
                os_thread_id: l.tstate_native_thread_id.map(|o| u64_at(&t.bytes, o)),
                active: false,
                owns_gil: holder != 0 && holder == t.state,
                frames,
                process_info: None,
            });
        }
        // Threads gone since: their last stacks go with them.
        self.last.retain(|s, _| states.contains(s));
        Ok(traces)
    }

    /// The thread states from the interpreter's list, and the GIL holder.
    ///
    /// One call reads the list's head and the GIL together with what the last read found: each
    /// thread state it read, its 3.11–3.12 `_PyCFrame`'s current frame and the memory its frames
    /// were read from. Walking the list, a state found at a known address takes those bytes
    /// (and its frame, while it still points to the same `_PyCFrame`); any other is read on
    /// its own, one or two calls. A busy worker whose list did not change is read in that one
    /// call (five before).
    fn threads(&self) -> Result<(Vec<ThreadRead>, u64), Unreadable> {
        let l = self.layout;
        let mut first = [0u8; 8];
        let mut gil = [0u8; GIL_READ];
        // What the last read found, read again.
        let mut again: Vec<Again> = self
            .known
            .iter()
            .map(|k| Again {
                state: k.state,
                cframe: k.cframe,
                bytes: vec![0u8; l.tstate_read()],
                frame: [0u8; 8],
                windows: k
                    .windows
                    .iter()
                    .map(|&(start, len)| Window::new(start, vec![0u8; len]))
                    .collect(),
            })
            .collect();
        let mut parts: Vec<(u64, &mut [u8])> =
            vec![(self.interp + l.interp_threads_head, &mut first[..])];
        if self.gil != 0 {
            parts.push((self.gil, &mut gil[..self.gil_len()]));
        }
        let heads = parts.len();
        for a in &mut again {
            parts.push((a.state, &mut a.bytes[..]));
            if let (Some(current), true) = (l.cframe_current_frame, a.cframe != 0) {
                parts.push((a.cframe.wrapping_add(current), &mut a.frame[..]));
            }
            for w in &mut a.windows {
                parts.push((w.start, &mut w.bytes[..]));
            }
        }
        let wanted = parts.len();
        let filled = self.mem.read_many(&mut parts);
        if filled < heads {
            return Err(Unreadable(self.interp));
        }
        if filled < wanted {
            // A known state's memory is gone: read the list one by one.
            again.clear();
        }
        let mut again: HashMap<u64, Again> = again.into_iter().map(|a| (a.state, a)).collect();
        let holder = self.holder(&gil);
        let mut state = u64::from_ne_bytes(first);
        let mut threads = Vec::new();
        while state != 0 {
            if threads.len() > MAX_CHAIN {
                return Err(Unreadable(state));
            }
            let (bytes, known_frame, windows) = match again.remove(&state) {
                Some(a) => (
                    a.bytes,
                    Some((a.cframe, a.frame)),
                    Windows { read: a.windows },
                ),
                None => {
                    let mut bytes = vec![0u8; l.tstate_read()];
                    self.mem.read(state, &mut bytes)?;
                    (bytes, None, Windows::default())
                }
            };
            let mut frame = u64_at(&bytes, l.tstate_frame);
            let mut cframe = 0;
            if let (Some(current), true) = (l.cframe_current_frame, frame != 0) {
                cframe = frame;
                frame = match known_frame {
                    Some((known, f)) if known == cframe => u64::from_ne_bytes(f),
                    _ => self.mem.u64(frame.wrapping_add(current))?,
                };
            }
            let next = u64_at(&bytes, l.tstate_next);
            threads.push(ThreadRead {
                state,
                bytes,
                frame,
                cframe,
                windows,
            });
            state = next;
        }
        Ok((threads, holder))
    }

    /// Bytes of the GIL's state read: 3.12+ the runtime's GIL state up to its holder and lock
    /// fields, before the current thread state's pointer.
    fn gil_len(&self) -> usize {
        match (self.layout.gil_last_holder, self.layout.gil_locked) {
            (Some(holder), Some(locked)) => (holder.max(locked) + 8) as usize,
            _ => 8,
        }
    }

    /// The thread state holding the GIL (0 if none or unknown), from the bytes read at the
    /// GIL's address: 3.12+ the last holder while the GIL is locked; before, the current
    /// thread state.
    fn holder(&self, gil: &[u8]) -> u64 {
        let l = self.layout;
        match (self.gil, l.gil_last_holder, l.gil_locked) {
            (0, _, _) => 0,
            (_, Some(holder), Some(locked)) if i32_at(gil, locked) != 0 => u64_at(gil, holder),
            (_, Some(_), Some(_)) => 0,
            _ => u64_at(gil, 0),
        }
    }

    /// The frames from `frame` outwards, of the thread whose state is at `state`.
    /// `windows` holds what was read of them already; returned with the ranges they were read
    /// from.
    fn frames(
        &mut self,
        state: u64,
        mut frame: u64,
        mut windows: Windows,
    ) -> Result<(Vec<Frame>, Ranges), Unreadable> {
        let l = self.layout;
        let n = l.frame_read();
        // (frame, code object, byte offset of the instruction) of every frame read
        let mut read: Vec<(u64, u64, i64)> = Vec::new();
        // (code object, byte offset of the instruction) of the frames to name
        let mut chain: Vec<(u64, i64)> = Vec::new();
        while frame != 0 {
            if read.len() >= MAX_CHAIN {
                return Err(Unreadable(frame));
            }
            let buf = windows.frame(&self.mem, frame, n, self.minor >= 11)?;
            let back = u64_at(buf, l.frame_back);
            let shim = self.minor >= 12
                && l.frame_owner
                    .is_some_and(|o| buf[o as usize] == FRAME_OWNED_BY_CSTACK);
            let code = u64_at(buf, l.frame_code);
            let offset = self.offset(buf, code);
            read.push((frame, code, offset));
            if !shim && code != 0 {
                chain.push((code, offset));
            }
            frame = back;
        }
        let ranges = windows.ranges();
        if let Some(last) = self.last.get(&state).filter(|last| last.chain == read) {
            return Ok((last.frames.clone(), ranges));
        }
        let frames = self.name(&chain)?;
        self.last.insert(
            state,
            LastStack {
                chain: read,
                frames: frames.clone(),
            },
        );
        Ok((frames, ranges))
    }

    /// The frames of `chain` (code object, instruction offset), named from their code objects.
    fn name(&mut self, chain: &[(u64, i64)]) -> Result<Vec<Frame>, Unreadable> {
        let l = self.layout;
        // The heads of every code object of the stack, in one call.
        let head = l.code_read();
        let mut heads = vec![0u8; head * chain.len()];
        let mut parts: Vec<(u64, &mut [u8])> = chain
            .iter()
            .map(|&(code, _)| code)
            .zip(heads.chunks_mut(head))
            .collect();
        if self.mem.read_many(&mut parts) < chain.len() {
            return Err(Unreadable(chain.first().map_or(0, |c| c.0)));
        }
        let mut frames = Vec::with_capacity(chain.len());
        for (&(code, offset), head) in chain.iter().zip(heads.chunks(head)) {
            let key = CodeKey {
                filename: u64_at(head, l.code_filename),
                name: u64_at(head, l.code_name),
                qualname: l.code_qualname.map_or(0, |o| u64_at(head, o)),
                table: u64_at(head, l.code_linetable),
                first_line: i32_at(head, l.code_firstlineno),
            };
            if self.codes.get(&code).is_none_or(|c| c.key != key) {
                // A frame whose strings do not read is skipped, as py-spy does (a torn read).
                let Some(c) = self.load(key) else { continue };
                if self.codes.len() >= MAX_CODES {
                    self.codes.clear();
                }
                self.codes.insert(code, c);
            }
            let c = &self.codes[&code];
            // CPython 3.13's shims have no file.
            if c.filename.is_empty() || c.filename == "<shim>" {
                continue;
            }
            frames.push(Frame {
                name: c.name.clone(),
                filename: c.filename.clone(),
                module: None,
                short_filename: c.short.clone(),
                line: lines::line(self.format, &c.table, c.first_line, offset),
                locals: None,
                is_entry: false,
                is_shim_entry: false,
            });
        }
        Ok(frames)
    }

    /// The byte offset of a frame's instruction in its code.
    fn offset(&self, frame: &[u8], code: u64) -> i64 {
        let l = self.layout;
        if let Some(at) = l.frame_lasti {
            let lasti = i64::from(i32_at(frame, at));
            // 3.10 counts code units, 3.8 and 3.9 bytes; -1: not started.
            return if self.minor == 10 && lasti >= 0 {
                lasti * 2
            } else {
                lasti
            };
        }
        let instr = l.frame_instr.map_or(0, |at| u64_at(frame, at));
        let start = code.wrapping_add(l.code_adaptive.unwrap_or(0));
        (instr as i64).wrapping_sub(start as i64)
    }

    /// Reads a code object's strings and line table.
    fn load(&mut self, key: CodeKey) -> Option<Code> {
        let filename = self.string(key.filename).ok()?;
        let name = match key.qualname {
            0 => self.string(key.name).ok()?,
            q => self.string(q).or_else(|_| self.string(key.name)).ok()?,
        };
        let table = self.bytes(key.table).unwrap_or_default();
        let short = self.short_name(&filename);
        Some(Code {
            key,
            name,
            filename,
            short,
            first_line: key.first_line,
            table,
        })
    }

    /// A `str` object's text (compact strings: every string the compiler makes).
    fn string(&self, addr: u64) -> Result<String, Unreadable> {
        let l = self.layout;
        let mut head = [0u8; 80];
        let n = (l.unicode_compact_data as usize).min(head.len());
        self.mem.read(addr, &mut head[..n])?;
        let length = u64_at(&head, l.unicode_length);
        let state = u32::from_ne_bytes(
            head[l.unicode_state as usize..l.unicode_state as usize + 4]
                .try_into()
                .unwrap_or([0; 4]),
        );
        let kind = u64::from((state >> l.unicode_kind_shift) & 7);
        let compact = state >> l.unicode_compact_bit & 1 == 1;
        let ascii = state >> l.unicode_ascii_bit & 1 == 1;
        if !compact || !matches!(kind, 1 | 2 | 4) || length > MAX_OBJECT / kind {
            return Err(Unreadable(addr));
        }
        let data = if ascii {
            l.unicode_ascii_data
        } else {
            l.unicode_compact_data
        };
        let mut raw = vec![0u8; (length * kind) as usize];
        self.mem.read(addr.wrapping_add(data), &mut raw)?;
        let text = match kind {
            1 if ascii => String::from_utf8(raw).map_err(|_| Unreadable(addr))?,
            1 => raw.iter().map(|&b| char::from(b)).collect(),
            2 => char::decode_utf16(
                raw.chunks_exact(2)
                    .map(|c| u16::from_ne_bytes([c[0], c[1]])),
            )
            .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect(),
            _ => raw
                .chunks_exact(4)
                .map(|c| {
                    char::from_u32(u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                        .unwrap_or(char::REPLACEMENT_CHARACTER)
                })
                .collect(),
        };
        Ok(text)
    }

    /// A `bytes` object's contents.
    fn bytes(&self, addr: u64) -> Result<Vec<u8>, Unreadable> {
        let l = self.layout;
        let size = self.mem.u64(addr.wrapping_add(l.bytes_size))?;
        if size > MAX_OBJECT {
            return Err(Unreadable(addr));
        }
        let mut raw = vec![0u8; size as usize];
        self.mem.read(addr.wrapping_add(l.bytes_data), &mut raw)?;
        Ok(raw)
    }

    /// The file name as users know it: the path below its outermost package
    /// (`multiprocessing/process.py`; the directories that hold an `__init__.py`, seen from the
    /// process's own root, so a container's files are found), as py-spy shortens it.
    fn short_name(&mut self, filename: &str) -> Option<String> {
        if let Some(s) = self.short_names.get(filename) {
            return s.clone();
        }
        let short = if filename.starts_with('/') {
            let rooted = format!("/proc/{}/root{filename}", self.pid);
            let path = if Path::new(&rooted).exists() {
                Path::new(&rooted)
            } else {
                Path::new(filename)
            };
            let mut top = path;
            while let Some(parent) = top.parent() {
                top = parent;
                if !parent.join("__init__.py").exists() {
                    break;
                }
            }
            path.strip_prefix(top)
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        } else {
            // `<frozen importlib._bootstrap>`, `<string>`: no file to look at.
            Some(filename.to_string())
        };
        self.short_names.insert(filename.to_string(), short.clone());
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_reads_frames_below_one_another_once_and_refuses_wild_addresses() {
        let me = Memory::new(std::process::id() as Pid);
        let stack: Vec<u64> = (0..1024).collect();
        let base = stack.as_ptr() as u64;
        let mut w = Windows::default();
        let top = base + 8 * 1000;
        assert_eq!(u64_at(w.frame(&me, top, 16, true).unwrap(), 0), 1000);
        // Read again next time: only what frames were taken from.
        assert_eq!(w.ranges(), vec![(top, 16)]);
        // A caller's frame below it comes from the same read.
        assert_eq!(
            u64_at(w.frame(&me, base + 8 * 600, 16, true).unwrap(), 8),
            601
        );
        let ranges = w.ranges();
        assert_eq!(ranges, vec![(base + 8 * 600, 8 * 400 + 16)]);
        for wild in [u64::MAX - 3, u64::MAX - 200, 8] {
            assert!(w.frame(&me, wild, 16, true).is_err());
        }
        // A torn pointer does not leave the windows broken.
        assert_eq!(u64_at(w.frame(&me, top, 16, true).unwrap(), 0), 1000);
        assert_eq!(w.ranges(), ranges);
        // A frame outside gets a window of its own (frames of two data-stack chunks).
        let far: Vec<u64> = (5000..5010).collect();
        assert_eq!(
            u64_at(w.frame(&me, far.as_ptr() as u64, 16, false).unwrap(), 8),
            5001
        );
        assert_eq!(w.ranges().len(), 2);
        // Windows read again at the next read are used as read.
        let mut again = Windows {
            read: vec![Window::new(top, 7u64.to_ne_bytes().repeat(2))],
        };
        assert_eq!(u64_at(again.frame(&me, top, 16, true).unwrap(), 0), 7);
    }
}
