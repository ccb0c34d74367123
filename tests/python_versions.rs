//! Python stacks on every CPython from 3.8 to 3.13 that pyenv has on this machine (issue 13):
//! a busy thread's leaf function and line, a sleeping thread idle, named threads, threads that
//! reuse a finished thread's Python id, a child interpreter's frames, a module with a unicode
//! file name. The interpreters are pyenv's real binaries (`$(pyenv root)/versions/X/bin`),
//! not its shims; a version that is not installed is skipped with a message naming it, so the
//! matrix shrinks on a machine without them and never fails for that.
//!
//! These measure CPU: run them one at a time (`--test-threads=1`, as `make test` does).

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use cpuprof_model::{Pid, Profile};

/// `(3.minor, interpreter)` for each minor version installed, in order.
fn interpreters() -> Vec<(String, PathBuf)> {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| {
            let out = Command::new("pyenv").arg("root").output().ok()?;
            out.status
                .success()
                .then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        })
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pyenv")));
    let mut found = Vec::new();
    for minor in 8..=13 {
        let version = format!("3.{minor}");
        let dir = root.as_ref().and_then(|r| {
            let mut dirs: Vec<PathBuf> = std::fs::read_dir(r.join("versions"))
                .ok()?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("{version}.")))
                })
                .collect();
            dirs.sort();
            dirs.pop()
        });
        match dir.map(|d| d.join("bin").join(format!("python{version}"))) {
            Some(python) if python.exists() => found.push((version, python)),
            _ => eprintln!("skipped: CPython {version} is not installed (pyenv install {version})"),
        }
    }
    found
}

/// The target: a busy main thread, a sleeping named thread, a named thread running code from
/// a module with a unicode file name, six short named threads one after another (Python
/// hands each the id of the one before), and a child interpreter.
const SCRIPT: &str = r#"
import concurrent.futures, os, subprocess, sys, threading, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ünïcödé

def busy_leaf(deadline):
    x = 0
    while time.time() < deadline:
        x += 1
    return x

def nap():
    time.sleep(1.4)

def short(deadline):
    x = 0
    while time.time() < deadline:
        x += 1

if __name__ == "__main__":
    sleeper = threading.Thread(target=nap, name="sleeper-thread")
    sleeper.start()
    worker = threading.Thread(target=ünïcödé.spin_unicode, args=(time.time() + 0.8,), name="unicode-worker")
    worker.start()
    child = subprocess.Popen([sys.executable, "-c",
        "import time\ndef child_work(d):\n    while time.time() < d:\n        pass\nchild_work(time.time() + 0.8)\n"])
    busy_leaf(time.time() + 0.8)
    worker.join()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pool") as ex:
        ex.submit(short, time.time() + 0.3).result()
    for i in range(6):
        t = threading.Thread(target=short, args=(time.time() + 0.12,), name="short-%d" % i)
        t.start()
        t.join()
    child.wait()
    sleeper.join()
"#;

const UNICODE_MODULE: &str = r#"
import time

def spin_unicode(deadline):
    x = 0
    while time.time() < deadline:
        x += 1
"#;

/// Records `SCRIPT` under `python` with `flags`; the saved profile.
fn record(dir: &Path, python: &Path, flags: &[&str]) -> Profile {
    std::fs::write(dir.join("target.py"), SCRIPT).unwrap();
    std::fs::write(dir.join("ünïcödé.py"), UNICODE_MODULE).unwrap();
    let save = dir.join("p.cpuprof");
    let save_s = save.to_string_lossy().into_owned();
    let script = dir.join("target.py");
    let mut all = vec!["--save", save_s.as_str()];
    all.extend_from_slice(flags);
    let r = util::record(
        dir,
        &all,
        &[python.to_str().unwrap(), script.to_str().unwrap()],
    );
    assert_eq!(r.code, Some(0), "cpuprof failed: {}", r.stderr);
    cpuprof_model::file::load(&save).expect("load the saved profile")
}

/// (leaf function, its line, its file's full path, active) of each Python sample of `pid`'s
/// threads named `thread` (any thread when `None`).
fn leaves(p: &Profile, pid: Pid, thread: Option<&str>) -> Vec<(String, Option<u32>, String, bool)> {
    let proc_ = p.process(pid).expect("process in the profile");
    p.python_samples
        .iter()
        .filter(|s| s.pid == pid)
        .filter(|s| thread.is_none_or(|n| proc_.thread(s.tid).is_some_and(|t| t.name == n)))
        .filter_map(|s| {
            let f = p.stacks.leaf(s.stack?)?;
            let one = (
                f.name.clone(),
                f.line,
                f.module.clone().unwrap_or_default(),
                s.active,
            );
            // A sample standing for several reads of a waiting thread counts as many.
            Some(std::iter::repeat_n(one, s.repeats as usize))
        })
        .flatten()
        .collect()
}

fn check(version: &str, p: &Profile) {
    let python_notices: Vec<_> = p.notices.iter().filter(|n| n.contains("python")).collect();
    assert!(python_notices.is_empty(), "{version}: {python_notices:?}");
    let pid = p.meta.pid;
    let root = p.process(pid).unwrap();
    // The busy main thread: its leaf is busy_leaf, on one of the loop's lines.
    let main = leaves(p, pid, Some(root.thread(pid).unwrap().name.as_str()));
    let busy: Vec<_> = main.iter().filter(|l| l.0 == "busy_leaf").collect();
    assert!(busy.len() >= 10, "{version}: main thread leaves {main:?}");
    assert!(
        busy.iter()
            .all(|l| matches!(l.1, Some(7..=9)) && l.2.ends_with("/target.py")),
        "{version}: {busy:?}"
    );
    // Active (on a CPU) for much of it: it shares the GIL with the unicode worker's loop.
    let active = busy.iter().filter(|l| l.3).count();
    assert!(
        active * 10 >= busy.len() * 3,
        "{version}: busy_leaf active in {active} of {} samples",
        busy.len()
    );
    // The sleeping thread is named and idle.
    let sleeper = leaves(p, pid, Some("sleeper-thread"));
    assert!(sleeper.len() >= 10, "{version}: sleeper {sleeper:?}");
    let idle = sleeper.iter().filter(|l| !l.3).count();
    assert!(
        idle * 10 >= sleeper.len() * 9,
        "{version}: sleeper {sleeper:?}"
    );
    // The unicode module's function, with its file's full path.
    let uni = leaves(p, pid, Some("unicode-worker"));
    assert!(
        uni.iter()
            .any(|l| l.0 == "spin_unicode" && l.2.ends_with("/ünïcödé.py")),
        "{version}: unicode-worker {uni:?}"
    );
    // Six short threads, each its own OS thread with its own name.
    for i in 0..6 {
        let name = format!("short-{i}");
        let named: Vec<_> = root.threads.iter().filter(|t| t.name == name).collect();
        assert_eq!(
            named.len(),
            1,
            "{version}: threads named {name}: {:?}",
            root.threads
        );
        let l = leaves(p, pid, Some(&name));
        assert!(
            l.iter().any(|l| l.0 == "short"),
            "{version}: {name} leaves {l:?}"
        );
    }
    // Files as users know them: below their package in labels, in full in the frame.
    let pooled = p
        .python_samples
        .iter()
        .filter(|s| s.pid == pid)
        .find_map(|s| {
            let frames = p.stacks.frames_of(s.stack?);
            frames
                .iter()
                .map(|&f| p.stacks.frame(f))
                .find(|f| f.label().contains("(concurrent/futures/thread.py:"))
                .cloned()
        });
    let pooled =
        pooled.unwrap_or_else(|| panic!("{version}: no concurrent/futures/thread.py frame"));
    assert!(
        pooled
            .module
            .as_deref()
            .is_some_and(|m| m.starts_with('/') && m.ends_with("/concurrent/futures/thread.py")),
        "{version}: {pooled:?}"
    );
    // The child interpreter's frames.
    let child = p
        .processes
        .iter()
        .find(|c| c.ppid == pid)
        .unwrap_or_else(|| panic!("{version}: no child process"));
    let cl = leaves(p, child.pid, None);
    assert!(
        cl.iter().any(|l| l.0 == "child_work"),
        "{version}: child leaves {cl:?}"
    );
    // No thread 0, and every Python sample on a thread of its process.
    assert!(p
        .processes
        .iter()
        .all(|p| p.threads.iter().all(|t| t.tid != 0)));
}

#[test]
fn every_installed_cpython_from_3_8_to_3_13() {
    let found = interpreters();
    for (version, python) in &found {
        let dir = util::tempdir();
        let p = record(dir.path(), python, &["--no-stacks"]);
        check(version, &p);
    }
}

#[test]
fn python_before_3_11_in_blocking_mode_and_attached() {
    let Some((version, python)) = interpreters().into_iter().find(|(v, _)| v == "3.9") else {
        return;
    };
    let dir = util::tempdir();
    let p = record(dir.path(), &python, &["--python-blocking"]);
    check(&version, &p);
    // Attached: a thread of a running 3.9 interpreter, named and busy.
    let script = dir.path().join("attach.py");
    std::fs::write(
        &script,
        "import threading, time\n\
         def spin(d):\n    while time.time() < d:\n        pass\n\
         t = threading.Thread(target=spin, args=(time.time() + 3,), name='attached-spinner')\n\
         t.start(); t.join()\n",
    )
    .unwrap();
    let mut target = Command::new(&python).arg(&script).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let save = dir.path().join("a.cpuprof");
    let pid = target.id().to_string();
    let r = util::record(
        dir.path(),
        &[
            "--pid",
            &pid,
            "--duration",
            "1",
            "--save",
            save.to_str().unwrap(),
        ],
        &[],
    );
    target.wait().unwrap();
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let p = cpuprof_model::file::load(&save).unwrap();
    let spin = leaves(&p, target.id(), Some("attached-spinner"));
    assert!(
        spin.iter().filter(|l| l.0 == "spin" && l.3).count() >= 10,
        "{version} attached: {spin:?}; notices {:?}",
        p.notices
    );
}

/// The target of the walker test: a deep recursion through a nested class's method with a
/// non-ASCII name, a lambda, a sleeping named thread, and a busy main thread.
const DEEP: &str = r#"
import threading, time

class Outer:
    class Inner:
        def método(self, n):
            if n == 0:
                ready.set()
                time.sleep(600)
            return self.método(n - 1)

def sleeper():
    time.sleep(600)

def churn():
    # Threads that come and go between two reads: the thread list changes under the walker.
    while True:
        threading.Thread(target=time.sleep, args=(0.004,), daemon=True).start()
        time.sleep(0.002)

ready = threading.Event()
threading.Thread(target=sleeper, name="sleeper-thread", daemon=True).start()
threading.Thread(target=lambda: Outer.Inner().método(30), name="deep", daemon=True).start()
ready.wait()
threading.Thread(target=churn, name="churn", daemon=True).start()
print("ready", flush=True)

def first():
    return sum(range(1000))

def second():
    return sum(range(1000))

x = 0
while True:
    x = first() + second() + x % 7
"#;

/// cpuprof's own stack reader (crates/cpuprof-python/src/walk) gives exactly what py-spy's
/// gives, frame by frame, on every installed CPython, read from the same stopped process; and
/// the offsets it reads are the ones each interpreter's headers give (the committed table is
/// what scripts/python_offsets.sh prints).
#[test]
fn the_walker_reads_what_py_spy_reads_on_every_cpython() {
    use std::io::BufRead;
    let found = interpreters();
    for (version, python) in &found {
        let dir = util::tempdir();
        let script = dir.path().join("deep.py");
        std::fs::write(&script, DEEP).unwrap();
        let mut child = Command::new(python)
            .arg(&script)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "{version}");
        let pid = child.id() as i32;
        let stop = || {
            // SAFETY: a plain signal to our own child.
            unsafe { libc::kill(pid, libc::SIGSTOP) };
            while !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap()
                .contains(") T ")
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        };
        stop();
        let config = py_spy::Config {
            blocking: py_spy::config::LockingStrategy::NonBlocking,
            include_idle: true,
            collect_thread_names: true,
            ..py_spy::Config::default()
        };
        let mut spy = py_spy::PythonSpy::new(pid, &config).expect("py-spy opens it");
        let mut walker = cpuprof_python::walk::Walker::for_spy(&spy).expect("a layout");
        // One walker across rounds, as the sampler keeps it: a thread whose frames did not
        // change is named from its last read; the busy main thread moves between `first`,
        // `second` and the module's loop from one round to the next (frames of the same size
        // at the same address), threads start and end between rounds (the list the walker
        // remembered is not the list any more), and each read must still be what py-spy reads.
        let mut rounds = Vec::new();
        for round in 0..6 {
            if round > 0 {
                unsafe { libc::kill(pid, libc::SIGCONT) };
                std::thread::sleep(std::time::Duration::from_millis(3));
                stop();
            }
            let theirs = spy.get_stack_traces().expect("py-spy reads it");
            let ours = walker.stacks().expect("the walker reads it");
            let again = walker.stacks().expect("the walker reads it again");
            rounds.push((theirs, ours, again));
        }
        unsafe { libc::kill(pid, libc::SIGKILL) };
        child.wait().unwrap();

        let key = |t: &py_spy::StackTrace| {
            let frames: Vec<_> = t
                .frames
                .iter()
                .map(|f| {
                    (
                        f.name.clone(),
                        f.filename.clone(),
                        f.short_filename.clone(),
                        f.line,
                    )
                })
                .collect();
            // py-spy's thread id on Linux before 3.11 comes from elsewhere: compare 3.11+ only.
            let os = t.os_thread_id.filter(|_| version.as_str() >= "3.11");
            (t.thread_id, os, t.owns_gil, frames)
        };
        let sorted = |traces: &[py_spy::StackTrace]| {
            // py-spy marks the GIL on every thread state with the holder's thread id, the
            // walker on the holder's state alone: they differ while a thread is being started
            // (its new state carries its creator's id until it runs). Compared by thread id.
            // py-spy also says "no holder" as thread id 0 (`get_gil_threadid`), which a state
            // whose thread has not set its id yet matches: id 0 owns nothing.
            let gil: std::collections::HashSet<u64> = traces
                .iter()
                .filter(|t| t.owns_gil && t.thread_id != 0)
                .map(|t| t.thread_id)
                .collect();
            let mut v: Vec<_> = traces
                .iter()
                .map(|t| {
                    let mut k = key(t);
                    k.2 = gil.contains(&t.thread_id);
                    k
                })
                .collect();
            v.sort();
            v
        };
        let mut leaves = std::collections::BTreeSet::new();
        for (round, (theirs, ours, again)) in rounds.iter().enumerate() {
            let (a, b) = (sorted(theirs), sorted(ours));
            assert_eq!(
                a, b,
                "{version}, round {round}: py-spy (left) and the walker (right) differ"
            );
            assert_eq!(
                b,
                sorted(again),
                "{version}, round {round}: a second read differs"
            );
            leaves.extend(
                ours.iter()
                    .filter(|t| t.frames.last().is_some_and(|f| f.name == "<module>"))
                    .filter_map(|t| t.frames.first().map(|f| (f.name.clone(), f.line))),
            );
        }
        let threads: Vec<usize> = rounds.iter().map(|(_, ours, _)| ours.len()).collect();
        let (_, ours, _) = &rounds[0];
        eprintln!(
            "{version}: threads {threads:?} alike in each of {} rounds; main thread at {leaves:?}",
            rounds.len()
        );
        let deep = ours
            .iter()
            .map(|t| {
                t.frames
                    .iter()
                    .filter(|f| f.name.ends_with("método"))
                    .count()
            })
            .max();
        assert_eq!(deep, Some(31), "{version}: {ours:?}");
        assert!(
            ours.iter().flat_map(|t| &t.frames).any(|f| f.line > 0),
            "{version}: no lines"
        );
    }
    // The committed offsets are what the headers say (where the machine has them all).
    if found.len() == 6 {
        let out = Command::new("scripts/python_offsets.sh").output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let committed =
            std::fs::read_to_string("crates/cpuprof-python/src/walk/layout_table.rs").unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            committed,
            "the offsets table is stale: scripts/python_offsets.sh > crates/cpuprof-python/src/walk/layout_table.rs"
        );
    }
}
