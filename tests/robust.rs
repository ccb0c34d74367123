//! Bad input, bad paths, signals and crafted files on real processes (issue 14): never a
//! panic, never a lost recording, a signal reaches the target once.
//!
//! These measure time and signals: run them one at a time (`--test-threads=1`).

mod util;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::*;

/// `clean`: on the first SIGINT, SIGTERM or SIGHUP it cleans up (sleeps 0.3 s) and exits 0; a
/// second signal before the cleanup is done exits 99 (a "force quit"). Prints `ready` once
/// its handlers are in place, then waits up to 10 s.
const CLEAN_C: &str = r#"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static volatile sig_atomic_t got = 0;
static void on(int s) { got++; if (got > 1) _exit(99); }
int main(void) {
    struct sigaction sa; memset(&sa, 0, sizeof sa); sa.sa_handler = on;
    sigaction(SIGINT, &sa, 0); sigaction(SIGTERM, &sa, 0); sigaction(SIGHUP, &sa, 0);
    printf("ready\n"); fflush(stdout);
    for (int i = 0; i < 1000 && !got; i++) usleep(10000);
    if (!got) return 3;
    struct timespec t = {0, 300000000}; while (nanosleep(&t, &t)) {}
    return 0;
}
"#;

/// cpuprof in a new session (no controlling terminal) recording `clean`, its stdout read
/// until `ready`; returns (cpuprof, its pid = its process group).
fn start_clean(dir: &std::path::Path, extra: &[&str]) -> (std::process::Child, i32) {
    let exe = compile_c(dir, "clean", CLEAN_C);
    let mut c = Command::new("setsid");
    c.arg(cpuprof())
        .arg("-q")
        .args(extra)
        .arg("--")
        .arg(&exe)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("setsid cpuprof");
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    out.read_exact(&mut buf).expect("the target's ready line");
    assert_eq!(&buf, b"ready\n");
    // setsid execs cpuprof in place when it is not a group leader: its pid is the group.
    let pid = child.id() as i32;
    (child, pid)
}

/// Waits for `child`, failing after `secs`.
fn wait(mut child: std::process::Child, secs: u64) -> (Option<i32>, String) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err);
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "cpuprof did not end"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_signal_to_the_whole_group_reaches_the_target_once() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let dir = tempdir();
        let json = dir.path().join("s.json");
        let (child, pgid) = start_clean(dir.path(), &["--json", json.to_str().unwrap()]);
        // SAFETY: kill with a negative pid signals that process group.
        assert_eq!(unsafe { libc::kill(-pgid, sig) }, 0);
        let (code, err) = wait(child, 10);
        // The target cleaned up and exited 0 (a second signal would make it exit 99).
        assert_eq!(code, Some(0), "signal {sig}: {err}");
        let s = read_json(&json).expect("summary written");
        assert_eq!(s["exit_code"], 0, "signal {sig}");
    }
}

#[test]
fn a_signal_to_cpuprof_alone_reaches_the_target_once() {
    let dir = tempdir();
    let (child, pid) = start_clean(dir.path(), &[]);
    // SAFETY: plain kill of cpuprof's pid; sent twice at once, as `timeout` does.
    unsafe {
        libc::kill(pid, libc::SIGINT);
        libc::kill(pid, libc::SIGINT);
    }
    let (code, err) = wait(child, 10);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn sighup_ends_the_recording_with_every_output_written() {
    let dir = tempdir();
    let (save, json, html) = (
        dir.path().join("p.cpuprof"),
        dir.path().join("p.json"),
        dir.path().join("p.html"),
    );
    let (child, pid) = start_clean(
        dir.path(),
        &[
            "--save",
            save.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
            "-o",
            html.to_str().unwrap(),
        ],
    );
    // SAFETY: plain kill.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let (code, err) = wait(child, 10);
    // The target got SIGHUP once, cleaned up and exited 0: cpuprof passes its code on.
    assert_eq!(code, Some(0), "{err}");
    assert!(save.exists() && json.exists() && html.exists(), "{err}");
    assert!(cpuprof_model::file::load(&save).is_ok());
}

#[test]
fn bad_option_values_are_one_line_never_a_panic() {
    for args in [
        &["-q", "--duration", "1e20", "--", "true"][..],
        &["-q", "--interval", "1e20", "--", "true"],
        &["-q", "--duration", "nan", "--", "true"],
        &["-q", "--interval", "0", "--", "true"],
    ] {
        let r = run(args);
        assert_eq!(r.code, Some(2), "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains("error:"), "{args:?}: {}", r.stderr);
    }
}

#[test]
fn bad_output_paths_are_refused_before_the_target_runs() {
    let dir = tempdir();
    let same = dir.path().join("same.out");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--save".into(), "/nonexistent-dir/x.cpuprof".into()],
            "no directory",
        ),
        (
            vec!["--json".into(), dir.path().display().to_string()],
            "is a directory",
        ),
        (
            vec![
                "-o".into(),
                same.display().to_string(),
                "--save".into(),
                same.display().to_string(),
            ],
            "cannot both",
        ),
        (
            vec![
                "--json".into(),
                "-".into(),
                "--collapsed".into(),
                "-".into(),
            ],
            "only one output",
        ),
    ];
    for (flags, says) in cases {
        let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
        args.extend(["-q", "--", "sleep", "3"]);
        let start = Instant::now();
        let r = run(&args);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{flags:?} ran the target"
        );
        assert_eq!(r.code, Some(1), "{flags:?}: {}", r.stderr);
        assert_eq!(r.stderr.lines().count(), 1, "{flags:?}: {}", r.stderr);
        assert!(r.stderr.contains(says), "{flags:?}: {}", r.stderr);
    }
}

#[test]
fn one_failed_output_does_not_lose_the_others() {
    let dir = tempdir();
    let json = dir.path().join("ok.json");
    let folded = dir.path().join("ok.folded");
    // /proc is a directory root may "write" but where no file can be created.
    let r = run(&[
        "-q",
        "--save",
        "/proc/x.cpuprof",
        "--json",
        json.to_str().unwrap(),
        "--collapsed",
        folded.to_str().unwrap(),
        "--",
        "true",
    ]);
    if r.code == Some(1) && r.stderr.contains("not writable") {
        return; // not root: refused before the start, which is right too
    }
    assert_eq!(r.code, Some(4), "{}", r.stderr);
    assert!(json.exists() && folded.exists(), "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot write the profile"),
        "{}",
        r.stderr
    );
    // Every file output failing: the recording is kept in the temporary directory.
    let r = run(&["-q", "--save", "/proc/y.cpuprof", "--", "true"]);
    assert_eq!(r.code, Some(4), "{}", r.stderr);
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("the recording is saved in"))
        .unwrap_or_else(|| panic!("{}", r.stderr));
    let path = line.split('\'').nth(1).unwrap();
    assert!(cpuprof_model::file::load(std::path::Path::new(path)).is_ok());
    std::fs::remove_file(path).unwrap();
}

#[test]
fn a_full_disk_leaves_no_partial_file() {
    let dir = tempdir();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16k", "tmpfs"])
        .arg(&mnt)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a small tmpfs (needs root)");
        return;
    }
    let html = mnt.join("r.html");
    let json = dir.path().join("s.json");
    let r = run(&[
        "-q",
        "-o",
        html.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done",
    ]);
    let left: Vec<_> = std::fs::read_dir(&mnt).unwrap().flatten().collect();
    let _ = Command::new("umount").arg("-l").arg(&mnt).status();
    assert_eq!(r.code, Some(4), "{}", r.stderr);
    assert!(
        r.stderr.contains("cannot write the HTML report"),
        "{}",
        r.stderr
    );
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(json.exists());
}

#[test]
fn dash_means_standard_output_for_every_output() {
    let dir = tempdir();
    let r = Command::new(cpuprof())
        .args(["-q", "-o", "-", "--", "true"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&r.stdout).starts_with("<!DOCTYPE html>"));
    assert!(!dir.path().join("-").exists());
    let r = Command::new(cpuprof())
        .args(["-q", "--save", "-", "--", "true"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(&r.stdout[..2], &[0x1f, 0x8b], "gzip on stdout");
    assert!(cpuprof_model::file::read(&r.stdout[..]).is_ok());
}

#[test]
fn commands_that_are_not_utf8_run_as_given() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempdir();
    let json = dir.path().join("s.json");
    let arg = std::ffi::OsStr::from_bytes(b"caf\xe9");
    let out = Command::new(cpuprof())
        .args(["-q", "--json"])
        .arg(&json)
        .args(["--", "printf", "%s"])
        .arg(arg)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"caf\xe9", "the target got the bytes as given");
    let s = read_json(&json).unwrap();
    assert_eq!(s["command"][2], "caf\\xe9");
}

#[test]
fn a_directory_or_a_kernel_thread_gets_a_clear_line() {
    let dir = tempdir();
    let r = run(&["report", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("is a directory"), "{}", r.stderr);
    let r = run(&["-q", "--pid", "2", "--duration", "0.2"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("kernel thread"), "{}", r.stderr);
}

/// A real profile, mutated at random many times: loading it either fails with an error or
/// gives a profile whose analysis and every output render without a panic.
#[test]
fn crafted_profiles_never_panic() {
    let dir = tempdir();
    let save = dir.path().join("real.cpuprof");
    let r = run(&[
        "-q",
        "--save",
        save.to_str().unwrap(),
        "--",
        "sh",
        "-c",
        "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done & wait",
    ]);
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    let mut gz = Vec::new();
    std::fs::File::open(&save)
        .unwrap()
        .read_to_end(&mut gz)
        .unwrap();
    let mut json = String::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_string(&mut json)
        .unwrap();
    // CPUPROF_FUZZ_SEED and CPUPROF_FUZZ_SECS run it longer or elsewhere by hand.
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let mut rng = env("CPUPROF_FUZZ_SEED").unwrap_or(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let numbers: Vec<(usize, usize)> = number_spans(&json);
    let deadline = Instant::now() + Duration::from_secs(env("CPUPROF_FUZZ_SECS").unwrap_or(8));
    let mut loaded = 0;
    let mut tries = 0;
    while Instant::now() < deadline {
        tries += 1;
        let mut text = json.clone();
        // Replace 1–3 numbers by others (huge, zero, negative, near), a favourite of crafted
        // files: indices out of range, times out of order, rates of zero.
        for _ in 0..1 + next() % 3 {
            let (a, b) = numbers[(next() % numbers.len() as u64) as usize];
            let v = match next() % 5 {
                0 => "1000000000".to_string(),
                1 => "0".to_string(),
                2 => "4294967295".to_string(),
                3 => (next() % 1000).to_string(),
                _ => "18446744073709551615".to_string(),
            };
            if b <= text.len() {
                text.replace_range(a..b, &v);
            }
        }
        if std::env::var_os("CPUPROF_FUZZ_TRACE").is_some() {
            eprintln!("try {tries}: {}", diff(&json, &text));
        }
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(text.as_bytes()).unwrap();
        let bytes = enc.finish().unwrap();
        let result = std::panic::catch_unwind(|| {
            if let Ok(p) = cpuprof_model::file::read(&bytes[..]) {
                let a = cpuprof_analysis::analyze(&p);
                let _ = cpuprof_report::summary::to_json(&p, &a);
                let _ = cpuprof_report::terminal::render(&p, &a, false);
                let _ = cpuprof_report::html::render(&p, &a);
                let _ = cpuprof_report::collapsed::write(&p, std::io::sink());
                true
            } else {
                false
            }
        });
        match result {
            Ok(ok) => loaded += usize::from(ok),
            Err(_) => panic!(
                "a crafted profile panicked (try {tries}): {}",
                diff(&json, &text)
            ),
        }
    }
    assert!(tries > 20 && loaded > 0, "{tries} tries, {loaded} loaded");
}

/// Byte ranges of the JSON numbers in `text`.
fn number_spans(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() && (i == 0 || matches!(b[i - 1], b':' | b',' | b'[')) {
            let start = i;
            while i < b.len() && (b[i].is_ascii_digit() || matches!(b[i], b'.' | b'e' | b'-')) {
                i += 1;
            }
            out.push((start, i));
        } else {
            i += 1;
        }
    }
    out
}

/// Where two texts first differ, for the failure message.
fn diff(a: &str, b: &str) -> String {
    let at = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let from = at.saturating_sub(80);
    format!(
        "…{}… (became …{}…)",
        &a[from..(at + 40).min(a.len())],
        &b[from..(at + 40).min(b.len())]
    )
}
