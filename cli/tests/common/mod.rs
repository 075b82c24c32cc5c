//! Shared pieces of the command-line tests.
#![allow(dead_code)]

use std::process::Command;

/// Run `confu` with `args`; returns (success, stdout + stderr). A panic fails the test.
pub fn confu(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_confu"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("panicked"), "{args:?} panicked: {text}");
    (out.status.success(), text)
}

/// The llama3-tiny fixture target.
pub fn fixture_model() -> std::path::PathBuf {
    confu::reference::fixture_roots()[0].join("hf/llama3-tiny")
}

/// A small corpus folder: `train/a.txt` and `dev/b.txt`.
pub fn corpus() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (sub, file) in [("train", "a.txt"), ("dev", "b.txt")] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        let text = "the quick brown fox jumps over the lazy dog\n\n".repeat(40);
        std::fs::write(dir.path().join(sub).join(file), text).unwrap();
    }
    dir
}

/// The official EAGLE-3 fixture head of the llama3-tiny target.
pub fn fixture_draft() -> std::path::PathBuf {
    confu::reference::fixture_roots()[0].join("eagle3/llama3-tiny/draft")
}
