//! `cpuprof agent` read by its real consumers: Debian's Prometheus server scraping it, and
//! `go tool pprof` fetching a profile from it; its safety (loopback, label escaping, idle
//! clients).

mod util;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

/// One workload at a time on the two cores (see tests/top.rs).
static MACHINE: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    MACHINE.lock().unwrap_or_else(|e| e.into_inner())
}

/// A child killed (with its process group) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` in a process group of its own (so that drop takes its children too).
fn spawn(cmd: &mut Command) -> Killed {
    use std::os::unix::process::CommandExt;
    Killed(
        cmd.process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}")),
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn agent(port: u16, extra: &[&str]) -> Killed {
    let a = spawn(
        Command::new(util::cpuprof())
            .args(["agent", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--window", "3s"])
            .args(extra),
    );
    util::wait_for("the agent to listen", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    a
}

/// GET `path` with HTTP/1.0; (status, headers, body).
fn get(port: u16, path: &str, accept: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{accept}\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP response");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head, raw[split + 4..].to_vec())
}

/// `cpuprof-matmul --procs 2 --size 256 --iters 100000 --threads T`.
fn workload(threads: &str) -> Killed {
    spawn(
        Command::new(util::matmul())
            .args(["--procs", "2", "--size", "256", "--iters", "100000"])
            .args(["--threads", threads]),
    )
}

/// The two matmul worker processes under `root`, once both run.
fn workers(root: u32) -> Vec<u32> {
    util::children(root, 2)
}

/// Debian's Prometheus, scraping the agent every second.
struct Prometheus {
    _server: Killed,
    port: u16,
}

impl Prometheus {
    fn start(dir: &Path, agent_port: u16) -> Prometheus {
        let bin = Path::new("/usr/bin/prometheus");
        assert!(bin.exists(), "{} missing: run `make setup`", bin.display());
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: cpuprof\n    static_configs:\n      \
                 - targets: ['127.0.0.1:{agent_port}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let server = spawn(
            Command::new(bin)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}")),
        );
        let p = Prometheus {
            _server: server,
            port,
        };
        util::wait_for("Prometheus to be ready", Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok() && get(port, "/-/ready", None).0 == 200
        });
        p
    }

    /// The result vector of an instant PromQL query.
    fn query(&self, promql: &str) -> Vec<Value> {
        let q: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, _, body) = get(self.port, &format!("/api/v1/query?query={q}"), None);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, 200, "{promql}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    fn pids(&self, promql: &str) -> Vec<u32> {
        self.query(promql)
            .iter()
            .filter_map(|r| r["metric"]["pid"].as_str()?.parse().ok())
            .collect()
    }
}

#[test]
fn prometheus_sees_the_oversubscribed_workers_and_none_with_one_thread() {
    let _m = lock();
    let dir = util::tempdir();
    // A process whose name needs escaping in a label: a copy of sleep named `odd"name\`.
    let odd = dir.path().join("odd\"name\\");
    std::fs::copy("/bin/sleep", &odd).unwrap();
    let _odd = spawn(Command::new(&odd).arg("600"));
    let port = free_port();
    let _agent = agent(port, &[]);
    let prom = Prometheus::start(dir.path(), port);

    let w = workload("auto");
    let pids = workers(w.0.id());
    let query = "cpuprof_finding_active{id=\"oversubscription\"} == 1";
    let start = Instant::now();
    loop {
        let flagged = prom.pids(query);
        if pids.iter().all(|p| flagged.contains(p)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{query} gave {flagged:?}, not both workers {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Every scrape parsed (the odd name among the labels), and the name arrived as it is.
    let up = prom.query("up{job=\"cpuprof\"}");
    assert_eq!(up[0]["value"][1], "1", "{up:?}");
    let odd_series =
        prom.query("cpuprof_process_threads{comm=\"odd\\\"name\\\\\",state=\"sleeping\"}");
    assert_eq!(odd_series.len(), 1, "the odd name's series: {odd_series:?}");
    // Pools and budget are there for the workers.
    let pools = prom.pids("cpuprof_pool_threads{runtime=\"OpenBLAS\"} == 2");
    assert!(pids.iter().all(|p| pools.contains(p)), "{pools:?}");
    // The worker's counter twice, 4 s apart, as Prometheus stored it: its rate is a share of
    // 2 cores (an agent refresh that came late moves CPU between scrapes, not away).
    let counter = format!(
        "cpuprof_process_cpu_seconds_total{{pid=\"{}\",mode=\"user\"}}",
        pids[0]
    );
    let read = || -> (f64, f64) {
        let v = prom.query(&counter);
        let sample = &v.first().unwrap_or_else(|| panic!("no {counter}"))["value"];
        (
            sample[0].as_f64().unwrap(),
            sample[1].as_str().unwrap().parse().unwrap(),
        )
    };
    let (t0, c0) = read();
    std::thread::sleep(Duration::from_secs(4));
    let (t1, c1) = read();
    let rate = (c1 - c0) / (t1 - t0);
    assert!(
        rate > 0.3 && rate < 1.6,
        "a worker's share of 2 cores: {rate} ({c0} at {t0}, {c1} at {t1})"
    );
    drop(w);

    let w = workload("1");
    let pids = workers(w.0.id());
    // Watched for two windows of 3 s: then its findings, if any, would show.
    let seen = format!(
        "cpuprof_process_cpu_seconds_total{{pid=\"{}\",mode=\"user\"}} > 6",
        pids[0]
    );
    util::wait_for(
        "6 s of the new workers' CPU",
        Duration::from_secs(30),
        || !prom.query(&seen).is_empty(),
    );
    let flagged = prom.pids(query);
    assert!(
        pids.iter().all(|p| !flagged.contains(p)),
        "one thread per worker flagged: {flagged:?}"
    );
}

fn go() -> PathBuf {
    let go = PathBuf::from("/usr/bin/go");
    assert!(
        go.exists(),
        "{} missing: run `make setup` (golang-go)",
        go.display()
    );
    go
}

/// `go tool pprof ARGS` with its cache in `dir`.
fn pprof(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(go())
        .args(["tool", "pprof"])
        .args(args)
        .env("HOME", dir)
        .env("PPROF_TMPDIR", dir)
        .env("GOCACHE", dir.join("gocache"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "go tool pprof {args:?}: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[test]
fn go_tool_pprof_reads_a_profile_of_the_agent() {
    let _m = lock();
    let dir = util::tempdir();
    let port = free_port();
    let _agent = agent(port, &[]);
    let w = workload("auto");
    let pids = workers(w.0.id());
    // pprof fetches the profile itself, as it would from a Go service.
    let url = format!("http://127.0.0.1:{port}/debug/pprof/profile?seconds=3");
    let top = pprof(dir.path(), &["-top", &url]);
    let kernel = top.lines().take(12).any(|l| l.contains("dgemm_kernel"));
    assert!(kernel, "OpenBLAS's kernel among the top functions:\n{top}");
    // One process only, with its labels.
    let url = format!(
        "http://127.0.0.1:{port}/debug/pprof/profile?seconds=2&pid={}",
        pids[0]
    );
    let traces = pprof(dir.path(), &["-traces", &url]);
    let label = |key: &str, value: &str| {
        traces.lines().any(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|v| v.trim() == value)
        })
    };
    assert!(label("pid:", &pids[0].to_string()), "{traces}");
    assert!(label("runtime:", "OpenBLAS"), "{traces}");
    assert!(!label("pid:", &pids[1].to_string()), "{traces}");
}

#[test]
fn record_writes_pprof_that_go_tool_pprof_reads() {
    let _m = lock();
    let dir = util::tempdir();
    let out = dir.path().join("matmul.pb.gz");
    let run = Command::new(util::cpuprof())
        .args(["record", "-q", "--pprof"])
        .arg(&out)
        .arg("--")
        .arg(util::matmul())
        .args(["--procs", "2", "--size", "256", "--iters", "1500"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    let top = pprof(
        dir.path(),
        &["-top", "-sample_index=cpu", out.to_str().unwrap()],
    );
    assert!(top.contains("dgemm_kernel"), "{top}");
    let traces = pprof(dir.path(), &["-traces", out.to_str().unwrap()]);
    for key in ["thread:", "tid:", "pid:", "runtime:"] {
        assert!(
            traces.lines().any(|l| l.trim_start().starts_with(key)),
            "no {key} label in {traces}"
        );
    }
}

#[test]
fn the_agent_listens_on_loopback_and_idle_clients_do_not_stop_it() {
    let _m = lock();
    // A bare port is loopback: the socket the kernel lists is 127.0.0.1's.
    let port = free_port();
    let _a = spawn(Command::new(util::cpuprof()).args(["agent", "--listen", &port.to_string()]));
    util::wait_for("the agent to listen", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{port:04X}");
    let listening: Vec<&str> = tcp
        .lines()
        .filter(|l| l.split_whitespace().nth(3) == Some("0A"))
        .filter(|l| l.contains(&format!(":{port:04X} ")))
        .collect();
    assert!(
        !listening.is_empty() && listening.iter().all(|l| l.contains(&local)),
        "the agent's listening sockets: {listening:?}"
    );
    // Clients that connect and say nothing, more than it answers at once...
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    // ...do not stop a scrape, nor the counters from moving.
    let read = || {
        let start = Instant::now();
        let (status, head, body) = get(port, "/metrics", None);
        assert_eq!(status, 200, "{head}");
        assert!(start.elapsed() < Duration::from_secs(5));
        let text = String::from_utf8(body).unwrap();
        text.lines()
            .find(|l| l.starts_with("cpuprof_agent_cpu_seconds_total"))
            .and_then(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .expect("the agent's own CPU")
    };
    std::thread::sleep(Duration::from_millis(1500));
    let a = read();
    std::thread::sleep(Duration::from_millis(2500));
    let b = read();
    assert!(b > a, "the agent kept sampling: {a} then {b}");
    drop(idle);
    // OpenMetrics when asked for, with its end marker; errors are plain.
    let (_, head, body) = get(
        port,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0"),
    );
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(String::from_utf8_lossy(&body).ends_with("# EOF\n"));
    assert_eq!(get(port, "/nope", None).0, 404);
    assert_eq!(get(port, "/debug/pprof/profile?seconds=0", None).0, 400);
}

#[test]
fn a_taken_port_is_one_clear_error() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(util::cpuprof())
        .args(["agent", "--listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot listen on"), "{err}");
}

#[test]
fn the_documented_config_alerts_and_dashboard_are_valid() {
    let promtool = Path::new("/usr/bin/promtool");
    assert!(
        promtool.exists(),
        "{} missing: run `make setup` (prometheus)",
        promtool.display()
    );
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/agent");
    for (what, file) in [("config", "prometheus.yml"), ("rules", "alerts.yml")] {
        let out = Command::new(promtool)
            .args(["check", what])
            .arg(docs.join(file))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool check {what} {file}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Every metric the dashboard and the alerts query is one the agent serves.
    let port = free_port();
    let _a = agent(port, &[]);
    let mut served = String::new();
    util::wait_for("a first refresh", Duration::from_secs(10), || {
        let (status, _, body) = get(port, "/metrics", None);
        served = String::from_utf8_lossy(&body).into_owned();
        status == 200
    });
    // Families are declared even while they have no series (no finding right now).
    let names: std::collections::BTreeSet<String> = served
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("# TYPE ")?;
            let (name, kind) = rest.split_once(' ')?;
            // The text format's metadata names counters with `_total` already.
            Some(match kind {
                "counter" if !name.ends_with("_total") => format!("{name}_total"),
                _ => name.to_string(),
            })
        })
        .collect();
    let dashboard = std::fs::read_to_string(docs.join("grafana-dashboard.json")).unwrap();
    let alerts = std::fs::read_to_string(docs.join("alerts.yml")).unwrap();
    let dash: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    assert!(!dash["panels"].as_array().unwrap().is_empty());
    let mut queried = std::collections::BTreeSet::new();
    for text in [&dashboard, &alerts] {
        let mut rest = text.as_str();
        while let Some(i) = rest.find("cpuprof_") {
            let name: String = rest[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[i + name.len()..];
            queried.insert(name);
        }
    }
    for name in &queried {
        assert!(names.contains(name), "{name} is not served: {names:?}");
    }
    assert!(queried.len() >= 8, "{queried:?}");
}
