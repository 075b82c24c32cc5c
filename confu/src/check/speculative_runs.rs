//! Whole speculative runs: greedy runs against the official EAGLE code's `eagenerate` and the
//! ConFu reference (output ids, accepted drafts per round, rounds, and for ConFu the node `f`
//! came from each round), and greedy speculative decoding against vanilla greedy on any prompts.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use burn::tensor::backend::Backend;
use confu_core::Ops;
use confu_draft::Eagle3Head;
use confu_model::TargetModel;

use super::CheckLine;
use crate::greedy_rule::check_greedy;
use crate::reference::{fixture_models, fixture_tree, read_tensors, RefTensor};
use crate::{ConfuHead, DraftMode, Engine, Generation, GenerationConfig};

type Tensors = HashMap<String, RefTensor>;

/// One line per `generate_*` case of an `eagle3/` fixture folder.
pub fn eagle3_runs<B: Backend>(
    dir: &Path,
    ops: Arc<dyn Ops<B>>,
    device: &B::Device,
) -> Vec<CheckLine> {
    let fixture = dir.file_name().unwrap_or_default().to_string_lossy();
    let loaded = (|| -> Result<_, String> {
        let (target_dir, draft_dir) = fixture_models(dir).map_err(|e| e.to_string())?;
        let target = TargetModel::<B>::load(&target_dir, ops, device).map_err(|e| e.to_string())?;
        let head = Eagle3Head::load(&draft_dir, &target).map_err(|e| e.to_string())?;
        Ok((target, Arc::new(head)))
    })();
    let (target, head) = match loaded {
        Ok(x) => x,
        Err(e) => return vec![CheckLine::fail(format!("eagle3/{fixture}"), e)],
    };
    let mut stems = stems(dir, "generate_");
    stems.sort();
    stems
        .into_iter()
        .map(|stem| {
            let name = format!("eagle3/{fixture} {stem} vs eagenerate");
            let run = || -> Result<CheckLine, String> {
                let (json, t) = case(dir, &stem)?;
                let tree = fixture_tree(&json["settings"])?;
                let mode = DraftMode::Eagle3 {
                    head: head.clone(),
                    tree,
                };
                let want = Expected::read(&t, "eagle_ids", "steps", None)?;
                let max_new = max_new_tokens(&json)?;
                Ok(want.compare(&name, &run_greedy(&target, mode, &want.prompt, max_new)?))
            };
            run().unwrap_or_else(|e| CheckLine::fail(name.clone(), e))
        })
        .collect()
}

/// The `greedy_generate` case of a `confu/` fixture folder (none when it has no such case).
pub fn confu_runs<B: Backend>(
    dir: &Path,
    ops: Arc<dyn Ops<B>>,
    device: &B::Device,
) -> Vec<CheckLine> {
    let fixture = dir.file_name().unwrap_or_default().to_string_lossy();
    let name = format!("confu/{fixture} greedy run vs reference");
    if !dir.join("greedy_generate.json").exists() {
        return Vec::new();
    }
    let run = || -> Result<CheckLine, String> {
        let (target_dir, draft_dir) = fixture_models(dir).map_err(|e| e.to_string())?;
        let target = TargetModel::<B>::load(&target_dir, ops, device).map_err(|e| e.to_string())?;
        let confu = ConfuHead::load(&draft_dir, &target).map_err(|e| e.to_string())?;
        let (json, t) = case(dir, "greedy_generate")?;
        let tree = fixture_tree(&json["settings"])?;
        let want = Expected::read(&t, "ids", "rounds", Some("q_nodes"))?;
        let max_new = max_new_tokens(&json)?;
        let mode = DraftMode::Confu { confu, tree };
        Ok(want.compare(&name, &run_greedy(&target, mode, &want.prompt, max_new)?))
    };
    vec![run().unwrap_or_else(|e| CheckLine::fail(name.clone(), e))]
}

/// Greedy speculative decoding with `mode` against vanilla greedy decoding, on every prompt:
/// equal outputs, or a divergence at a near tie ([`crate::greedy_rule`]).
pub fn greedy_equality<B: Backend>(
    name: &str,
    target: &TargetModel<B>,
    mode: DraftMode<B>,
    prompts: &[Vec<u32>],
    max_new_tokens: usize,
) -> CheckLine {
    let run = || -> Result<String, String> {
        let config = GenerationConfig {
            max_new_tokens,
            ..Default::default()
        };
        let vanilla = Engine::new(target.clone());
        let spec = Engine::with_mode(target.clone(), mode).map_err(|e| e.to_string())?;
        let (mut tokens, mut rounds, mut ties) = (0, 0, 0);
        for prompt in prompts {
            let want = vanilla
                .generate(prompt, &config, |_| {})
                .map_err(|e| e.to_string())?;
            let got = spec
                .generate(prompt, &config, |_| {})
                .map_err(|e| e.to_string())?;
            ties += usize::from(check_greedy(target, prompt, &want, &got)?.is_some());
            tokens += got.generated_ids.len();
            rounds += got.rounds.len();
        }
        let tau = tokens as f64 / rounds.max(1) as f64;
        let ties = match ties {
            0 => "identical".to_string(),
            n => format!("{n} near-tie divergences"),
        };
        Ok(format!(
            "{} prompts, {tokens} tokens, τ {tau:.2}, {ties}",
            prompts.len()
        ))
    };
    match run() {
        Ok(detail) => CheckLine::pass(name, detail),
        Err(e) => CheckLine::fail(name, e),
    }
}

/// What a reference run produced.
struct Expected {
    prompt: Vec<u32>,
    new_ids: Vec<u32>,
    accept_lengths: Vec<i64>,
    rounds: i64,
    future_nodes: Option<Vec<i64>>,
}

impl Expected {
    fn read(t: &Tensors, ids: &str, rounds: &str, nodes: Option<&str>) -> Result<Self, String> {
        let get = |n: &str| t.get(n).ok_or_else(|| format!("the case lacks `{n}`"));
        let prompt = get("prompt_ids")?.ids().map_err(|e| e.to_string())?;
        let all = get(ids)?.ids().map_err(|e| e.to_string())?;
        let new_ids = all
            .get(prompt.len()..)
            .ok_or("the reference ids are shorter than the prompt")?
            .to_vec();
        let rounds = *get(rounds)?
            .i64()
            .map_err(|e| e.to_string())?
            .first()
            .ok_or("empty round count")?;
        let future_nodes = match nodes {
            Some(n) => Some(get(n)?.i64().map_err(|e| e.to_string())?.to_vec()),
            None => None,
        };
        Ok(Self {
            prompt,
            new_ids,
            accept_lengths: get("accept_lengths")?
                .i64()
                .map_err(|e| e.to_string())?
                .to_vec(),
            rounds,
            future_nodes,
        })
    }

    fn compare(&self, name: &str, g: &Generation) -> CheckLine {
        let ids: Vec<u32> = g.rounds.iter().flat_map(|r| r.tokens.clone()).collect();
        let lens: Vec<i64> = g.rounds.iter().map(|r| r.accepted_drafts as i64).collect();
        let mut failures = Vec::new();
        if ids != self.new_ids {
            let first = ids.iter().zip(&self.new_ids).position(|(a, b)| a != b);
            failures.push(format!("output ids differ (first at {first:?})"));
        }
        if lens != self.accept_lengths || g.rounds.len() as i64 != self.rounds {
            failures.push(format!(
                "accepted drafts per round {lens:?}, reference {:?}",
                self.accept_lengths
            ));
        }
        if let Some(want) = &self.future_nodes {
            let got: Vec<i64> = g
                .rounds
                .iter()
                .map(|r| r.future_node.map_or(-1, |n| n as i64))
                .collect();
            if &got != want {
                failures.push(format!("f's node per round {got:?}, reference {want:?}"));
            }
        }
        let detail = format!(
            "{} rounds, {} tokens, τ {:.2}",
            g.rounds.len(),
            ids.len(),
            g.tau()
        );
        if failures.is_empty() {
            let also = if self.future_nodes.is_some() {
                ", f nodes"
            } else {
                ""
            };
            CheckLine::pass(name, format!("{detail}; ids, acceptance{also} equal"))
        } else {
            CheckLine::fail(name, format!("{detail}; {}", failures.join("; ")))
        }
    }
}

fn run_greedy<B: Backend>(
    target: &TargetModel<B>,
    mode: DraftMode<B>,
    prompt: &[u32],
    max_new_tokens: usize,
) -> Result<Generation, String> {
    let engine = Engine::with_mode(target.clone(), mode).map_err(|e| e.to_string())?;
    let config = GenerationConfig {
        max_new_tokens,
        ..Default::default()
    };
    engine
        .generate(prompt, &config, |_| {})
        .map_err(|e| e.to_string())
}

/// The reference stops once more than `max_new_tokens` were produced.
fn max_new_tokens(json: &serde_json::Value) -> Result<usize, String> {
    json["settings"]["max_new_tokens"]
        .as_u64()
        .map(|n| n as usize + 1)
        .ok_or_else(|| "settings.max_new_tokens is missing".into())
}

fn case(dir: &Path, stem: &str) -> Result<(serde_json::Value, Tensors), String> {
    let path = dir.join(format!("{stem}.json"));
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let tensors =
        read_tensors(&dir.join(format!("{stem}.safetensors"))).map_err(|e| e.to_string())?;
    Ok((json, tensors))
}

/// Names (without extension) of the `.safetensors` cases in `dir` that start with `prefix`.
fn stems(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| {
                    let n = e.ok()?.file_name().to_string_lossy().to_string();
                    let stem = n.strip_suffix(".safetensors")?;
                    stem.starts_with(prefix).then(|| stem.to_string())
                })
                .collect()
        })
        .unwrap_or_default()
}
