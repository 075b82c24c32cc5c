//! Sizes a user types are checked before any work: values near `u64::MAX` give a clear error or
//! saturate, never wrap around or allocate until the process dies.

mod common;

use common::confu;

#[test]
fn huge_sizes_are_refused_or_saturate() {
    let model = confu::reference::fixture_roots()[0].join("hf/llama3-tiny");
    let m = model.to_str().unwrap();
    let max = u64::MAX.to_string();
    let corpus = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(corpus.path().join("train")).unwrap();
    std::fs::write(
        corpus.path().join("train/a.txt"),
        "some text\n\n".repeat(50),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let tok_out = out.path().join("t");
    let tok_out = tok_out.to_str().unwrap();
    let refused: [(&[&str], &str); 4] = [
        (
            &[
                "bench",
                "decode",
                "--model",
                m,
                "--prompt-len",
                &max,
                "--runs",
                "1",
            ],
            "prompt-len",
        ),
        (
            &[
                "bench",
                "decode",
                "--model",
                m,
                "--new-tokens",
                &max,
                "--runs",
                "1",
            ],
            "new-tokens",
        ),
        (
            &[
                "bench",
                "spec",
                "--model",
                m,
                "--tree-sizes",
                &format!("1,{max}"),
                "--runs",
                "1",
            ],
            "largest tree",
        ),
        (
            &[
                "train",
                "tokenizer",
                "--corpus",
                corpus.path().to_str().unwrap(),
                "--vocab-size",
                &max,
                "--out",
                tok_out,
            ],
            "vocab-size",
        ),
    ];
    for (args, needle) in refused {
        let (ok, text) = confu(args);
        assert!(!ok && text.contains(needle), "{args:?}: {text}");
    }
    let (ok, text) = confu(&[
        "generate",
        "--model",
        m,
        "--prompt",
        "hi",
        "--max-new-tokens",
        &max,
        "--ignore-eos",
        "--json",
    ]);
    assert!(ok, "{text}");
    let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(v["stop_reason"], "position_limit", "{text}");
    println!("sizes: u64::MAX refused in 4 commands, saturated to the position limit in generate");
}
