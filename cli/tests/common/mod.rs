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
