//! Parity with Hugging Face transformers on every fixture under `hf/` of every fixture root:
//! logits, every `layer_input.{i}`, `final_norm`, the tokenizer cases and greedy generation through
//! the KV-cache decode loop (`confu::check::hf_parity`, the check `confu check` runs on any
//! device). A folder that cannot be loaded fails the test.

use confu::check::hf_parity;
use confu::reference::{fixture_dirs, fixture_roots};

#[test]
fn every_hf_fixture_matches_transformers() {
    let dirs = fixture_dirs("hf");
    assert!(
        !dirs.is_empty(),
        "no fixture folders found under hf/ of {:?}",
        fixture_roots()
    );
    let mut failed = Vec::new();
    for dir in &dirs {
        let line = hf_parity(dir, backend_cpu::ops(), &Default::default());
        println!("{line}");
        if !line.passed {
            failed.push(dir.display().to_string());
        }
    }
    assert!(failed.is_empty(), "fixtures failing parity: {failed:?}");
}
