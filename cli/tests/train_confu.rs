//! `confu train confu` and `confu train eagle3 --init` from the command line: a ConFu folder
//! comes out that `generate --draft` drafts with (and `--contemplate-nodes` adjusts), the dev
//! report shows the per-step agreement with and without `f`, and bad settings are refused before
//! any work, naming the field.

mod common;

use common::{confu, corpus, fixture_draft, fixture_model};

const CONFIG: &str = r#"{"train": {"seq_len": 16, "batch_size": 2, "steps": 2, "warmup_steps": 0,
    "checkpoint_every": 1, "dev_tokens": 64},
  "confu": {"ttt_steps": 2, "anchor_every": 4},
  "options": {"soft_prompt_len": 4, "n_expert": 2, "top_k_expert": 1}}"#;

#[test]
fn train_confu_writes_a_folder_that_generate_drafts_with() {
    let c = corpus();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("confu.json");
    std::fs::write(&config, CONFIG).unwrap();
    let (target, init) = (fixture_model(), fixture_draft());
    let out = work.path().join("confu");
    let args = |out: &std::path::Path, config: &std::path::Path| -> Vec<String> {
        [
            "train",
            "confu",
            "--target",
            target.to_str().unwrap(),
            "--init",
            init.to_str().unwrap(),
            "--corpus",
            c.path().to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let run = |a: &[String]| confu(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (ok, text) = run(&args(&out, &config));
    assert!(ok, "{text}");
    assert!(text.contains("f zeroed"), "{text}");
    for f in [
        "config.json",
        "model.safetensors",
        "confu.json",
        "confu.safetensors",
        "log.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("log.json")).unwrap()).unwrap();
    assert_eq!(
        log["dev"][0]["per_step_without_future"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    for nodes in ["all", "top:2"] {
        let (ok, text) = confu(&[
            "generate",
            "--model",
            target.to_str().unwrap(),
            "--draft",
            out.to_str().unwrap(),
            "--contemplate-nodes",
            nodes,
            // A fixed tree: `auto` (the default) may decode plainly, with no [con] rows.
            "--tree",
            "8,3,2",
            "--prompt",
            "the quick",
            "--max-new-tokens",
            "8",
            "--json",
        ]);
        assert!(ok, "{text}");
        let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        let rows: u64 = v["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["contemplate_rows"].as_u64().unwrap())
            .sum();
        assert!(rows > 0, "{nodes}: no [con] rows");
    }
    let (ok, text) = confu(&[
        "generate",
        "--model",
        target.to_str().unwrap(),
        "--draft",
        out.to_str().unwrap(),
        "--contemplate-nodes",
        "some",
        "--prompt",
        "x",
    ]);
    assert!(!ok && text.contains("some"), "{text}");

    // Bad settings: refused before any work, the field named, nothing written.
    let bad = [
        (r#"{"confu": {"replicaton": 2}}"#, "replicaton"),
        (r#"{"confu": {"replication": 0}}"#, "confu.replication"),
        (
            r#"{"confu": {"anchor_sampling": "sometimes"}}"#,
            "sometimes",
        ),
        (
            r#"{"confu": {"lr_scale": {"head": 0, "soft_prompt": 0, "contemplate": 0, "future": 0}}}"#,
            "confu.lr_scale",
        ),
        (
            r#"{"options": {"n_expert": 2, "top_k_expert": 3}}"#,
            "options.top_k_expert",
        ),
        (
            r#"{"options": {"root_contemplate": false}}"#,
            "root_contemplate",
        ),
    ];
    for (i, (text, field)) in bad.iter().enumerate() {
        let cfg = work.path().join(format!("bad{i}.json"));
        std::fs::write(&cfg, text).unwrap();
        let o = work.path().join(format!("bad-out{i}"));
        let (ok, msg) = run(&args(&o, &cfg));
        assert!(!ok && msg.contains(field), "{text}: {msg}");
        assert!(!o.exists(), "{text}: wrote {}", o.display());
    }
    // An --init that is not an EAGLE-3 head is named, before anything is written.
    let bad_out = work.path().join("bad-init");
    let mut a = args(&bad_out, &config);
    let i = a.iter().position(|x| x == "--init").unwrap();
    a[i + 1] = target.to_str().unwrap().to_string();
    let (ok, msg) = run(&a);
    assert!(
        !ok && msg.contains("llama3-tiny") && msg.contains("d2t"),
        "{msg}"
    );
    assert!(!bad_out.exists());
    // A rerun would replace the run: refused without --resume or --force.
    let (ok, msg) = run(&args(&out, &config));
    assert!(!ok && msg.contains("--resume"), "{msg}");

    // train eagle3 --init continues the fixture head.
    let cfg = work.path().join("e.json");
    std::fs::write(
        &cfg,
        r#"{"train": {"seq_len": 16, "batch_size": 2, "steps": 1, "warmup_steps": 0,
             "checkpoint_every": 1, "dev_tokens": 64}, "eagle3": {"ttt_steps": 2}}"#,
    )
    .unwrap();
    let more = work.path().join("more");
    let (ok, text) = confu(&[
        "train",
        "eagle3",
        "--target",
        target.to_str().unwrap(),
        "--init",
        init.to_str().unwrap(),
        "--seed",
        "7",
        "--corpus",
        c.path().to_str().unwrap(),
        "--out",
        more.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
    let json = |d: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap()
    };
    let (a, b) = (json(&more), json(&init));
    for key in [
        "hidden_size",
        "intermediate_size",
        "num_attention_heads",
        "num_key_value_heads",
        "vocab_size",
        "draft_vocab_size",
    ] {
        assert_eq!(a[key], b[key], "a continued head keeps its {key}");
    }
}
