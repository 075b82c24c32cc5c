//! The embedded model's greedy output is pinned: `data/greedy_ids.json` holds the ids that the
//! binary *before* models became shared burn modules (commit f6048c7) generated for 20 fixed
//! prompts (`--vanilla`, 32 new tokens). Today's binary must give the same ids, vanilla, with the
//! embedded ConFu head (the default) and with the embedded EAGLE-3 head, so any change to the model
//! code that moves a greedy token shows.

use std::process::Command;

fn generate(cache: &std::path::Path, prompt: &str, extra: &[&str]) -> Vec<u64> {
    let out = Command::new(env!("CARGO_BIN_EXE_confu"))
        .args([
            "generate",
            &format!("--prompt={prompt}"),
            "--max-new-tokens",
            "32",
            "--json",
        ])
        .args(extra)
        .env("CONFU_CACHE_DIR", cache)
        .output()
        .expect("run confu");
    assert!(
        out.status.success(),
        "confu generate failed for {prompt:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    v["generated_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id"))
        .collect()
}

#[test]
fn embedded_greedy_ids_are_unchanged_on_20_prompts() {
    let recorded: serde_json::Value =
        serde_json::from_str(include_str!("data/greedy_ids.json")).expect("recorded ids");
    let recorded = recorded.as_array().expect("a list");
    assert!(recorded.len() >= 20);
    let cache = tempfile::tempdir().unwrap();
    let mut same = 0;
    for r in recorded {
        let prompt = r["prompt"].as_str().expect("prompt");
        let want: Vec<u64> = r["generated_ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|x| x.as_u64().expect("id"))
            .collect();
        let vanilla = generate(cache.path(), prompt, &["--vanilla"]);
        assert_eq!(vanilla, want, "vanilla greedy ids changed for {prompt:?}");
        let confu = generate(cache.path(), prompt, &[]);
        assert_eq!(confu, want, "ConFu greedy ids differ for {prompt:?}");
        let eagle3 = generate(cache.path(), prompt, &["--draft-kind", "eagle3"]);
        assert_eq!(eagle3, want, "EAGLE-3 greedy ids differ for {prompt:?}");
        same += 1;
    }
    println!(
        "greedy ids: {same}/{} prompts identical to the recorded ones (vanilla, ConFu and EAGLE-3)",
        recorded.len()
    );
}
