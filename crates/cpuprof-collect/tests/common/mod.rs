//! What the collectors' tests share: the C programs they record, compiled here with gcc.

use std::path::{Path, PathBuf};

/// Compiles `source` with gcc and `flags` into `dir/name`.
pub fn compile_c(dir: &Path, name: &str, source: &str, flags: &[&str]) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    let exe = dir.join(name);
    std::fs::write(&src, source).unwrap();
    let status = std::process::Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("gcc runs");
    assert!(status.success(), "gcc failed on {name}.c");
    exe
}
