//! Output streams and prompt input (issue "nothing a user types loses data or panics", classes 6
//! and 10): a reader that goes away ends the command quietly; a full disk is an error exit with a
//! message, never a panic; prompts may start with `-`, come from a file or from standard input.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

fn fixture() -> String {
    confu::reference::fixture_roots()[0]
        .join("hf/llama3-tiny")
        .to_string_lossy()
        .to_string()
}

fn confu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_confu"))
}

fn questions() -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        f,
        r#"{{"question_id": 1, "category": "a", "turns": ["hello there"]}}"#
    )
    .unwrap();
    f
}

/// Every command that prints, with enough output to outlast a one-byte reader.
fn printing_commands(model: &str, q: &str) -> Vec<Vec<String>> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    vec![
        s(&["inspect", "--model", model]),
        s(&["inspect", "--model", model, "--json"]),
        s(&[
            "generate",
            "--model",
            model,
            "--prompt",
            "hi",
            "--max-new-tokens",
            "64",
            "--ignore-eos",
        ]),
        s(&[
            "generate",
            "--model",
            model,
            "--prompt",
            "hi",
            "--max-new-tokens",
            "8",
            "--json",
        ]),
        s(&[
            "eval",
            "--model",
            model,
            "--prompts",
            q,
            "--draft-kind",
            "lookup",
            "--max-new-tokens",
            "4",
        ]),
        s(&[
            "bench",
            "decode",
            "--model",
            model,
            "--prompt-len",
            "4",
            "--new-tokens",
            "2",
            "--runs",
            "1",
            "--warmup",
            "0",
        ]),
    ]
}

#[test]
fn a_closed_pipe_ends_quietly_and_a_full_disk_is_an_error() {
    let model = fixture();
    let q = questions();
    let mut checked = 0;
    for args in printing_commands(&model, q.path().to_str().unwrap()) {
        // The reader takes one byte and leaves.
        let mut child = confu()
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut one = [0u8; 1];
        child.stdout.take().unwrap().read_exact(&mut one).unwrap();
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("panicked"),
            "{args:?} panicked on a closed pipe: {err}"
        );
        assert!(
            out.status.success(),
            "{args:?} on a closed pipe: {:?} {err}",
            out.status
        );
        checked += 1;

        if let Ok(full) = std::fs::File::create("/dev/full") {
            let out = confu().args(&args).stdout(full).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                !err.contains("panicked"),
                "{args:?} panicked on a full disk: {err}"
            );
            assert!(
                !out.status.success(),
                "{args:?} exited 0 although its output was lost"
            );
            assert!(err.contains("standard output"), "{args:?}: {err}");
            checked += 1;
        }
    }
    println!("streams: {checked} closed-pipe / full-disk runs ended without a panic, as required");
}

fn generated(args: &[&str], stdin: Option<&str>) -> serde_json::Value {
    let mut child = confu()
        .args(args)
        .args(["--max-new-tokens", "4", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn prompts_may_start_with_a_dash_or_come_from_a_file_or_stdin() {
    let model = fixture();
    let m = model.as_str();
    for p in ["- item one", "-x", "--not-an-option"] {
        let v = generated(&["generate", "--model", m, "--prompt", p], None);
        assert_eq!(v["prompt"], p);
    }
    let v = generated(
        &["generate", "--model", m, "--prompt", "-"],
        Some("- from stdin\n"),
    );
    assert_eq!(v["prompt"], "- from stdin\n");
    let mut f = tempfile::NamedTempFile::new().unwrap();
    write!(f, "--- a/file\n+++ b/file\n").unwrap();
    let v = generated(
        &[
            "generate",
            "--model",
            m,
            "--prompt-file",
            f.path().to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(v["prompt"], "--- a/file\n+++ b/file\n");
    // Same ids as the same text given inline.
    let inline = generated(
        &[
            "generate",
            "--model",
            m,
            "--prompt=--- a/file\n+++ b/file\n",
        ],
        None,
    );
    assert_eq!(v["prompt_ids"], inline["prompt_ids"]);

    let out = confu().args(["generate", "--model", m]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("prompt"), "{err}");
    let out = confu()
        .args([
            "generate",
            "--model",
            m,
            "--prompt-file",
            "/nonexistent/prompt.txt",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("/nonexistent/prompt.txt"),
        "{err}"
    );
    println!("prompts: dash-led, stdin and file prompts accepted; missing ones named");
}
