//! `cpuprof top`: the full-screen live view of a [`cpuprof_live::Watch`].
//!
//! [`app`] holds the state and the keys (pure, tested without a terminal), [`ui`] draws a
//! frame (tested on ratatui's test backend), and [`run`] is the loop: a refresh every
//! interval, keys in between, the terminal restored however it ends (`q`, Ctrl-C, a signal,
//! a panic: ratatui's panic hook restores it before the message).
#![deny(missing_docs)]

pub mod app;
pub mod text;
pub mod ui;

use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::Result;
use cpuprof_live::Watch;
use ratatui::crossterm::event::{self, Event, KeyEventKind};

use app::{Action, App};

/// Starts recording a process for the `r` key: the child doing it and where its report goes.
pub type StartRecording<'a> = dyn FnMut(u32) -> Result<(Child, PathBuf)> + 'a;

/// Runs the view until the user quits or `interrupted` says so.
pub fn run(
    watch: &mut Watch,
    interval: Duration,
    start_recording: &mut StartRecording,
    interrupted: &dyn Fn() -> bool,
) -> Result<()> {
    let mut terminal = ratatui::init();
    watch_for_hang_up();
    let result = event_loop(&mut terminal, watch, interval, start_recording, interrupted);
    ratatui::restore();
    result
}

/// The terminal went away (its window closed, the ssh connection dropped, `tmux
/// kill-server`). The kernel's SIGHUP does not always reach the view (it goes to the
/// terminal's foreground process group), and a hung-up terminal reads as end of file forever:
/// without this check the view would spin on it.
fn terminal_hung_up() -> bool {
    let mut fds = [1, 0].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `fds` is a valid array of pollfd for its length; a zero timeout never blocks.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
    n > 0
        && fds
            .iter()
            .any(|f| f.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0)
}

/// Exit code when the terminal hangs up (128 + SIGHUP, as a shell reports it).
pub const HANG_UP_EXIT_CODE: i32 = 129;

/// A backstop thread: crossterm reads a hung-up terminal in a loop that never returns (end of
/// file is not "no input"), so the loop's own check may never run again. There is no
/// terminal to restore then and nothing to write: the process exits.
fn watch_for_hang_up() {
    let _ = std::thread::Builder::new()
        .name("cpuprof-hangup".into())
        .spawn(|| loop {
            std::thread::sleep(Duration::from_millis(250));
            if terminal_hung_up() {
                std::process::exit(HANG_UP_EXIT_CODE);
            }
        });
}

fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    watch: &mut Watch,
    interval: Duration,
    start_recording: &mut StartRecording,
    interrupted: &dyn Fn() -> bool,
) -> Result<()> {
    let mut app = App::new(watch.snapshot());
    let mut recordings: Vec<(u32, Child, PathBuf)> = Vec::new();
    let mut next_refresh = Instant::now() + interval;
    let mut ended = false;
    // Drawn when something changed (a refresh, a key, a resize, a recording's end), not at
    // every turn of the loop: a frame of a few hundred processes is most of what the view
    // costs.
    let mut dirty = true;
    loop {
        if dirty {
            terminal.draw(|f| ui::draw(f, &app))?;
            dirty = false;
        }
        if terminal_hung_up() {
            return Ok(());
        }
        // Keys until the next refresh, looking at the interrupt flag and the recordings
        // every 100 ms.
        let wait = next_refresh
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        if event::poll(wait)? {
            dirty = true;
            if let Event::Key(k) = event::read()? {
                if k.kind == KeyEventKind::Press {
                    match app.key(k) {
                        Action::Quit => return Ok(()),
                        Action::Record(pid) => match start_recording(pid) {
                            Ok((child, path)) => {
                                app.status =
                                    format!("recording {pid} for 10 s into {}", path.display());
                                recordings.push((pid, child, path));
                            }
                            Err(e) => app.status = format!("cannot record {pid}: {e:#}"),
                        },
                        Action::None => {}
                    }
                }
            }
            // Resizes and other events: redrawn at the top of the loop.
        }
        if interrupted() || terminal_hung_up() {
            return Ok(());
        }
        recordings.retain_mut(|(pid, child, path)| match child.try_wait() {
            Ok(Some(status)) => {
                dirty = true;
                app.status = match status.success() {
                    true => format!("report of {pid} written to {}", path.display()),
                    false => format!("recording {pid} failed ({status})"),
                };
                false
            }
            Ok(None) => true,
            Err(e) => {
                dirty = true;
                app.status = format!("recording {pid}: {e}");
                false
            }
        });
        if Instant::now() >= next_refresh {
            next_refresh += interval;
            if next_refresh < Instant::now() {
                next_refresh = Instant::now() + interval;
            }
            if !ended {
                dirty = true;
                ended = watch.tick(Duration::ZERO);
                app.update(watch.snapshot());
                if ended {
                    app.status = "the watched processes ended; q quits".into();
                }
            }
        }
    }
}
