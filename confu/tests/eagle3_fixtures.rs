//! EAGLE-3 against the official EAGLE code, on every fixture folder under `eagle3/` of every
//! fixture root: draft forward, dynamic trees (from the recorded top-k inputs, and from our own
//! forward), `evaluate_posterior`, and whole greedy `eagenerate` runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use backend_cpu::Cpu;
use burn::tensor::{Tensor, TensorData};
use confu::reference::{fixture_folders, fixture_models, read_tensors, rel_l2, RefTensor};
use confu_core::DraftTree;
use confu_draft::{build_tree, Eagle3Drafter, Eagle3Head, TreeSettings};
use confu_model::feature_layers;
use confu_model::{LogitRows, Tap, TargetModel};
use confu_verify::evaluate_posterior;

struct Fixture {
    dir: PathBuf,
    name: String,
    target: TargetModel<Cpu>,
    head: Arc<Eagle3Head<Cpu>>,
}

fn fixtures() -> Vec<Fixture> {
    let dirs = fixture_folders("eagle3");
    assert!(!dirs.is_empty(), "no eagle3 fixtures found");
    dirs.into_iter()
        .map(|dir| {
            let (target_dir, draft_dir) = fixture_models(&dir).unwrap();
            let target =
                TargetModel::<Cpu>::load(&target_dir, backend_cpu::ops(), &Default::default())
                    .unwrap_or_else(|e| panic!("{}: {e}", target_dir.display()));
            let head = Arc::new(
                Eagle3Head::load(&draft_dir, &target)
                    .unwrap_or_else(|e| panic!("{}: {e}", draft_dir.display())),
            );
            Fixture {
                name: dir.file_name().unwrap().to_string_lossy().to_string(),
                dir,
                target,
                head,
            }
        })
        .collect()
}

/// Files of a fixture folder whose name starts with `prefix`, without extension.
fn files(dir: &Path, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.ok()?.file_name().to_string_lossy().to_string();
            (n.starts_with(prefix) && n.ends_with(".safetensors"))
                .then(|| n.trim_end_matches(".safetensors").to_string())
        })
        .collect();
    v.sort();
    v
}

fn settings(dir: &Path, stem: &str) -> (serde_json::Value, HashMap<String, RefTensor>) {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{stem}.json"))).unwrap())
            .unwrap();
    (
        json,
        read_tensors(&dir.join(format!("{stem}.safetensors"))).unwrap(),
    )
}

fn tree_settings(json: &serde_json::Value) -> TreeSettings {
    confu::reference::fixture_tree(&json["settings"]).unwrap()
}

fn tensor2(t: &RefTensor) -> Tensor<Cpu, 2> {
    let s = t.shape();
    let (rows, cols) = (s[s.len() - 2], s[s.len() - 1]);
    Tensor::from_data(
        TensorData::new(t.f32().unwrap().to_vec(), [rows, cols]),
        &Default::default(),
    )
}

fn host(t: Tensor<Cpu, 2>) -> Vec<f32> {
    t.into_data().to_vec().unwrap()
}

fn taps_of(f: &Fixture) -> Vec<Tap> {
    feature_layers(f.target.config().num_hidden_layers)
        .map(Tap::LayerInput)
        .to_vec()
}

/// Tree outputs in the official encoding: parent per node via `tree_mask`, depths, paths.
fn check_tree(label: &str, ours: &DraftTree, t: &HashMap<String, RefTensor>, prefix: &str) {
    let want_tokens = t[&format!("{prefix}draft_tokens")].ids().unwrap();
    assert_eq!(ours.tokens, want_tokens, "{label}: draft tokens");
    let depths: Vec<usize> = t[&format!("{prefix}tree_position_ids")]
        .i64()
        .unwrap()
        .iter()
        .map(|&d| d as usize)
        .collect();
    assert_eq!(ours.depths, depths, "{label}: depths");
    let n = ours.len();
    let mask = t[&format!("{prefix}tree_mask")].f32().unwrap();
    for i in 0..n {
        let mut anc = vec![false; n];
        anc[i] = true;
        anc[0] = true;
        let mut p = ours.parents[i];
        while let Some(q) = p {
            anc[q] = true;
            p = ours.parents[q];
        }
        let row: Vec<bool> = mask[i * n..(i + 1) * n].iter().map(|&m| m == 1.0).collect();
        assert_eq!(row, anc, "{label}: tree_mask row {i}");
    }
    let ri = &t[&format!("{prefix}retrieve_indices")];
    let width = ri.shape()[1];
    let want_paths: Vec<Vec<usize>> = ri
        .i64()
        .unwrap()
        .chunks(width)
        .map(|r| r.iter().filter(|&&x| x >= 0).map(|&x| x as usize).collect())
        .collect();
    assert_eq!(ours.paths(), want_paths, "{label}: retrieve_indices");
}

#[test]
fn draft_forward_matches_official() {
    for f in fixtures() {
        let (_, t) = settings(&f.dir, "draft_forward");
        let ids = t["input_ids"].ids().unwrap();
        let mut cache = f.target.new_cache(0, ids.len());
        let out = f
            .target
            .forward_causal(&mut cache, &ids, LogitRows::None, &taps_of(&f))
            .unwrap();
        let taps = Tensor::cat(out.taps, 1);
        let r_taps = rel_l2(&host(taps.clone()), t["target_taps"].f32().unwrap());
        // The head on our taps, and on the official taps (isolating the head's own numerics).
        let draft_ids = t["draft_input_ids"].ids().unwrap();
        let positions: Vec<usize> = (0..ids.len()).collect();
        let vis = confu_core::Visibility::causal(0, 0, ids.len());
        let ops = backend_cpu::ops();
        let mut dc = f.head.new_cache(backend_cpu::ops(), ids.len());
        let ours = f
            .head
            .forward(ops.as_ref(), &mut dc, taps, &draft_ids, &positions, &vis)
            .unwrap();
        let r_logits = rel_l2(&host(ours.logits), t["draft_logits"].f32().unwrap());
        let r_hidden = rel_l2(&host(ours.hidden), t["out_hidden"].f32().unwrap());
        let mut dc = f.head.new_cache(backend_cpu::ops(), ids.len());
        let theirs_in = f
            .head
            .forward(
                ops.as_ref(),
                &mut dc,
                tensor2(&t["target_taps"]),
                &draft_ids,
                &positions,
                &vis,
            )
            .unwrap();
        let r_fc = rel_l2(
            &host(f.head.fuse(ops.as_ref(), tensor2(&t["target_taps"]))),
            t["fc_out"].f32().unwrap(),
        );
        let r_logits2 = rel_l2(&host(theirs_in.logits), t["draft_logits"].f32().unwrap());
        println!(
            "eagle3 {}: draft_forward taps rel_l2={r_taps:.2e} fc_out={r_fc:.2e} out_hidden={r_hidden:.2e} draft_logits={r_logits:.2e} (on official taps {r_logits2:.2e}) ok",
            f.name
        );
        for (what, r) in [
            ("taps", r_taps),
            ("fc_out", r_fc),
            ("out_hidden", r_hidden),
            ("draft_logits", r_logits),
            ("draft_logits on official taps", r_logits2),
        ] {
            assert!(r <= 1e-4, "{}: {what} rel_l2 {r:.3e}", f.name);
        }
    }
}

#[test]
fn trees_from_recorded_topk_inputs_match_exactly() {
    for f in fixtures() {
        for stem in files(&f.dir, "tree_") {
            let (json, t) = settings(&f.dir, &stem);
            let settings = tree_settings(&json);
            let root = t["prefill.sample_token"].ids().unwrap()[0];
            let vd = f.head.config.draft_vocab_size;
            let tree = build_tree(
                root,
                t["trace.root_logp"].f32().unwrap(),
                settings,
                |i| f.head.vocab.target_id(i),
                |step, frontier| {
                    let logp = t[&format!("trace.depth{step}.logp")].f32().unwrap();
                    assert_eq!(logp.len(), frontier.len() * vd);
                    Ok(logp.chunks(vd).map(|c| c.to_vec()).collect())
                },
            )
            .unwrap();
            check_tree(&format!("{}/{stem} (trace)", f.name), &tree, &t, "");
            println!(
                "eagle3 {}: {stem} from recorded top-k inputs: {} nodes, {} paths ... ok",
                f.name,
                tree.len(),
                tree.paths().len()
            );
        }
    }
}

#[test]
fn trees_from_our_forward_match_and_verification_accepts_the_same() {
    for f in fixtures() {
        for stem in files(&f.dir, "tree_") {
            let (json, t) = settings(&f.dir, &stem);
            let settings = tree_settings(&json);
            let prompt = t["prompt_ids"].ids().unwrap();
            let mut cache = f.target.new_cache(0, prompt.len() + settings.total_tokens);
            let out = f
                .target
                .forward_causal(&mut cache, &prompt, LogitRows::Last, &taps_of(&f))
                .unwrap();
            let logits = host(out.logits.unwrap());
            let root = confu_core::sampling::argmax(&logits) as u32;
            assert_eq!(
                root,
                t["prefill.sample_token"].ids().unwrap()[0],
                "{}: root",
                f.name
            );
            let mut drafter = Eagle3Drafter::new(f.head.clone(), backend_cpu::ops(), 256);
            let next: Vec<u32> = prompt[1..].iter().copied().chain([root]).collect();
            drafter.extend(Tensor::cat(out.taps, 1), &next).unwrap();
            let tree = drafter.draft_tree(root, settings).unwrap();
            check_tree(&format!("{}/{stem} (own forward)", f.name), &tree, &t, "");

            let v = confu_verify::verify_tree(&f.target, &mut cache, &tree, &[]).unwrap();
            let argmax: Vec<u32> = v
                .logits
                .iter()
                .map(|l| confu_core::sampling::argmax(l) as u32)
                .collect();
            let acc = confu_verify::greedy_accept(&tree, &argmax);
            assert_eq!(
                acc.accepted_drafts() as i64,
                t["verify.accept_length"].i64().unwrap()[0],
                "{}: accept length",
                f.name
            );
            assert_eq!(
                acc.bonus,
                t["verify.bonus_token"].ids().unwrap()[0],
                "{}: bonus",
                f.name
            );
            let accepted: Vec<u32> = acc.path.iter().map(|&n| tree.tokens[n]).collect();
            assert_eq!(
                accepted,
                t["verify.accepted_tokens"].ids().unwrap(),
                "{}: accepted tokens",
                f.name
            );
            println!(
                "eagle3 {}: {stem} from our forward: tree, accept_length {} and bonus equal ... ok",
                f.name,
                acc.accepted_drafts()
            );
        }
    }
}

#[test]
fn evaluate_posterior_matches_official() {
    for f in fixtures() {
        for stem in files(&f.dir, "evaluate_posterior") {
            let (_, t) = settings(&f.dir, &stem);
            let shape = t["candidates"].shape().to_vec();
            let (r, d) = (shape[0], shape[1]);
            let v = t["logits"].shape()[2];
            let cands: Vec<Vec<i64>> = t["candidates"]
                .i64()
                .unwrap()
                .chunks(d)
                .map(|c| c.to_vec())
                .collect();
            let logits = t["logits"].f32().unwrap();
            let preds: Vec<Vec<u32>> = (0..r)
                .map(|i| {
                    (0..d)
                        .map(|j| {
                            confu_core::sampling::argmax(
                                &logits[(i * d + j) * v..(i * d + j + 1) * v],
                            ) as u32
                        })
                        .collect()
                })
                .collect();
            let (best, len) = evaluate_posterior(&cands, &preds);
            assert_eq!(
                best as i64,
                t["best_candidate"].i64().unwrap()[0],
                "{}: best_candidate",
                f.name
            );
            assert_eq!(
                len as i64,
                t["accept_length"].i64().unwrap()[0],
                "{}: accept_length",
                f.name
            );
            let bonus = preds[best][len];
            assert_eq!(
                bonus,
                t["bonus_token"].ids().unwrap()[0],
                "{}: bonus",
                f.name
            );
            println!("eagle3 {}: {stem}: best_candidate {best}, accept_length {len}, bonus {bonus} ... ok", f.name);
        }
    }
}

#[test]
fn greedy_runs_match_official_eagenerate() {
    // The check `confu check` runs on any device: output ids, accepted drafts per round, rounds.
    let dirs = fixture_folders("eagle3");
    assert!(!dirs.is_empty(), "no eagle3 fixtures found");
    for dir in dirs {
        let lines = confu::check::eagle3_runs(&dir, backend_cpu::ops(), &Default::default());
        assert!(!lines.is_empty(), "{}: no generate_* case", dir.display());
        for line in lines {
            println!("{line}");
            assert!(line.passed, "{line}");
        }
    }
}
