//! `confu train lm` killed with SIGKILL at many moments (while tokenizing, mid-step, mid-save)
//! and resumed each time ends with exactly the loss curve of an uninterrupted run.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

fn confu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_confu"))
}

fn losses(out: &Path) -> Vec<(u64, f64)> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("log.json")).unwrap()).unwrap();
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s[0].as_u64().unwrap(), s[1].as_f64().unwrap()))
        .collect()
}

#[test]
fn killed_runs_resume_to_the_uninterrupted_curve() {
    let work = tempfile::tempdir().unwrap();
    let corpus = work.path().join("corpus");
    std::fs::create_dir_all(corpus.join("train")).unwrap();
    let text: String = (0..400)
        .map(|i| format!("line {} of the corpus, word {}\n\n", i, i * 7 % 13))
        .collect();
    std::fs::write(corpus.join("train/a.txt"), text).unwrap();
    let tok = work.path().join("tok");
    let ok = confu()
        .args([
            "train",
            "tokenizer",
            "--corpus",
            corpus.to_str().unwrap(),
            "--vocab-size",
            "300",
            "--out",
            tok.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let config = work.path().join("lm.json");
    std::fs::write(
        &config,
        r#"{"model": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64},
            "train": {"seq_len": 16, "batch_size": 2, "steps": 300, "warmup_steps": 2,
                      "checkpoint_every": 1, "dev_tokens": 64}}"#,
    )
    .unwrap();
    let args = |out: &Path| {
        vec![
            "train".to_string(),
            "lm".into(),
            "--corpus".into(),
            corpus.to_str().unwrap().into(),
            "--tokenizer".into(),
            tok.to_str().unwrap().into(),
            "--config".into(),
            config.to_str().unwrap().into(),
            "--out".into(),
            out.to_str().unwrap().into(),
        ]
    };
    let full = work.path().join("full");
    let r = confu().args(args(&full)).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));

    let out = work.path().join("killed");
    let mut kills = 0;
    for delay_ms in [30u64, 55, 80, 105, 130, 155, 180, 205, 230, 255, 280, 305] {
        let resume = ["checkpoint", "checkpoint.old", "checkpoint.tmp"]
            .iter()
            .any(|c| out.join(c).exists());
        let mut cmd = confu();
        cmd.args(args(&out))
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if resume {
            cmd.arg("--resume");
        }
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        let r = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!err.contains("panicked"), "{err}");
        if out.join("log.json").exists() && r.status.success() {
            break;
        }
    }
    // Finish the run.
    for _ in 0..3 {
        if out.join("log.json").exists() {
            break;
        }
        let resume = out.join("checkpoint").exists()
            || out.join("checkpoint.old").exists()
            || out.join("checkpoint.tmp").exists();
        let mut cmd = confu();
        cmd.args(args(&out));
        if resume {
            cmd.arg("--resume");
        }
        let r = cmd.output().unwrap();
        assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    }
    assert_eq!(
        losses(&out),
        losses(&full),
        "the resumed curve differs from the uninterrupted one"
    );
    println!("kill -9: {kills} kills at different moments, resumed each time, same 300-step curve");
}
