//! How one Python process's stacks are read: cpuprof's [walker](crate::walk) first, py-spy
//! beside it for what only py-spy reads (the interpreter's addresses, thread names) and as the
//! fallback.
//!
//! A worker forked from a process being read is read with its parent's analysis: `fork` copies
//! the address space, so the interpreter, the GIL and the code sit at the same addresses, and
//! the forking thread keeps its `pthread_t` (Python's thread id) and its Python name. Opening
//! py-spy on it (parsing the interpreter's binaries again, several ms) waits until the child
//! starts a thread its parent had not named, which many workers never do.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cpuprof_model::Pid;
use py_spy::{PythonSpy, StackTrace};

use crate::walk::Walker;

/// How long a thread py-spy could not name goes before its name is looked up again (py-spy's
/// own interval).
const NAME_RETRY: Duration = Duration::from_secs(1);
/// Walker failures in a row (where py-spy read the same process) before py-spy reads alone.
const WALKER_FAILURE_LIMIT: u32 = 10;

/// The readers of one process.
pub struct Reader {
    pid: Pid,
    spy: Option<Box<PythonSpy>>,
    walker: Option<Box<Walker>>,
    /// The interpreter's version and addresses (what a forked child inherits).
    origin: Origin,
    /// Python thread names while no py-spy is open: the parent's, at the fork.
    names: HashMap<u64, Option<String>>,
    /// The last py-spy read (names looked up).
    looked_up: Instant,
    walker_failures: u32,
}

/// What the walker needs to know of an interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Origin {
    version: (u64, u64, u64),
    interp: u64,
    gil: u64,
}

impl Reader {
    /// Opens `pid` with py-spy (fails while the interpreter is not initialised yet).
    pub fn open(pid: Pid, config: &py_spy::Config) -> anyhow::Result<Reader> {
        let spy = PythonSpy::new(pid as py_spy::Pid, config)?;
        let v = &spy.version;
        let origin = Origin {
            version: (v.major, v.minor, v.patch),
            interp: spy.addresses.interpreter_address as u64,
            gil: spy.addresses.threadstate_address as u64,
        };
        Ok(Reader {
            pid,
            walker: Walker::for_spy(&spy).map(Box::new),
            spy: Some(Box::new(spy)),
            origin,
            names: HashMap::new(),
            looked_up: Instant::now(),
            walker_failures: 0,
        })
    }

    /// The reader of `pid`, forked from the process `parent` reads (same program, same
    /// layout); `None` when the parent is read by py-spy alone.
    pub fn forked(pid: Pid, parent: &Reader) -> Option<Reader> {
        parent.walker.as_ref()?;
        let o = parent.origin;
        let walker = Walker::new(pid, (o.version.0, o.version.1), o.interp, o.gil)?;
        Some(Reader {
            pid,
            spy: None,
            walker: Some(Box::new(walker)),
            origin: o,
            names: parent.thread_names().clone(),
            looked_up: parent.looked_up,
            walker_failures: 0,
        })
    }

    /// The interpreter's version, `3.11.7`.
    pub fn version(&self) -> String {
        let (a, b, c) = self.origin.version;
        format!("{a}.{b}.{c}")
    }

    /// Python thread names by Python thread id, as far as known.
    pub fn thread_names(&self) -> &HashMap<u64, Option<String>> {
        self.spy
            .as_ref()
            .map_or(&self.names, |s| &s.python_thread_names)
    }

    /// True for a reader without py-spy (a forked child's) that has a thread its parent had
    /// not named when it forked: the parent may know the name since.
    pub fn lacks_names(&self) -> bool {
        self.spy.is_none() && self.names.values().any(Option::is_none)
    }

    /// Takes the names `parent` (the reader of the process this one was forked from) knows now
    /// for the threads this one has no name for. The pool's workers fork while the parent's
    /// first lookup may have run before `threading` was imported; the parent names its main
    /// thread at its next lookup, when the pool starts its own threads, and the workers keep
    /// its `pthread_t`.
    pub fn learn_names(&mut self, parent: &HashMap<u64, Option<String>>) {
        for (id, name) in self.names.iter_mut().filter(|(_, n)| n.is_none()) {
            if let Some(Some(known)) = parent.get(id) {
                *name = Some(known.clone());
            }
        }
    }

    /// Forgets every thread name (a Python thread id now runs on another OS thread).
    pub fn forget_names(&mut self) {
        match self.spy.as_mut() {
            Some(s) => s.python_thread_names.clear(),
            None => self.names.clear(),
        }
    }

    /// Every thread's stack: by the walker when it reads them and every thread has a name, by
    /// py-spy otherwise (it names new threads). Returns whether the walker read them and
    /// whether py-spy had to be opened for it.
    pub fn read(&mut self, config: &py_spy::Config) -> (anyhow::Result<Vec<StackTrace>>, Read) {
        let mut how = Read::default();
        if let Some(w) = self.walker.as_mut() {
            match w.stacks() {
                Ok(mut traces) => {
                    let names = self
                        .spy
                        .as_ref()
                        .map_or(&self.names, |s| &s.python_thread_names);
                    // A thread py-spy could not name is looked up again once its last lookup
                    // is a second old, as py-spy does (the threading module may come later).
                    let retry = self.looked_up.elapsed() >= NAME_RETRY;
                    let named = traces.iter_mut().all(|t| match names.get(&t.thread_id) {
                        Some(None) if retry => false,
                        Some(n) => {
                            t.thread_name = n.clone();
                            true
                        }
                        None => false,
                    });
                    if named {
                        self.walker_failures = 0;
                        how.walked = true;
                        return (Ok(traces), how);
                    }
                }
                Err(_) if self.spy.is_none() && self.walker_failures + 1 < WALKER_FAILURE_LIMIT => {
                    // A torn read of a forked child: not worth opening py-spy for.
                    self.walker_failures += 1;
                    return (Err(anyhow::anyhow!("torn read")), how);
                }
                Err(_) => self.walker_failures += 1,
            }
        }
        if self.spy.is_none() {
            match PythonSpy::new(self.pid as py_spy::Pid, config) {
                Ok(spy) => {
                    how.opened = true;
                    self.spy = Some(Box::new(spy));
                }
                Err(e) => return (Err(e), how),
            }
        }
        let Some(spy) = self.spy.as_mut() else {
            return (Err(anyhow::anyhow!("no reader")), how);
        };
        let result = spy.get_stack_traces();
        self.looked_up = Instant::now();
        if result.is_ok() && self.walker_failures >= WALKER_FAILURE_LIMIT {
            // The walker fails where py-spy reads: py-spy reads this process from now on.
            self.walker = None;
        }
        (result, how)
    }
}

/// How a read was done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Read {
    /// By the walker.
    pub walked: bool,
    /// py-spy was opened for it (a forked child's new thread, or the walker failing).
    pub opened: bool,
}
