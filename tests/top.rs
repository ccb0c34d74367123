//! `cpuprof top`: the live view in a real terminal (tmux: `send-keys`, `capture-pane`), and
//! `--once --json` on its own, on the reference workload oversubscribed and not.

mod util;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The tests of this file each load the machine's two cores: one at a time, or a second
/// workload would oversubscribe the first.
static MACHINE: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    MACHINE.lock().unwrap_or_else(|e| e.into_inner())
}

/// `cpuprof-matmul --procs 2 --size 256 --iters 100000 --threads T`, killed on drop.
struct Workload(Child);

/// Pids of `cpuprof-matmul ... --iters 100000` processes (this file's workloads).
fn stale_workloads() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmd).contains("--iters\x00100000")
        })
        .collect()
}

impl Workload {
    fn start(threads: &str) -> Workload {
        // The previous test's workers may still be exiting: they would be rows of the view.
        util::wait_for(
            "the previous workload to end",
            Duration::from_secs(10),
            || stale_workloads().is_empty(),
        );
        let child = Command::new(util::matmul())
            .args(["--procs", "2", "--size", "256", "--iters", "100000"])
            .args(["--threads", threads])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cpuprof-matmul");
        Workload(child)
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// The worker processes (children of the workload's root), once both run.
    fn workers(&self) -> Vec<u32> {
        util::children(self.pid(), 2)
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions; the whole group of workers goes
        // with the root (they exit when their parent's pipe closes).
        unsafe { libc::kill(self.0.id() as i32, libc::SIGKILL) };
        let _ = self.0.wait();
        for pid in stale_workloads() {
            // SAFETY: as above.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}

fn top_once(args: &[&str]) -> (std::process::Output, Option<Value>) {
    let out = Command::new(util::cpuprof())
        .arg("top")
        .args(args)
        .args(["--once", "--json", "-"])
        .output()
        .expect("run cpuprof top");
    let json = serde_json::from_slice(&out.stdout).ok();
    (out, json)
}

fn process(snap: &Value, pid: u32) -> &Value {
    snap["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["pid"] == pid)
        .unwrap_or_else(|| panic!("process {pid} not in {snap:#}"))
}

fn finding_ids(p: &Value) -> Vec<String> {
    p["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn once_json_flags_both_workers_and_none_with_one_thread_each() {
    let _m = lock();
    let w = Workload::start("auto");
    let workers = w.workers();
    let (out, snap) = top_once(&[]);
    let snap = snap.unwrap_or_else(|| panic!("no JSON: {out:?}"));
    assert_eq!(snap["schema"], "cpuprof-top/1");
    let m = &snap["machine"];
    for key in ["budget_cores", "cores_busy"] {
        assert!(m[key].as_f64().is_some(), "machine.{key} in {m}");
    }
    assert!(m["budget_cores"].as_f64().unwrap() >= 1.0);
    assert!(
        m["cores_busy"].as_f64().unwrap() > 1.0,
        "two busy workers: {m}"
    );
    assert!(m.get("psi_some").is_some());
    for &pid in &workers {
        let p = process(&snap, pid);
        assert_eq!(p["ppid"], w.pid());
        assert!(p["command"].as_array().unwrap()[0]
            .as_str()
            .unwrap()
            .ends_with("cpuprof-matmul"));
        let cores = p["cpu_cores"].as_f64().unwrap();
        assert!(
            cores > 0.3 && cores < 1.5,
            "a worker's share of 2 cores: {p}\n{snap:#}"
        );
        assert!(p["budget_cores"].as_f64().unwrap() >= 1.0);
        assert!(
            p["runq_wait_share"].as_f64().unwrap() > 0.2,
            "4 threads on 2 cores wait: {p}"
        );
        let t = &p["threads"];
        let total: u64 = ["running", "runnable", "sleeping"]
            .iter()
            .map(|k| t[*k].as_u64().unwrap())
            .sum();
        assert_eq!(
            total, 2,
            "a worker has its main thread and one OpenBLAS worker: {t}"
        );
        let pools = p["pools"].as_array().unwrap();
        assert!(
            pools
                .iter()
                .any(|x| x["runtime"] == "OpenBLAS" && x["threads"] == 2),
            "OpenBLAS × 2 in {pools:?}"
        );
        let ids = finding_ids(p);
        assert!(ids.contains(&"oversubscription".to_string()), "{ids:?}");
        let f = &p["findings"][0];
        assert!(
            f["fix"]
                .as_str()
                .unwrap()
                .contains("OPENBLAS_NUM_THREADS=1"),
            "{f}"
        );
        assert!(["error", "warning"].contains(&f["severity"].as_str().unwrap()));
        assert!(!f["title"].as_str().unwrap().is_empty());
    }
    // --stacks: the selected process's top functions, from perf samples; the BLAS kernel
    // leads in a worker.
    let (out, snap) = top_once(&["--pid", &w.pid().to_string(), "--stacks"]);
    let snap = snap.unwrap_or_else(|| panic!("no JSON: {out:?}"));
    let p = process(&snap, workers[0]);
    let top = p["top_functions"]
        .as_array()
        .expect("top_functions with --stacks");
    let first = top[0]["name"].as_str().unwrap();
    assert!(
        first.starts_with("dgemm_"),
        "OpenBLAS's kernel first: {top:?}"
    );
    assert!(top[0]["share"].as_f64().unwrap() > 0.3, "{top:?}");
    drop(w);

    let w = Workload::start("1");
    let workers = w.workers();
    let (out, snap) = top_once(&["--pid", &w.pid().to_string()]);
    let snap = snap.unwrap_or_else(|| panic!("no JSON: {out:?}"));
    assert_eq!(snap["processes"].as_array().unwrap().len(), 3, "{snap:#}");
    for &pid in &workers {
        let p = process(&snap, pid);
        assert!(p["cpu_cores"].as_f64().unwrap() > 0.5, "{p}");
        assert_eq!(finding_ids(p), Vec::<String>::new(), "{p:#}");
    }
}

/// A tmux session running a command in a terminal of its own.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(dir: &Path, width: u32, height: u32, command: &str) -> Tmux {
        let socket = dir.join("tmux.sock").display().to_string();
        let t = Tmux { socket };
        let ok = t
            .cmd()
            .args(["new-session", "-d", "-s", "top", "-x", &width.to_string()])
            .args(["-y", &height.to_string(), "-c", &dir.display().to_string()])
            // After the command: a marker, and the pane stays for the capture.
            .arg(format!("{command}; echo EXITED-$?; sleep 60"))
            .status()
            .expect("run tmux (make setup installs it)");
        assert!(ok.success(), "tmux new-session failed");
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-S", &self.socket]);
        c
    }

    fn keys(&self, keys: &[&str]) {
        let ok = self
            .cmd()
            .args(["send-keys", "-t", "top"])
            .args(keys)
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn capture(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "top"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen satisfies `cond`; returns the screen.
    fn wait(&self, what: &str, timeout: Duration, cond: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.capture();
            if cond(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < timeout,
                "timed out waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

fn row_of(screen: &str, pid: u32) -> Option<&str> {
    screen
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{pid} ")))
}

#[test]
fn the_terminal_view_flags_the_workers_and_answers_its_keys() {
    let _m = lock();
    let dir = util::tempdir();
    let w = Workload::start("auto");
    let workers = w.workers();
    let top = format!("{} top", util::cpuprof().display());
    let started = Instant::now();
    let t = Tmux::start(dir.path(), 100, 30, &top);
    let flagged = |s: &str| {
        workers.iter().all(|&pid| {
            row_of(s, pid)
                .is_some_and(|r| r.contains("oversubscription") && r.contains("OpenBLAS×2"))
        })
    };
    // Three refreshes of one second, and the start.
    let screen = t.wait("both workers flagged", Duration::from_secs(6), flagged);
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(4500),
        "flagged after {took:?}: more than 3 refreshes\n{screen}"
    );
    assert!(
        screen.contains("budget 2.0") || screen.contains("budget "),
        "{screen}"
    );

    // The detail pane of the selected (busiest) process shows the fix.
    t.wait("the fix in the detail pane", Duration::from_secs(3), |s| {
        s.contains("fix: OPENBLAS_NUM_THREADS=1")
    });

    // Filter: only the workload's processes stay.
    t.keys(&["/", "matmul", "Enter"]);
    let s = t.wait("the filter", Duration::from_secs(3), |s| {
        s.contains("filter /matmul")
    });
    assert!(!s.contains("tmux"), "filtered out:\n{s}");

    // Enter: the selected process's threads, with their roles.
    t.keys(&["Enter"]);
    t.wait("the thread list", Duration::from_secs(3), |s| {
        s.contains("blas-worker") && s.contains("ROLE")
    });
    t.keys(&["Enter"]);

    // Help, closed by any key.
    t.keys(&["?"]);
    t.wait("the help", Duration::from_secs(3), |s| {
        s.contains("keys (any key closes)")
    });
    t.keys(&["x"]);
    t.wait("the help closed", Duration::from_secs(3), |s| {
        !s.contains("keys (any key closes)")
    });

    // Sort by name, pause.
    t.keys(&["n", "p"]);
    t.wait("sorted by name, paused", Duration::from_secs(3), |s| {
        s.contains("sort name") && s.contains("PAUSED")
    });
    t.keys(&["p"]);

    // Usable at 80×24 after a resize.
    let ok = t
        .cmd()
        .args(["resize-window", "-t", "top", "-x", "80", "-y", "24"])
        .status()
        .unwrap();
    assert!(ok.success());
    t.wait("the view at 80×24", Duration::from_secs(4), |s| {
        s.lines().count() <= 24 && s.contains("oversubscription") && s.contains("q quit")
    });

    // r: a 10 s recording of the selected process (the busiest: sorted by CPU) into an HTML
    // report.
    t.keys(&["c"]);
    t.wait("sorted by CPU", Duration::from_secs(3), |s| {
        s.contains("sort cpu")
    });
    t.keys(&["r"]);
    let s = t.wait("the report", Duration::from_secs(25), |s| {
        s.contains("written to")
    });
    let line = s.lines().find(|l| l.contains("written to")).unwrap();
    let name = line
        .split_whitespace()
        .find(|w| w.contains("cpuprof-top-"))
        .expect("the report's path");
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .find(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with("cpuprof-top-") && n.ends_with(".html") && name.contains(&n[..12])
        })
        .expect("the report file");
    let html = std::fs::read_to_string(file.path()).unwrap();
    assert!(html.contains("<html") && html.contains("cpuprof-matmul"));

    // q quits and gives the terminal back.
    t.keys(&["q"]);
    let s = t.wait("cpuprof to exit", Duration::from_secs(5), |s| {
        s.contains("EXITED-")
    });
    assert!(s.contains("EXITED-0"), "{s}");
    let alt = t
        .cmd()
        .args(["display-message", "-p", "-t", "top", "#{alternate_on}"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&alt.stdout).trim(), "0");
}

#[test]
fn ctrl_c_and_a_signal_restore_the_terminal() {
    let _m = lock();
    let dir = util::tempdir();
    for how in ["C-c", "TERM"] {
        let top = format!("{} top --interval 200ms", util::cpuprof().display());
        let sub = dir.path().join(how);
        std::fs::create_dir(&sub).unwrap();
        let t = Tmux::start(&sub, 80, 24, &top);
        t.wait("the view", Duration::from_secs(5), |s| s.contains("q quit"));
        if how == "C-c" {
            t.keys(&["C-c"]);
        } else {
            // The view itself, not the shell around it.
            let pids = Command::new("pgrep")
                .args(["-f", "^\\S*cpuprof top --interval 200ms"])
                .output()
                .unwrap();
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-TERM", pid]).status();
            }
        }
        let s = t.wait("cpuprof to exit", Duration::from_secs(5), |s| {
            s.contains("EXITED-")
        });
        assert!(s.contains("EXITED-0"), "{how}: {s}");
        let alt = t
            .cmd()
            .args(["display-message", "-p", "-t", "top", "#{alternate_on}"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&alt.stdout).trim(), "0", "{how}");
        drop(t);
    }
}

#[test]
fn the_view_exits_when_its_terminal_goes_away() {
    let _m = lock();
    let dir = util::tempdir();
    let top = format!("{} top --interval 300ms", util::cpuprof().display());
    let t = Tmux::start(dir.path(), 80, 24, &top);
    t.wait("the view", Duration::from_secs(5), |s| s.contains("q quit"));
    let pgrep = || {
        let out = Command::new("pgrep")
            .args(["-f", "^\\S*cpuprof top --interval 300ms"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert!(!pgrep().is_empty());
    drop(t); // kill-server: the terminal hangs up
    util::wait_for("cpuprof top to exit", Duration::from_secs(5), || {
        pgrep().is_empty()
    });
}

#[test]
fn a_cgroup_is_watched_alone_against_its_quota() {
    let _m = lock();
    let base = Path::new("/sys/fs/cgroup/cpu");
    if !base.join("cgroup.procs").exists() {
        panic!("no cgroup v1 cpu controller at {}", base.display());
    }
    let group = base.join(format!("cpuprof-top-test-{}", std::process::id()));
    std::fs::create_dir_all(&group).expect("create a cgroup (root)");
    std::fs::write(group.join("cpu.cfs_period_us"), "100000").unwrap();
    std::fs::write(group.join("cpu.cfs_quota_us"), "100000").unwrap();
    // The workload joins the group before it starts its workers.
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec {} --procs 2 --size 256 --iters 100000 --threads auto",
        group.display(),
        util::matmul().display()
    );
    let child = Command::new("sh")
        .args(["-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let w = Workload(child);
    let workers = w.workers();
    let (out, snap) = top_once(&["--cgroup", &group.display().to_string()]);
    drop(w);
    // A group can be removed once its last process has left it (exited, not just killed).
    util::wait_for(
        "the test cgroup to be removed",
        Duration::from_secs(10),
        || std::fs::remove_dir(&group).is_ok() || !group.exists(),
    );
    let snap = snap.unwrap_or_else(|| panic!("no JSON: {out:?}"));
    let pids: Vec<u64> = snap["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids.len(), 3, "the group's three processes only: {pids:?}");
    for wpid in &workers {
        assert!(pids.contains(&u64::from(*wpid)), "{wpid} in {pids:?}");
        let p = process(&snap, *wpid);
        assert_eq!(p["budget_cores"].as_f64(), Some(1.0), "{p}");
    }
    assert_eq!(snap["machine"]["budget_cores"].as_f64(), Some(1.0));
    // Pools sized for 2 cores in a 1-CPU quota, throttled over the window.
    let p = process(&snap, workers[0]);
    let quota = p["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == "cpu-quota")
        .unwrap_or_else(|| panic!("no cpu-quota finding: {p:#}"));
    let detail = quota["detail"].as_str().unwrap();
    assert!(!detail.contains("0 of 0 periods"), "{detail}");
}

#[test]
fn errors_are_one_clear_line() {
    // Not a terminal: the view refuses, and says what to use instead.
    let out = Command::new(util::cpuprof())
        .arg("top")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--once"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // A process that does not exist, a directory that is not a cgroup.
    let out = Command::new(util::cpuprof())
        .args(["top", "--once", "--pid", "999999999"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("999999999"), "{err}");
    let dir = util::tempdir();
    let out = Command::new(util::cpuprof())
        .args(["top", "--once", "--cgroup"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(err.contains("not a cgroup directory"), "{err}");
}

#[test]
fn unprivileged_it_shows_what_it_can_read_and_says_why_not_the_rest() {
    let _m = lock();
    // Needs root (to become another user) and setpriv (util-linux), as tests/record.rs.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the tests run as root on this machine"
    );
    let dir = util::tempdir();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("cpuprof");
    std::fs::copy(util::cpuprof(), &exe).unwrap();
    let w = Workload::start("auto");
    let workers = w.workers();
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(&exe)
        .args(["top", "--once", "--json", "-"])
        .output()
        .expect("setpriv");
    let snap: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    // root's workers are there with their CPU (stat and schedstat are world-readable)...
    for &pid in &workers {
        let p = process(&snap, pid);
        assert!(p["cpu_cores"].as_f64().unwrap() > 0.3, "{p}");
    }
    // ...and the status says why their pools are not.
    let hidden = snap["hidden"]
        .as_str()
        .expect("a reason for what is hidden");
    assert!(
        hidden.contains("other users") && hidden.contains("CAP_SYS_PTRACE"),
        "{hidden}"
    );
}
