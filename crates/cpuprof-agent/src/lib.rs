//! `cpuprof agent`: a [`cpuprof_live::Watch`] that runs for days, served over HTTP to the
//! scrapers a fleet already runs.
//!
//! - `/metrics`: Prometheus text format, or OpenMetrics when the scraper asks for it
//!   ([`metrics`]): per process CPU, run-queue wait, threads, pools, budget, demand and the
//!   active findings of the last window; the machine; the agent's own cost.
//! - `/debug/pprof/profile?seconds=N[&pid=P]`: a CPU profile in pprof's format, the endpoint
//!   Parca and Grafana Alloy's `pyroscope.scrape` read from Go services. perf (and the Python
//!   sampler) run only while a profile is being recorded: a recording of its own on the same
//!   pipeline, for N seconds.
//!
//! The sampling loop never waits for a client: it renders the metrics once per refresh and
//! swaps them in; each request is answered on a thread of its own, at most
//! [`MAX_REQUESTS`] at a time, and one profile at a time.
#![deny(missing_docs)]

pub mod metrics;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cpuprof_live::{Watch, WatchOptions};
use cpuprof_session::{ExitSource, Options, Session, Target};
use tiny_http::{Header, Method, Request, Response, Server};

use metrics::{Format, Metrics, SelfFigures};

/// Requests answered at once; more get `503` at once rather than a thread each.
pub const MAX_REQUESTS: usize = 16;
/// The longest profile a request may ask for, s.
pub const MAX_PROFILE_SECONDS: u64 = 300;
/// The profile length when a request does not say (Go's `net/http/pprof` default).
pub const DEFAULT_PROFILE_SECONDS: u64 = 30;

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// What to watch (a scope or a process tree).
    pub target: Target,
    /// Only processes whose command line matches.
    pub matcher: Option<regex::Regex>,
    /// Processes with series of their own.
    pub max_processes: usize,
    /// Refresh interval.
    pub interval: Duration,
    /// The window findings are over.
    pub window: Duration,
}

/// The latest rendering, swapped in once per refresh.
#[derive(Debug, Default)]
struct Rendered {
    text: Arc<String>,
    openmetrics: Arc<String>,
}

/// Runs until `stop` says so; `ready` is told the address once it is bound. Errors: the
/// address cannot be bound, the target cannot be watched.
pub fn run(opts: AgentOptions, ready: &dyn Fn(SocketAddr), stop: &dyn Fn() -> bool) -> Result<()> {
    let server = Server::http(opts.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", opts.listen))?;
    ready(opts.listen);
    let server = Arc::new(server);
    let mut watch = Watch::start(
        opts.target.clone(),
        WatchOptions {
            interval: opts.interval,
            window: opts.window,
            stacks: false,
        },
    )?;
    let rendered = Arc::new(Mutex::new(Rendered::default()));
    let http = {
        let server = server.clone();
        let rendered = rendered.clone();
        let target = opts.target.clone();
        std::thread::Builder::new()
            .name("cpuprof-http".into())
            .spawn(move || serve(&server, &rendered, &target))
            .context("cannot start the HTTP thread")?
    };
    let mut metrics = Metrics::new(opts.max_processes);
    let mut next = Instant::now() + opts.interval;
    let mut ended = false;
    while !stop() {
        // Look at `stop` every 200 ms while waiting for the next refresh.
        let wait = next.saturating_duration_since(Instant::now());
        if !ended {
            ended = watch.tick(wait.min(Duration::from_millis(200)));
        } else {
            std::thread::sleep(wait.min(Duration::from_millis(200)));
        }
        if Instant::now() < next {
            continue;
        }
        next += opts.interval;
        if next < Instant::now() {
            next = Instant::now() + opts.interval;
        }
        // The watched tree ended (`--pid`): what was last seen is served until stopped.
        if ended {
            continue;
        }
        let mut snap = watch.snapshot();
        let increments = watch.increments();
        if let Some(re) = &opts.matcher {
            snap.processes
                .retain(|p| re.is_match(&p.command.join(" ")) || re.is_match(&p.name));
        }
        metrics.update(&snap, &increments);
        let me = SelfFigures {
            cpu_s: cpuprof_collect::rusage::own_cpu().total_ns() as f64 / 1e9,
            rss_bytes: own_rss_bytes(),
        };
        let text = Arc::new(metrics.render(&snap, me, Format::Text));
        let openmetrics = Arc::new(metrics.render(&snap, me, Format::OpenMetrics));
        if let Ok(mut r) = rendered.lock() {
            r.text = text;
            r.openmetrics = openmetrics;
        }
    }
    server.unblock();
    let _ = http.join();
    watch.stop()
}

fn own_rss_bytes() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
    cpuprof_collect::procfs::stat::read(std::process::id()).map_or(0, |s| s.rss_pages * page)
}

/// Answers requests until the server is unblocked.
fn serve(server: &Server, rendered: &Arc<Mutex<Rendered>>, target: &Target) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let profiling = Arc::new(AtomicBool::new(false));
    for request in server.incoming_requests() {
        if in_flight.load(Ordering::SeqCst) >= MAX_REQUESTS {
            let _ = request.respond(text(503, "too many requests in flight\n"));
            continue;
        }
        in_flight.fetch_add(1, Ordering::SeqCst);
        let rendered = rendered.clone();
        let counter = in_flight.clone();
        let profiling = profiling.clone();
        let target = target.clone();
        let spawned = std::thread::Builder::new()
            .name("cpuprof-request".into())
            .spawn(move || {
                answer(request, &rendered, &target, &profiling);
                counter.fetch_sub(1, Ordering::SeqCst);
            });
        // Without a thread the request went with the closure, unanswered (the client sees
        // the connection close), and is no longer in flight.
        if spawned.is_err() {
            in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
}

fn text(code: u16, body: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body.to_string())
        .with_status_code(code)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
}

const INDEX: &str = "cpuprof agent\n\n/metrics                               Prometheus metrics (OpenMetrics when asked for)\n/debug/pprof/profile?seconds=N&pid=P   a CPU profile (pprof), N seconds (default 30)\n";

fn answer(request: Request, rendered: &Mutex<Rendered>, target: &Target, profiling: &AtomicBool) {
    let url = request.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    if !matches!(request.method(), Method::Get | Method::Head) {
        let _ = request.respond(text(405, "only GET\n"));
        return;
    }
    match path {
        "/" => {
            let _ = request.respond(text(200, INDEX));
        }
        "/metrics" => {
            let accept = request
                .headers()
                .iter()
                .find(|h| h.field.equiv("Accept"))
                .map(|h| h.value.as_str().to_string());
            let format = Format::from_accept(accept.as_deref());
            let body = rendered.lock().map(|r| match format {
                Format::Text => r.text.clone(),
                Format::OpenMetrics => r.openmetrics.clone(),
            });
            match body {
                Ok(body) if !body.is_empty() => {
                    let response = Response::from_data(body.as_bytes().to_vec())
                        .with_header(header("Content-Type", format.content_type()));
                    let _ = request.respond(response);
                }
                _ => {
                    let _ = request.respond(text(503, "no refresh yet; try again in a second\n"));
                }
            }
        }
        "/debug/pprof/profile" => {
            let (seconds, pid) = match profile_params(query) {
                Ok(p) => p,
                Err(e) => {
                    let _ = request.respond(text(400, &format!("{e}\n")));
                    return;
                }
            };
            if profiling.swap(true, Ordering::SeqCst) {
                let _ = request.respond(text(
                    429,
                    "a profile is being recorded; try again after it\n",
                ));
                return;
            }
            let target = match pid {
                Some(p) => Target::Pid(p),
                None => target.clone(),
            };
            let result = record_profile(target, Duration::from_secs(seconds));
            profiling.store(false, Ordering::SeqCst);
            match result {
                Ok(bytes) => {
                    let response = Response::from_data(bytes)
                        .with_header(header("Content-Type", "application/octet-stream"))
                        .with_header(header(
                            "Content-Disposition",
                            "attachment; filename=\"profile.pb.gz\"",
                        ));
                    let _ = request.respond(response);
                }
                Err(e) => {
                    let _ = request.respond(text(500, &format!("cannot record: {e:#}\n")));
                }
            }
        }
        _ => {
            let _ = request.respond(text(404, "not found; see /\n"));
        }
    }
}

/// `seconds=N` (1 to [`MAX_PROFILE_SECONDS`], default [`DEFAULT_PROFILE_SECONDS`]) and
/// `pid=P` of a profile request.
pub fn profile_params(query: &str) -> Result<(u64, Option<u32>), String> {
    let mut seconds = DEFAULT_PROFILE_SECONDS;
    let mut pid = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "seconds" => {
                seconds = v
                    .parse()
                    .ok()
                    .filter(|s| (1..=MAX_PROFILE_SECONDS).contains(s))
                    .ok_or_else(|| {
                        format!("seconds must be a whole number from 1 to {MAX_PROFILE_SECONDS}")
                    })?
            }
            "pid" => {
                pid = Some(
                    v.parse()
                        .map_err(|_| "pid must be a process id".to_string())?,
                )
            }
            _ => {}
        }
    }
    Ok((seconds, pid))
}

/// A recording of its own with perf and the Python sampler, for `len`: the profile's stacks
/// as pprof.
fn record_profile(target: Target, len: Duration) -> Result<Vec<u8>> {
    let opts = Options {
        interval: Duration::from_millis(100),
        perf: Some(cpuprof_collect::perf::PerfOptions::default()),
        python: Some(cpuprof_python::PythonOptions::default()),
        exit_accounting: ExitSource::LastPoll,
        ..Options::default()
    };
    let mut session = Session::launch(target, opts)?;
    session.release()?;
    let end = Instant::now() + len;
    while Instant::now() < end {
        let left = end.saturating_duration_since(Instant::now());
        if session.tick(left.min(Duration::from_millis(200))) {
            break;
        }
    }
    session.stop();
    let rec = session.finish()?;
    Ok(cpuprof_report::pprof::to_pprof(
        &rec.profile,
        &rec.analysis,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_parameters() {
        assert_eq!(profile_params(""), Ok((30, None)));
        assert_eq!(profile_params("seconds=3&pid=42"), Ok((3, Some(42))));
        assert!(profile_params("seconds=0").is_err());
        assert!(profile_params("seconds=abc").is_err());
        assert!(profile_params("seconds=100000").is_err());
        assert!(profile_params("pid=x").is_err());
    }
}
