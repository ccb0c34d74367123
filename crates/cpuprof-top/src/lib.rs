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
    let result = event_loop(&mut terminal, watch, interval, start_recording, interrupted);
    ratatui::restore();
    result
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
    loop {
        terminal.draw(|f| ui::draw(f, &app))?;
        // Keys until the next refresh, looking at the interrupt flag and the recordings
        // every 100 ms.
        let wait = next_refresh
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        if event::poll(wait)? {
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
        if interrupted() {
            return Ok(());
        }
        recordings.retain_mut(|(pid, child, path)| match child.try_wait() {
            Ok(Some(status)) => {
                app.status = match status.success() {
                    true => format!("report of {pid} written to {}", path.display()),
                    false => format!("recording {pid} failed ({status})"),
                };
                false
            }
            Ok(None) => true,
            Err(e) => {
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
                ended = watch.tick(Duration::ZERO);
                app.update(watch.snapshot());
                if ended {
                    app.status = "the watched processes ended; q quits".into();
                }
            }
        }
    }
}
