//! The procfs poller on a real process: a thread that stops running keeps its last `stat`
//! between polls (crate::poller's `read_thread`), and its figures stay the kernel's.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use cpuprof_collect::launcher::PausedChild;
use cpuprof_collect::poller::{Poller, Target};
use cpuprof_collect::tree::LiveTree;
use cpuprof_model::{Event, ThreadPoint, Tid};

/// A thread named `dozer` wakes 300 times (each a voluntary switch), then sleeps; the main
/// thread sleeps throughout. The program prints `ready` when the dozer sleeps for good.
const DOZER_C: &str = r#"
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
static void *nap(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "dozer");
    for (int i = 0; i < 300; i++) usleep(500);
    printf("ready\n");
    fflush(stdout);
    sleep(30);
    return 0;
}
int main(void) {
    pthread_t t;
    pthread_create(&t, 0, nap, 0);
    pthread_join(t, 0);
    return 0;
}
"#;

/// `voluntary_ctxt_switches` and `nonvoluntary_ctxt_switches` of a thread, as the kernel says.
fn kernel_switches(pid: u32, tid: Tid) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    (
        field("voluntary_ctxt_switches:"),
        field("nonvoluntary_ctxt_switches:"),
    )
}

#[test]
fn a_thread_that_stopped_running_keeps_the_kernels_switch_counts() {
    let dir = std::env::temp_dir().join(format!("cpuprof-poller-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = common::compile_c(&dir, "pollee", DOZER_C, &["-O2", "-pthread"]);
    let out = dir.join("out");
    let cmd = format!("exec {} > {}", exe.display(), out.display());
    let mut child = PausedChild::spawn(&["sh", "-c", &cmd], false).expect("spawn");
    let pid = child.pid();
    let (tx, rx) = mpsc::channel();
    let stop = Arc::new(AtomicBool::new(false));
    let mut poller = Poller::new(
        Target::Launched(pid),
        Duration::from_millis(10),
        tx,
        LiveTree::new(),
        stop.clone(),
    );
    poller.poll_now();
    let handle = poller.spawn().unwrap();
    child.release().expect("exec");
    let ready = || std::fs::read_to_string(&out).is_ok_and(|s| s.contains("ready"));
    for _ in 0..500 {
        if ready() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(ready(), "the dozer never went to sleep");
    // Twelve polls of a thread that no longer runs: its `stat` is kept, and its `status` is
    // due at three of them.
    std::thread::sleep(Duration::from_millis(120));
    let dozer = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<Tid>().ok())
        .find(|&tid| {
            std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                .is_ok_and(|c| c.trim() == "dozer")
        })
        .expect("the dozer thread");
    let kernel = kernel_switches(pid, dozer);
    std::thread::sleep(Duration::from_millis(60));
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    // SAFETY: the child is ours; the poller has stopped and does not reap it now.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let mut last: BTreeMap<Tid, (String, ThreadPoint)> = BTreeMap::new();
    for e in rx.try_iter() {
        let events = match e {
            Event::Batch(b) => b,
            e => vec![e],
        };
        for e in events {
            if let Event::ThreadPoint {
                tid, name, point, ..
            } = e
            {
                last.insert(tid, (name, point));
            }
        }
    }
    let (name, point) = &last[&dozer];
    assert_eq!(name, "dozer");
    assert!(kernel.0 >= 300, "the dozer slept only {} times", kernel.0);
    assert_eq!(
        (point.vcsw, point.ivcsw),
        kernel,
        "the poller's last figures of a thread asleep for 180 ms"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
