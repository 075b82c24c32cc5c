//! `confu check` through the real binary: every shipped reference check passes on the CPU, a
//! fixture that disagrees with its reference is a FAILED line and a failing exit, and bad
//! arguments are refused with the value named.

mod common;

use common::{confu, fixture_draft, fixture_model};

#[test]
fn every_shipped_check_passes_on_the_cpu() {
    let root = confu::reference::fixture_roots()[0].clone();
    let model = fixture_model();
    let draft = fixture_draft();
    let (ok, out) = confu(&[
        "check",
        "--fixtures",
        root.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--draft",
        draft.to_str().unwrap(),
        "--max-new-tokens",
        "24",
    ]);
    println!("{out}");
    assert!(ok, "{out}");
    for want in [
        "ok     parity hf/llama3-tiny:",
        "ok     parity hf/qwen3-tiny:",
        "ok     eagle3/llama3-tiny generate_",
        "ok     confu/llama3-tiny greedy run vs reference",
        "ok     greedy eagle3:draft == vanilla",
        "checks passed on cpu",
    ] {
        assert!(out.contains(want), "missing `{want}` in:\n{out}");
    }
    assert!(!out.contains("FAILED"), "{out}");
}

#[test]
fn a_disagreeing_fixture_fails_and_bad_roots_are_refused() {
    // A copy of the llama3-tiny fixture whose tolerance no float computation meets: the check
    // must measure, report the number and fail.
    let root = tempfile::tempdir().unwrap();
    let src = fixture_model();
    let dst = root.path().join("hf/strict");
    std::fs::create_dir_all(&dst).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dst.join(p.file_name().unwrap())).unwrap();
    }
    let meta_path = dst.join("meta.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    meta["tolerance"] = serde_json::json!({"logits_rel_l2": 1e-30, "hidden_rel_l2": 1e-30});
    std::fs::write(&meta_path, meta.to_string()).unwrap();
    let model = fixture_model();
    let args = |fixtures: &str| {
        vec![
            "check".to_string(),
            "--fixtures".into(),
            fixtures.into(),
            "--model".into(),
            model.to_str().unwrap().into(),
            "--vanilla".into(),
        ]
    };
    let run = |a: Vec<String>| confu(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let (ok, out) = run(args(root.path().to_str().unwrap()));
    assert!(!ok, "{out}");
    assert!(out.contains("FAILED parity hf/strict"), "{out}");
    assert!(
        out.contains("logits rel L2") && out.contains("> 1.0e-30"),
        "{out}"
    );
    assert!(out.contains("1 of 1 checks failed"), "{out}");

    let (ok, out) = run(args("/no/such/fixtures"));
    assert!(!ok && out.contains("/no/such/fixtures"), "{out}");
    let empty = tempfile::tempdir().unwrap();
    let (ok, out) = run(args(empty.path().to_str().unwrap()));
    assert!(!ok && out.contains("no fixture folders"), "{out}");
}
