//! Parity with Hugging Face transformers on one `hf/` fixture folder: logits, every
//! `layer_input.{i}`, `final_norm`, the tokenizer cases and greedy generation through the
//! KV-cache decode loop.

use std::path::Path;
use std::sync::Arc;

use burn::tensor::backend::Backend;
use confu_core::{Ops, ToHost};
use confu_model::{LogitRows, Tap, TargetModel, Tokenizer};

use super::CheckLine;
use crate::reference::{read_tensors, rel_l2};
use crate::{Engine, GenerationConfig};

/// Check the target in `dir` against its `reference.safetensors` and `meta.json` (tolerances
/// `tolerance.logits_rel_l2` and `tolerance.hidden_rel_l2`, default 1e-4).
pub fn hf_parity<B: Backend>(dir: &Path, ops: Arc<dyn Ops<B>>, device: &B::Device) -> CheckLine {
    let name = format!(
        "parity hf/{}",
        dir.file_name().unwrap_or_default().to_string_lossy()
    );
    match measure(dir, ops, device) {
        Ok((detail, failures)) if failures.is_empty() => CheckLine::pass(name, detail),
        Ok((detail, failures)) => {
            CheckLine::fail(name, format!("{detail}; {}", failures.join("; ")))
        }
        Err(e) => CheckLine::fail(name, e),
    }
}

/// What was measured, and what failed.
fn measure<B: Backend>(
    dir: &Path,
    ops: Arc<dyn Ops<B>>,
    device: &B::Device,
) -> Result<(String, Vec<String>), String> {
    let meta_path = dir.join("meta.json");
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&meta_path)
            .map_err(|e| format!("{}: {e}", meta_path.display()))?,
    )
    .map_err(|e| format!("{}: {e}", meta_path.display()))?;
    let tol = |key: &str| {
        meta["tolerance"][key]
            .as_f64()
            .or(meta["tolerance"]["logits_rel_l2"].as_f64())
            .unwrap_or(1e-4)
    };
    let model = TargetModel::<B>::load(dir, ops, device).map_err(|e| e.to_string())?;
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
    let mut failures = Vec::new();
    let mut worst = [0.0f64; 2];
    let mut compare = |label: &str, ours: Vec<f32>, which: usize, tol: f64| -> Result<(), String> {
        let theirs = get(label)?.f32().map_err(|e| e.to_string())?;
        if ours.len() != theirs.len() {
            return Err(format!(
                "{label}: {} values, reference has {}",
                ours.len(),
                theirs.len()
            ));
        }
        let r = rel_l2(&ours, theirs);
        worst[which] = worst[which].max(if r.is_nan() { f64::INFINITY } else { r });
        if r.is_nan() || r > tol {
            failures.push(format!("{label} rel L2 {r:.3e} > {tol:.1e}"));
        }
        Ok(())
    };
    let logits = out.logits.ok_or("the forward returned no logits")?;
    compare("logits", logits.to_host(), 0, tol("logits_rel_l2"))?;
    let hidden_tol = tol("hidden_rel_l2");
    let mut tapped = out.taps.into_iter();
    for i in 0..layers {
        let t = tapped.next().ok_or("missing tap")?;
        compare(&format!("layer_input.{i}"), t.to_host(), 1, hidden_tol)?;
    }
    let t = tapped.next().ok_or("missing tap")?;
    compare("final_norm", t.to_host(), 1, hidden_tol)?;

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
            .map(|v| {
                v.as_u64()
                    .map(|v| v as u32)
                    .ok_or("a tokenizer id is not a number")
            })
            .collect::<Result<_, _>>()?;
        let got = tokenizer.encode(text).map_err(|e| e.to_string())?;
        if got != want {
            failures.push(format!("tokenizer on {text:?}: got {got:?}, want {want:?}"));
        }
    }

    // Greedy generation through the decode loop.
    let prompt = get("greedy_prompt_ids")?.ids().map_err(|e| e.to_string())?;
    let want = get("greedy_ids")?.ids().map_err(|e| e.to_string())?;
    let config = GenerationConfig {
        max_new_tokens: want.len().saturating_sub(prompt.len()),
        ..Default::default()
    };
    let g = Engine::new(model)
        .generate(&prompt, &config, |_| {})
        .map_err(|e| e.to_string())?;
    let got: Vec<u32> = prompt.iter().chain(&g.generated_ids).copied().collect();
    if got != want {
        let first = got.iter().zip(&want).position(|(a, b)| a != b);
        failures.push(format!("greedy ids differ (first at {first:?})"));
    }
    let detail = format!(
        "logits rel L2 {:.1e}, hidden states ≤ {:.1e} ({} layers + final norm), tokenizer {} cases, greedy {} tokens",
        worst[0],
        worst[1],
        layers,
        cases.len(),
        g.generated_ids.len()
    );
    Ok((detail, failures))
}
