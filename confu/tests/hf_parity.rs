//! Parity with Hugging Face transformers on every fixture under `hf/` of every fixture root:
//! logits, every `layer_input.{i}`, `final_norm`, the tokenizer cases and greedy generation through
//! the KV-cache decode loop. A folder that cannot be loaded fails the test.

use std::path::Path;

use backend_cpu::Cpu;
use confu::reference::{fixture_dirs, read_tensors, rel_l2};
use confu::{Engine, GenerationConfig};
use confu_model::{LogitRows, Tap, TargetModel, Tokenizer};

fn host(t: burn::tensor::Tensor<Cpu, 2>) -> Vec<f32> {
    t.into_data().to_vec().unwrap()
}

fn check_fixture(dir: &Path) -> Result<String, String> {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("meta.json")).map_err(|e| format!("meta.json: {e}"))?,
    )
    .map_err(|e| format!("meta.json: {e}"))?;
    let tol = |key: &str| {
        meta["tolerance"][key]
            .as_f64()
            .or(meta["tolerance"]["logits_rel_l2"].as_f64())
            .unwrap_or(1e-4)
    };
    let device = Default::default();
    let model =
        TargetModel::<Cpu>::load(dir, backend_cpu::ops(), &device).map_err(|e| e.to_string())?;
    let reference = read_tensors(&dir.join("reference.safetensors")).map_err(|e| e.to_string())?;
    let get = |n: &str| {
        reference
            .get(n)
            .ok_or_else(|| format!("reference.safetensors lacks `{n}`"))
    };

    // One forward over the whole reference sequence, tapping every layer input and the final norm.
    let ids = get("input_ids")?.ids().map_err(|e| e.to_string())?;
    let layers = model.config().num_hidden_layers;
    let mut taps: Vec<Tap> = (0..layers).map(Tap::LayerInput).collect();
    taps.push(Tap::FinalNorm);
    let mut cache = model.new_cache(0, ids.len());
    let out = model
        .forward_causal(&mut cache, &ids, LogitRows::All, &taps)
        .map_err(|e| e.to_string())?;
    let mut line = format!("parity {name}:");
    let mut failures = Vec::new();
    let mut compare = |label: String, ours: Vec<f32>, key: &str, tol: f64| -> Result<(), String> {
        let theirs = get(&label)?.f32().map_err(|e| e.to_string())?;
        if ours.len() != theirs.len() {
            return Err(format!(
                "{label}: {} values, reference has {}",
                ours.len(),
                theirs.len()
            ));
        }
        let r = rel_l2(&ours, theirs);
        line.push_str(&format!(" {label} rel_l2={r:.2e}"));
        if r.is_nan() || r > tol {
            failures.push(format!("{label} rel_l2 {r:.3e} > {tol:.1e} ({key})"));
        }
        Ok(())
    };
    compare(
        "logits".into(),
        host(out.logits.unwrap()),
        "logits_rel_l2",
        tol("logits_rel_l2"),
    )?;
    let mut tapped = out.taps.into_iter();
    for i in 0..layers {
        let t = tapped.next().unwrap();
        if reference.contains_key(&format!("layer_input.{i}")) {
            compare(
                format!("layer_input.{i}"),
                host(t),
                "hidden_rel_l2",
                tol("hidden_rel_l2"),
            )?;
        } else {
            return Err(format!("reference.safetensors lacks `layer_input.{i}`"));
        }
    }
    compare(
        "final_norm".into(),
        host(tapped.next().unwrap()),
        "hidden_rel_l2",
        tol("hidden_rel_l2"),
    )?;

    // Tokenizer cases.
    let tokenizer = Tokenizer::from_dir(dir).map_err(|e| e.to_string())?;
    let cases = meta["tokenizer_cases"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for case in &cases {
        let text = case["text"].as_str().ok_or("tokenizer case without text")?;
        let want: Vec<u32> = case["ids"]
            .as_array()
            .ok_or("tokenizer case without ids")?
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let got = tokenizer.encode(text).map_err(|e| e.to_string())?;
        if got != want {
            failures.push(format!("tokenizer on {text:?}: got {got:?}, want {want:?}"));
        }
    }
    line.push_str(&format!(" tokenizer {}/{} cases", cases.len(), cases.len()));

    // Greedy generation through the decode loop.
    let prompt = get("greedy_prompt_ids")?.ids().map_err(|e| e.to_string())?;
    let want = get("greedy_ids")?.ids().map_err(|e| e.to_string())?;
    let engine = Engine::new(model);
    let config = GenerationConfig {
        max_new_tokens: want.len() - prompt.len(),
        ..Default::default()
    };
    let g = engine
        .generate(&prompt, &config, |_| {})
        .map_err(|e| e.to_string())?;
    let got: Vec<u32> = prompt.iter().chain(&g.generated_ids).copied().collect();
    if got != want {
        let first = got.iter().zip(&want).position(|(a, b)| a != b);
        failures.push(format!(
            "greedy ids differ (first at {first:?}): got {got:?}, want {want:?}"
        ));
    }
    line.push_str(&format!(" greedy {} tokens", g.generated_ids.len()));

    if failures.is_empty() {
        Ok(format!("{line} ... ok"))
    } else {
        Err(format!("{line} ... FAILED\n  {}", failures.join("\n  ")))
    }
}

#[test]
fn every_hf_fixture_matches_transformers() {
    let dirs = fixture_dirs("hf");
    assert!(
        !dirs.is_empty(),
        "no fixture folders found under hf/ of {:?}",
        confu::reference::fixture_roots()
    );
    let mut failed = Vec::new();
    for dir in &dirs {
        match check_fixture(dir) {
            Ok(line) => println!("{line}"),
            Err(msg) => {
                println!("parity {}: {msg}", dir.display());
                failed.push(dir.display().to_string());
            }
        }
    }
    assert!(failed.is_empty(), "fixtures failing parity: {failed:?}");
}
