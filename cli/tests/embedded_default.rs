//! The embedded default model through the real binary: `confu generate --prompt` with no
//! `--model` drafts with the embedded ConFu head, its greedy output equals `--vanilla`, the
//! model is written to the cache once and reused, and `confu eval` runs with no `--model` /
//! `--draft`, comparing the embedded EAGLE-3 and ConFu heads with vanilla.

use std::path::Path;
use std::process::Command;

fn confu(cache: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_confu"))
        .args(args)
        .env("CONFU_CACHE_DIR", cache)
        .output()
        .expect("run confu");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "confu {args:?} failed:\n{stdout}\n{stderr}"
    );
    (stdout, stderr)
}

fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).expect("one JSON object")
}

#[test]
fn embedded_model_drafts_losslessly_and_evaluates() {
    let cache = tempfile::tempdir().unwrap();
    let prompt = "pub fn len(&self) -> usize {";
    let base = [
        "generate",
        "--prompt",
        prompt,
        "--max-new-tokens",
        "40",
        "--json",
    ];
    // The README's main command: a fixed tree, so that ConFu drafts whatever this device's costs
    // (the default, `auto`, may decode plainly).
    let readme: Vec<&str> = base.iter().copied().chain(["--tree", "30,4,8"]).collect();
    let spec = json(&confu(cache.path(), &readme).0);
    let rounds = spec["rounds"].as_array().expect("rounds").len();
    let generated = spec["generated_ids"].as_array().expect("ids").len();
    let tau = spec["tau"].as_f64().expect("tau");
    assert_eq!(
        spec["drafter"], "confu:confu",
        "the embedded default drafts with ConFu"
    );
    println!("embedded: {generated} tokens in {rounds} rounds, tau {tau:.2}");
    assert!(generated > 0 && rounds > 0);
    assert!(
        rounds < generated,
        "the embedded head never had a draft accepted ({rounds} rounds for {generated} tokens)"
    );

    let mut vanilla_args = base.to_vec();
    vanilla_args.push("--vanilla");
    let vanilla = json(&confu(cache.path(), &vanilla_args).0);
    assert_eq!(
        spec["generated_ids"], vanilla["generated_ids"],
        "speculative greedy output differs from vanilla"
    );
    assert!(vanilla["rounds"].as_array().unwrap().len() >= generated - 1);

    // Without --tree, generate picks each round's tree, down to none (`auto`), losslessly.
    let auto = json(&confu(cache.path(), &base).0);
    let auto_rounds = auto["rounds"].as_array().expect("rounds");
    assert!(
        !auto_rounds.is_empty() && auto_rounds.iter().all(|r| r["auto"].is_object()),
        "generate's default tree is auto: {auto_rounds:?}"
    );
    assert_eq!(
        auto["generated_ids"], vanilla["generated_ids"],
        "auto output differs from vanilla"
    );

    // Written once: one model folder, and no temporary folder left behind.
    let entries: Vec<String> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].starts_with("testbed-") && !entries[0].contains(".tmp"));

    let prompts = cache.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        concat!(
            r#"{"question_id": 1, "category": "rust", "turns": ["fn main() {\n    let v = vec![1, 2, 3];\n"]}"#,
            "\n",
            r#"{"question_id": 2, "category": "prose", "turns": ["The borrow checker"]}"#,
            "\n"
        ),
    )
    .unwrap();
    let (table, _) = confu(
        cache.path(),
        &[
            "eval",
            "--prompts",
            prompts.to_str().unwrap(),
            "--max-new-tokens",
            "24",
        ],
    );
    println!("{table}");
    assert!(table.contains("rust") && table.contains("prose"), "{table}");
    assert!(
        !table.contains(" NO"),
        "greedy speculative output differed from vanilla:\n{table}"
    );

    // No arguments at all: the embedded prompts, the EAGLE-3 head and the ConFu head.
    let (table, _) = confu(
        cache.path(),
        &["eval", "--limit", "8", "--max-new-tokens", "16"],
    );
    println!("{table}");
    assert!(
        table.contains("eagle3:draft") && table.contains("confu:confu"),
        "eval with no arguments compares the embedded EAGLE-3 and ConFu heads:\n{table}"
    );
    assert!(
        !table.contains(" NO"),
        "greedy speculative output differed from vanilla:\n{table}"
    );
}
