//! cpuprof: CPU time against wall time for every process and thread of a program.
//!
//! The binary only parses arguments and wires the library crates together (`record.rs`,
//! `report_cmd.rs`, `sweep_cmd.rs`, `top_cmd.rs`). This file is the one place that turns an error into one line on stderr
//! and an exit code (see `docs/usage.md`).

mod agent_cmd;
mod cli;
mod outputs;
mod record;
mod report_cmd;
mod signals;
mod status_line;
mod sweep_cmd;
mod top_cmd;

use clap::Parser;

use cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Report(args)) => report_cmd::run(args),
        Some(Command::Record(args)) => record::run(args),
        Some(Command::Sweep(args)) => sweep_cmd::run(args),
        Some(Command::Top(args)) => top_cmd::run(args),
        Some(Command::Agent(args)) => agent_cmd::run(args),
        None => record::run(cli.record),
    };
    let code = match result {
        Ok(code) => code,
        Err(e) => error_exit_code(&e),
    };
    std::process::exit(code);
}

/// Prints the error as one line and returns the exit code for it.
fn error_exit_code(e: &anyhow::Error) -> i32 {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        if io.kind() == std::io::ErrorKind::BrokenPipe {
            return 0; // `cpuprof ... --json - | head`: quiet, like ripgrep
        }
    }
    let mut line = String::from("cpuprof: ");
    for (i, cause) in e.chain().enumerate() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue; // a message that already quotes its source
        }
        if i > 0 {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    eprintln!("{line}");
    e.downcast_ref::<cpuprof_collect::CollectError>()
        .and_then(|c| c.launch_exit_code())
        .unwrap_or(1)
}
