//! `pip install cpuprof`: `make wheel` builds the wheel (maturin, `bin` bindings, manylinux via
//! zig); it is installed into a fresh virtual environment and records from there. And `cargo
//! install --path .` gives a `cpuprof` that needs no OpenBLAS.

mod util;

use std::path::Path;
use std::process::Command;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{text}");
    text
}

/// Libraries a binary links (`ldd`).
fn linked(bin: &Path) -> String {
    run(Command::new("ldd").arg(bin))
}

#[test]
fn the_wheel_installs_into_a_fresh_venv_and_records() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = util::tempdir();
    let wheels = dir.path().join("wheels");
    // The build `make wheel` runs, into this test's directory; its target directory is kept
    // between runs (as `make wheel`'s is), so a second run only links.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("wheel");
    let venv_bin = root.join(".venv/bin");
    assert!(
        venv_bin.join("maturin").exists(),
        "maturin missing from .venv: run `make setup`"
    );
    let path = format!(
        "{}:{}",
        venv_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    run(Command::new(venv_bin.join("maturin"))
        .current_dir(root)
        .env("PATH", &path)
        .args([
            "build",
            "--release",
            "--zig",
            "--compatibility",
            "manylinux2014",
        ])
        .arg("-o")
        .arg(&wheels)
        .arg("--target-dir")
        .arg(&target));
    let wheel = std::fs::read_dir(&wheels)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .expect("a wheel");
    let name = wheel.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("cpuprof-0.1.0-") && name.contains("manylinux2014_x86_64"),
        "{name}"
    );
    // Only the cpuprof binary is in it.
    let listing = run(Command::new(venv_bin.join("python"))
        .args(["-m", "zipfile", "-l"])
        .arg(&wheel));
    assert!(
        listing.contains("cpuprof-0.1.0.data/scripts/cpuprof"),
        "{listing}"
    );
    assert!(!listing.contains("matmul"), "{listing}");

    // A fresh environment from the real interpreter, the wheel installed without an index.
    let python = std::fs::canonicalize(venv_bin.join("python")).unwrap();
    let env = dir.path().join("env");
    run(Command::new(&python).args(["-m", "venv"]).arg(&env));
    run(Command::new(env.join("bin/pip"))
        .args(["install", "--no-index", "--quiet"])
        .arg(&wheel));
    let cpuprof = env.join("bin/cpuprof");
    let version = run(Command::new(&cpuprof).arg("--version"));
    assert_eq!(version.trim(), "cpuprof 0.1.0");
    assert!(!linked(&cpuprof).contains("openblas"));
    let json = dir.path().join("summary.json");
    run(Command::new(&cpuprof)
        .args(["-q", "--json"])
        .arg(&json)
        .args([
            "--",
            "sh",
            "-c",
            "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done",
        ]));
    let summary = util::read_json(&json).expect("a summary from the installed cpuprof");
    assert_eq!(summary["exit_code"], 0);
    assert!(util::num(&summary, "cpu_s") > 0.05, "{summary}");
}

#[test]
fn cargo_install_gives_a_cpuprof_without_openblas() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = util::tempdir();
    // The release build `make build` made is reused (same target directory): nothing is
    // compiled again, the binary is installed as `cargo install` would.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    run(Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["install", "--path", ".", "--offline", "--locked", "--root"])
        .arg(dir.path())
        .arg("--target-dir")
        .arg(&target));
    let bin = dir.path().join("bin/cpuprof");
    assert!(!dir.path().join("bin/cpuprof-matmul").exists());
    assert_eq!(
        run(Command::new(&bin).arg("--version")).trim(),
        "cpuprof 0.1.0"
    );
    let libs = linked(&bin);
    assert!(!libs.contains("openblas"), "{libs}");
}
