//! Reference checks that ship with confu and run on any backend.
//!
//! `confu check` runs them on a user's device, so that a GPU setup can be verified without a Rust
//! toolchain there; the test suites run the very same functions on the CPU backend. Each check
//! gives one [`CheckLine`] with what it measured. Nothing panics on a broken folder: a folder that
//! cannot be read is a failed line that names it.

mod hf_parity;
mod speculative_runs;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use burn::tensor::backend::Backend;
use confu_core::Ops;

pub use hf_parity::hf_parity;
pub use speculative_runs::{confu_runs, eagle3_runs, greedy_equality};

use crate::reference::fixture_dirs_in;

/// The outcome of one check.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckLine {
    /// What was checked (`parity hf/llama3-tiny`, …).
    pub name: String,
    /// What was measured, and on failure what differed.
    pub detail: String,
    pub passed: bool,
}

impl CheckLine {
    pub fn pass(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            detail: detail.into(),
            passed: true,
        }
    }

    pub fn fail(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            detail: detail.into(),
            passed: false,
        }
    }
}

impl fmt::Display for CheckLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.passed { "ok" } else { "FAILED" };
        write!(f, "{:<6} {}: {}", verdict, self.name, self.detail)
    }
}

/// Every fixture check under `roots` (`hf/`, `eagle3/` and `confu/` folders), each line handed
/// to `on_line` as soon as it is known.
pub fn fixture_checks<B: Backend>(
    roots: &[PathBuf],
    ops: Arc<dyn Ops<B>>,
    device: &B::Device,
    mut on_line: impl FnMut(&CheckLine),
) -> Vec<CheckLine> {
    let mut lines = Vec::new();
    let mut emit = |line: CheckLine| {
        on_line(&line);
        lines.push(line);
    };
    for dir in fixture_dirs_in(roots, "hf") {
        emit(hf_parity(&dir, ops.clone(), device));
    }
    let described = |kind| {
        fixture_dirs_in(roots, kind)
            .into_iter()
            .filter(|d| d.join("meta.json").exists())
    };
    for dir in described("eagle3") {
        eagle3_runs(&dir, ops.clone(), device)
            .into_iter()
            .for_each(&mut emit);
    }
    for dir in described("confu") {
        confu_runs(&dir, ops.clone(), device)
            .into_iter()
            .for_each(&mut emit);
    }
    lines
}
