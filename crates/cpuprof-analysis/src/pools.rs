//! The thread pools of each process: a known runtime's workers ([`crate::roles`]), or a group
//! of threads that looks like a pool of a library cpuprof does not know.
//!
//! An unknown pool is reported as what it is — "4 threads named `worker-N`, started in
//! libfoo.so" — rather than pinned on a known runtime that happens to be loaded: blaming
//! OpenBLAS for numexpr's threads gives a fix that does nothing.

use std::collections::{BTreeMap, HashMap};

use cpuprof_model::{FrameKind, Pid, Process, Profile, ThreadClass, ThreadRole, Tid};

use crate::roles;
use crate::runtimes::{self, Loaded, Runtime};

/// Fewest threads of one name that make an unknown pool: one thread is a helper.
const MIN_UNKNOWN_POOL: usize = 2;

/// What a pool is.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// A runtime of [`runtimes::ALL`].
    Known(&'static Runtime),
    /// Threads of one name that no known runtime claims.
    Unknown {
        /// Their name without the trailing number (`worker-`), or the name they share.
        stem: String,
        /// Whether the names carry a number (`worker-0`, `worker-1`).
        numbered: bool,
        /// Base name of the library their stacks start in, when sampled.
        library: Option<String>,
        /// Known runtimes loaded in the process whose workers keep the process's name, when
        /// these threads do too: one of them is likely the owner.
        candidates: Vec<&'static Runtime>,
    },
}

/// One pool of one process.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// The process.
    pub pid: Pid,
    /// What it is.
    pub kind: Kind,
    /// Its worker threads.
    pub threads: Vec<Tid>,
}

impl Pool {
    /// The known runtime, if any.
    pub fn runtime(&self) -> Option<&'static Runtime> {
        match self.kind {
            Kind::Known(r) => Some(r),
            Kind::Unknown { .. } => None,
        }
    }

    /// Groups the same pool across processes: the runtime's name, or the unknown pool's label.
    pub fn key(&self) -> String {
        match self.kind {
            Kind::Known(r) => r.name.to_string(),
            Kind::Unknown { .. } => self.label(),
        }
    }

    /// `OpenBLAS`, or "`worker-N` (started in libfoo.so)" for threads of that name.
    pub fn label(&self) -> String {
        match &self.kind {
            Kind::Known(r) => r.name.to_string(),
            Kind::Unknown {
                stem,
                numbered,
                library,
                ..
            } => {
                let mut s = format!("`{stem}{}`", if *numbered { "N" } else { "" });
                if let Some(l) = library {
                    s.push_str(&format!(" (started in {l})"));
                }
                s
            }
        }
    }
}

/// A thread name without its number: `worker-12` → (`worker-`, true).
pub fn stem(name: &str) -> (String, bool) {
    let t = name.trim_end_matches(|c: char| c.is_ascii_digit());
    (t.to_string(), t.len() < name.len())
}

/// The pools of every process.
pub fn find(
    profile: &Profile,
    loaded: &BTreeMap<Pid, Vec<Loaded>>,
    classes: &BTreeMap<Tid, ThreadClass>,
) -> BTreeMap<Pid, Vec<Pool>> {
    let starts = start_libraries(profile);
    profile
        .processes
        .iter()
        .map(|p| {
            let rts = loaded.get(&p.pid).map(Vec::as_slice).unwrap_or(&[]);
            (p.pid, of_process(p, rts, classes, &starts))
        })
        .collect()
}

fn of_process(
    p: &Process,
    rts: &[Loaded],
    classes: &BTreeMap<Tid, ThreadClass>,
    starts: &HashMap<Tid, String>,
) -> Vec<Pool> {
    let mut known: BTreeMap<&'static str, Vec<Tid>> = BTreeMap::new();
    let mut unknown: BTreeMap<String, (bool, Vec<Tid>)> = BTreeMap::new();
    let inherited = roles::inherited_names(p);
    for th in &p.threads {
        let Some(c) = classes.get(&th.tid) else {
            continue;
        };
        if let Some(rt) = c.runtime.as_deref().and_then(runtimes::by_name) {
            known.entry(rt.name).or_default().push(th.tid);
        } else if c.role == ThreadRole::Other && th.tid != p.pid {
            let (s, numbered) = if inherited.contains(&th.name) {
                (th.name.clone(), false)
            } else {
                stem(&th.name)
            };
            let e = unknown.entry(s).or_insert((numbered, Vec::new()));
            e.0 |= numbered;
            e.1.push(th.tid);
        }
    }
    let mut out: Vec<Pool> = known
        .into_iter()
        .filter_map(|(name, threads)| {
            Some(Pool {
                pid: p.pid,
                kind: Kind::Known(runtimes::by_name(name)?),
                threads,
            })
        })
        .collect();
    for (s, (numbered, threads)) in unknown {
        if threads.len() < MIN_UNKNOWN_POOL {
            continue;
        }
        let inherits = !numbered && inherited.contains(&s);
        let candidates = if inherits {
            rts.iter()
                .map(|l| l.runtime)
                .filter(|r| r.thread_names.is_empty())
                .collect()
        } else {
            Vec::new()
        };
        let mut libs: BTreeMap<&str, usize> = BTreeMap::new();
        for t in &threads {
            if let Some(l) = starts.get(t) {
                *libs.entry(l.as_str()).or_default() += 1;
            }
        }
        let library = libs
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(l, _)| l.to_string());
        out.push(Pool {
            pid: p.pid,
            kind: Kind::Unknown {
                stem: s,
                numbered,
                library,
                candidates,
            },
            threads,
        });
    }
    out
}

/// Functions of the C library and the Rust standard library that start every thread.
const THREAD_START: &[&str] = &[
    "start_thread",
    "clone",
    "__clone",
    "__clone3",
    "thread_start",
];

/// For each sampled thread, the library its stacks start in: the module of the first frame
/// after the C library's thread start (`start_thread`, `clone3`).
fn start_libraries(profile: &Profile) -> HashMap<Tid, String> {
    let mut out = HashMap::new();
    for s in &profile.samples {
        if out.contains_key(&s.tid) {
            continue;
        }
        let Some(stack) = s.stack else { continue };
        let frames = profile.stacks.frames_of(stack);
        let mut started = false;
        for id in frames {
            let f = profile.stacks.frame(id);
            if f.kind != FrameKind::Native {
                continue;
            }
            let name = f.name.split('+').next().unwrap_or(&f.name);
            if THREAD_START.iter().any(|t| name.ends_with(t)) {
                started = true;
                continue;
            }
            let Some(m) = f.module.as_deref().map(runtimes::base_name) else {
                continue;
            };
            if started && !m.starts_with("libc.so") && !m.starts_with("libpthread") {
                out.insert(s.tid, m.to_string());
                break;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{add_samples, busy_thread, native, profile_with};

    #[test]
    fn stems() {
        assert_eq!(stem("worker-12"), ("worker-".to_string(), true));
        assert_eq!(stem("python3"), ("python".to_string(), true));
        assert_eq!(stem("io"), ("io".to_string(), false));
    }

    #[test]
    fn an_unknown_pool_is_named_by_its_threads_and_library() {
        let mut th: Vec<_> = (10..14).map(|t| busy_thread(t, 1.0, 0.5, 0.0)).collect();
        for (i, t) in th.iter_mut().enumerate().skip(1) {
            t.name = format!("worker-{i}");
        }
        let mut p = profile_with(2, vec![(10, th)]);
        for t in 11..14 {
            add_samples(
                &mut p,
                10,
                t,
                &[
                    native("start_thread", "/lib/libc.so.6"),
                    native("run", "/opt/libfoo.so"),
                ],
                5,
            );
        }
        let a = crate::analyze(&p);
        let cx = crate::Context::new(&p);
        let pools = &cx.pools[&10];
        assert_eq!(pools.len(), 1, "{pools:?} {a:?}");
        assert_eq!(pools[0].label(), "`worker-N` (started in libfoo.so)");
        assert_eq!(pools[0].threads, vec![11, 12, 13]);
    }
}
