//! Outputs never overwrite what is there (issue "nothing a user types loses data", class 1): an
//! output that is also an input, a folder `confu train` did not write, an earlier run without
//! `--resume`/`--force`, and report paths that are links, FIFOs, folders, inputs or in missing
//! folders are all refused before any work, leaving everything as it was.

use std::path::Path;
use std::process::Command;

mod common;

use common::confu;

/// Every file below `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn training_outputs_never_replace_inputs_or_foreign_or_earlier_runs() {
    let c = common::corpus();
    let cp = c.path().to_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let tok = work.path().join("tok");
    let t = tok.to_str().unwrap();
    let tokenizer = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "tokenizer",
            "--corpus",
            cp,
            "--vocab-size",
            "300",
            "--out",
            t,
        ];
        args.extend(extra);
        confu(&args)
    };
    // A folder that is not ours.
    std::fs::create_dir_all(&tok).unwrap();
    std::fs::write(tok.join("notes.txt"), "mine").unwrap();
    let (ok, text) = tokenizer(&[]);
    assert!(
        !ok && text.contains("not written by `confu train`"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(tok.join("notes.txt")).unwrap(),
        "mine"
    );
    std::fs::remove_file(tok.join("notes.txt")).unwrap();
    // A fresh run, then a rerun that would replace it.
    assert!(tokenizer(&[]).0);
    let before = snapshot(&tok);
    let (ok, text) = tokenizer(&[]);
    assert!(!ok && text.contains("--force"), "{text}");
    assert_eq!(snapshot(&tok), before);
    assert!(
        tokenizer(&["--force"]).0,
        "--force replaces our own earlier output"
    );

    // An EAGLE-3 head written over its own target.
    let target = confu::reference::fixture_roots()[0].join("hf/llama3-tiny");
    let scratch = work.path().join("target");
    std::fs::create_dir_all(&scratch).unwrap();
    for e in std::fs::read_dir(&target).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, scratch.join(p.file_name().unwrap())).unwrap();
    }
    let before = snapshot(&scratch);
    let s = scratch.to_str().unwrap();
    let (ok, text) = confu(&["train", "eagle3", "--target", s, "--corpus", cp, "--out", s]);
    assert!(!ok && text.contains("also an input"), "{text}");
    assert_eq!(snapshot(&scratch), before, "the target was modified");
    // `train lm` into a foreign folder (the target's).
    let config = work.path().join("lm.json");
    std::fs::write(
        &config,
        r#"{"model": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64},
            "train": {"seq_len": 16, "batch_size": 1, "steps": 1, "warmup_steps": 0}}"#,
    )
    .unwrap();
    let (ok, text) = confu(&[
        "train",
        "lm",
        "--corpus",
        cp,
        "--tokenizer",
        t,
        "--config",
        config.to_str().unwrap(),
        "--out",
        s,
    ]);
    assert!(
        !ok && text.contains("not written by `confu train`"),
        "{text}"
    );
    assert_eq!(snapshot(&scratch), before, "the target was modified");
}

#[test]
fn eval_report_paths_are_checked_before_the_work() {
    let model = confu::reference::fixture_roots()[0].join("hf/llama3-tiny");
    let m = model.to_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let prompts = work.path().join("q.jsonl");
    std::fs::write(
        &prompts,
        "{\"question_id\": 1, \"category\": \"a\", \"turns\": [\"hi\"]}\n",
    )
    .unwrap();
    let p = prompts.to_str().unwrap();
    let real = work.path().join("real.json");
    std::fs::write(&real, "keep").unwrap();
    let mut bad: Vec<(String, &str)> = vec![
        (p.to_string(), "input"),
        (
            work.path().to_str().unwrap().to_string(),
            "not a regular file",
        ),
        (
            work.path()
                .join("missing/x.json")
                .to_str()
                .unwrap()
                .to_string(),
            "does not exist",
        ),
    ];
    #[cfg(unix)]
    {
        let link = work.path().join("link.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        bad.push((link.to_str().unwrap().to_string(), "not a regular file"));
        let fifo = work.path().join("fifo");
        if Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success())
        {
            bad.push((fifo.to_str().unwrap().to_string(), "not a regular file"));
        }
    }
    let mut refused = 0;
    for (path, needle) in &bad {
        for flag in ["--json", "--plot"] {
            let (ok, text) = confu(&[
                "eval",
                "--model",
                m,
                "--prompts",
                p,
                "--draft-kind",
                "lookup",
                "--max-new-tokens",
                "2",
                flag,
                path,
            ]);
            assert!(!ok && text.contains(needle), "{flag} {path}: {text}");
            assert!(
                !text.contains("tau"),
                "{flag} {path}: the evaluation ran before the check"
            );
            refused += 1;
        }
    }
    assert_eq!(
        std::fs::read_to_string(&prompts).unwrap().lines().count(),
        1
    );
    assert_eq!(std::fs::read_to_string(&real).unwrap(), "keep");
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A good path still works, and replaces our own earlier report.
    let out = work.path().join("r.json");
    for _ in 0..2 {
        let (ok, text) = confu(&[
            "eval",
            "--model",
            m,
            "--prompts",
            p,
            "--draft-kind",
            "lookup",
            "--max-new-tokens",
            "2",
            "--json",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "{text}");
    }
    println!(
        "outputs: {refused} bad report paths refused before the work; inputs and links untouched"
    );
}

#[test]
fn self_distillation_trains_into_a_fresh_out_folder() {
    let c = common::corpus();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("sd.json");
    std::fs::write(
        &config,
        r#"{"train": {"seq_len": 16, "batch_size": 2, "steps": 2, "warmup_steps": 0,
                      "checkpoint_every": 1, "dev_tokens": 32},
            "eagle3": {"ttt_steps": 2, "draft_vocab_size": 64},
            "self_distill": {"sequences": 4, "prompt_tokens": 4, "temperature": 0.0}}"#,
    )
    .unwrap();
    let target = confu::reference::fixture_roots()[0].join("hf/llama3-tiny");
    let out = work.path().join("fresh/draft");
    let args = [
        "train",
        "eagle3",
        "--target",
        target.to_str().unwrap(),
        "--corpus",
        c.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    let (ok, text) = confu(&args);
    assert!(ok, "{text}");
    assert!(
        out.join("self_distill.safetensors").is_file() && out.join("model.safetensors").is_file()
    );
    // A rerun would replace the head and its cache: refused without --resume or --force.
    let (ok, text) = confu(&args);
    assert!(!ok && text.contains("--resume"), "{text}");
}
