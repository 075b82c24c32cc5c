//! ConFu against the transformers-based reference, on every fixture folder under `confu/` of
//! every fixture root (`fixtures/confu/README.md` is the specification): the prefill (prompt
//! logits and features after the soft prompt, the contemplate routing, the `[con]` embedding and
//! `f`), the verification pass (its mask, node logits — bit-identical to the pass without `[con]`
//! rows — every node's `f`, acceptance and the next `f`), the draft with the future slot (routing,
//! logits, states, tree) and whole greedy runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use backend_cpu::Cpu;
use burn::tensor::{Tensor, TensorData};
use confu::reference::{fixture_folders, fixture_models, read_tensors, rel_l2, RefTensor};
use confu::ConfuHead;
use confu_core::{DraftTree, KvCache, ToHost, Visibility};
use confu_draft::{Eagle3Drafter, TreeSettings};
use confu_model::{feature_taps, LogitRows, ModelInput, TargetModel};
use confu_verify::{greedy_accept, score, verify_tree};

const TOL: f64 = 1e-4;

struct Fixture {
    dir: PathBuf,
    name: String,
    target: TargetModel<Cpu>,
    confu: ConfuHead<Cpu>,
}

fn fixtures() -> Vec<Fixture> {
    let dirs = fixture_folders("confu");
    assert!(!dirs.is_empty(), "no confu fixtures found");
    dirs.into_iter()
        .map(|dir| {
            let (target_dir, draft_dir) = fixture_models(&dir).unwrap();
            let target =
                TargetModel::<Cpu>::load(&target_dir, backend_cpu::ops(), &Default::default())
                    .unwrap_or_else(|e| panic!("{}: {e}", target_dir.display()));
            let confu = ConfuHead::load(&draft_dir, &target)
                .unwrap_or_else(|e| panic!("{}: {e}", draft_dir.display()));
            Fixture {
                name: dir.file_name().unwrap().to_string_lossy().to_string(),
                dir,
                target,
                confu,
            }
        })
        .collect()
}

fn load(dir: &Path, stem: &str) -> Option<(serde_json::Value, HashMap<String, RefTensor>)> {
    let json = std::fs::read_to_string(dir.join(format!("{stem}.json"))).ok()?;
    Some((
        serde_json::from_str(&json).unwrap(),
        read_tensors(&dir.join(format!("{stem}.safetensors"))).unwrap(),
    ))
}

fn tensor2(t: &RefTensor) -> Tensor<Cpu, 2> {
    let s = t.shape();
    let (rows, cols) = if s.len() == 1 {
        (1, s[0])
    } else {
        (s[0], s[1])
    };
    Tensor::from_data(
        TensorData::new(t.f32().unwrap().to_vec(), [rows, cols]),
        &Default::default(),
    )
}

fn close(what: &str, ours: &[f32], theirs: &RefTensor) -> f64 {
    let r = rel_l2(ours, theirs.f32().unwrap());
    assert!(r <= TOL, "{what}: rel L2 {r:.2e}");
    r
}

fn tree_of(t: &HashMap<String, RefTensor>, prefix: &str) -> DraftTree {
    let tokens = t[&format!("{prefix}.draft_tokens")].ids().unwrap();
    let parents = t[&format!("{prefix}.parents")]
        .i64()
        .unwrap()
        .iter()
        .map(|&p| (p >= 0).then_some(p as usize))
        .collect();
    let depths = t[&format!("{prefix}.depths")]
        .i64()
        .unwrap()
        .iter()
        .map(|&d| d as usize)
        .collect();
    DraftTree {
        tokens,
        parents,
        depths,
    }
}

/// The prompt pass after the soft prompt: the cache, the last row's logits and all features.
fn prompt_pass(
    f: &Fixture,
    prompt: &[u32],
) -> (confu_core::DenseKvCache<Cpu>, Vec<f32>, Tensor<Cpu, 2>) {
    let c = &f.confu.contemplator;
    let mut cache = f.target.new_cache(c.reserved(), prompt.len() + 256);
    c.install(&mut cache).unwrap();
    let taps = feature_taps(f.target.config().num_hidden_layers);
    let out = f
        .target
        .forward_causal(&mut cache, prompt, LogitRows::Last, &taps)
        .unwrap();
    (
        cache,
        out.logits.unwrap().to_host(),
        Tensor::cat(out.taps, 1),
    )
}

fn tree_settings(json: &serde_json::Value) -> TreeSettings {
    confu::reference::fixture_tree(&json["settings"]).unwrap()
}

#[test]
fn prefill_matches_the_reference() {
    for f in fixtures() {
        let Some((_, t)) = load(&f.dir, "prefill") else {
            continue;
        };
        let prompt = t["prompt_ids"].ids().unwrap();
        let n = prompt.len();
        let (mut cache, logits, features) = prompt_pass(&f, &prompt);
        let r_logits = close("prefill logits_last", &logits, &t["logits_last"]);
        let r_feat = close(
            "prefill features",
            &features.clone().to_host(),
            &t["features"],
        );
        let anchor = features.narrow(0, n - 1, 1);
        let pf = f
            .confu
            .contemplator
            .prefill_future(&f.target, &mut cache, anchor)
            .unwrap();
        assert_eq!(cache.len(), n, "the [con] row's K/V must be dropped");
        let r_probs = close("router probs", &pf.route.probs, &t["route.router_probs"]);
        let experts: Vec<i64> = pf.route.experts.iter().map(|&e| e as i64).collect();
        assert_eq!(
            experts,
            t["route.experts"].i64().unwrap(),
            "{}: experts",
            f.name
        );
        close("route weights", &pf.route.weights, &t["route.weights"]);
        let r_emb = close(
            "[con] embedding",
            &pf.embedding.to_host(),
            &t["con_embedding"],
        );
        let r_f = close("f", &pf.f.to_host(), &t["f"]);
        println!(
            "confu {}: prefill logits {r_logits:.1e}, features {r_feat:.1e}, router probs {r_probs:.1e}, experts {:?}, [con] {r_emb:.1e}, f {r_f:.1e} ... ok",
            f.name, pf.route.experts
        );
    }
}

#[test]
fn verification_pass_matches_the_reference() {
    for f in fixtures() {
        let Some((_, t)) = load(&f.dir, "verify") else {
            continue;
        };
        let prompt = t["prefix_ids"].ids().unwrap();
        let n = prompt.len();
        let tree = tree_of(&t, "tree");
        let (mut cache, _, features) = prompt_pass(&f, &prompt);
        let c = &f.confu.contemplator;
        let anchor = features.narrow(0, n - 1, 1);
        let (embedding, route) = c.embedding(anchor, f.target.ops().as_ref());
        assert_eq!(
            route.experts.iter().map(|&e| e as i64).collect::<Vec<_>>(),
            t["route.experts"].i64().unwrap()
        );
        close(
            "verify [con] embedding",
            &embedding.clone().to_host(),
            &t["con_embedding"],
        );
        let covered: Vec<usize> = (0..tree.len()).collect();
        let layout = c.layout(&cache, &tree, &covered).unwrap();
        // The mask and positions, against the reference's.
        let want_pos: Vec<usize> = t["position_ids"]
            .i64()
            .unwrap()
            .iter()
            .map(|&p| p as usize)
            .collect();
        assert_eq!(layout.positions, want_pos, "{}: positions", f.name);
        let mask = t["mask"].bools().unwrap();
        let ours: Vec<bool> = (0..layout.visibility.rows())
            .flat_map(|r| (0..layout.visibility.cols()).map(move |col| (r, col)))
            .map(|(r, col)| layout.visibility.get(r, col))
            .collect();
        assert_eq!(ours, mask, "{}: visibility", f.name);
        let inputs = c
            .inputs(&f.target, &tree, embedding, covered.len())
            .unwrap();
        let taps = feature_taps(f.target.config().num_hidden_layers);
        let scores = score(
            &f.target,
            &mut cache,
            &layout,
            ModelInput::Embeds(inputs),
            &taps,
        )
        .unwrap();
        let node_logits: Vec<f32> = scores.logits.concat();
        let r_logits = close("node logits", &node_logits, &t["node_logits"]);
        let feats = scores.features.unwrap();
        let t_len = tree.len();
        close(
            "node features",
            &feats.clone().narrow(0, 0, t_len).to_host(),
            &t["node_features"],
        );
        let r_f = close(
            "f per node",
            &feats.clone().narrow(0, t_len, t_len).to_host(),
            &t["f"],
        );

        // Bit-identical to the same pass without [con] rows (and without a soft prompt).
        let mut plain_cache = f.target.new_cache(0, n + t_len);
        f.target
            .forward_causal(&mut plain_cache, &prompt, LogitRows::None, &[])
            .unwrap();
        let plain = verify_tree(&f.target, &mut plain_cache, &tree, &[]).unwrap();
        let differing = plain
            .logits
            .concat()
            .iter()
            .zip(&node_logits)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        assert_eq!(
            differing, 0,
            "{}: node logits differ from the pass without [con] rows",
            f.name
        );

        let argmax: Vec<u32> = scores
            .logits
            .iter()
            .map(|l| confu_core::sampling::argmax(l) as u32)
            .collect();
        let acc = greedy_accept(&tree, &argmax);
        let q = *acc.path.last().unwrap();
        assert_eq!(
            acc.accepted_drafts() as i64,
            t["accept_length"].i64().unwrap()[0]
        );
        assert_eq!(q as i64, t["q"].i64().unwrap()[0], "{}: q", f.name);
        assert_eq!(
            acc.bonus,
            t["bonus_token"].ids().unwrap()[0],
            "{}: bonus",
            f.name
        );
        let f_next = feats.narrow(0, t_len + q, 1).to_host();
        close("f_next", &f_next, &t["f_next"]);
        println!(
            "confu {}: verify {t_len} nodes + {t_len} [con]: mask and positions equal, node logits {r_logits:.1e} (bit-identical without [con]), f {r_f:.1e}, q {q}, bonus {} ... ok",
            f.name, acc.bonus
        );
    }
}

#[test]
fn draft_with_the_future_slot_matches_the_reference() {
    for f in fixtures() {
        let Some((json, t)) = load(&f.dir, "draft") else {
            continue;
        };
        let head = f.confu.head.clone();
        let c = &f.confu.contemplator;
        let ops = f.target.ops().clone();
        let hidden_in = tensor2(&t["hidden_in"]);
        let ids = t["input_ids"].ids().unwrap();
        let n = ids.len();
        let o = &c.options;
        let fused = head.fuse(ops.as_ref(), hidden_in.clone().narrow(0, n - 1, 1));
        close("fused_last", &fused.clone().to_host(), &t["fused_last"]);
        let (e_f, route) =
            c.params
                .future
                .route(fused, o.top_k_expert, o.renormalize, ops.as_ref());
        assert_eq!(
            route[0]
                .experts
                .iter()
                .map(|&e| e as i64)
                .collect::<Vec<_>>(),
            t["route.experts"].i64().unwrap()
        );
        let r_ef = close("e_f", &e_f.clone().to_host(), &t["e_f"]);
        let slot_position = json["settings"]["slot_position"].as_u64().unwrap() as usize;

        // The head's rows with the slot, all at once.
        let mut cache = head.new_cache_with_reserved(ops.clone(), 1, n);
        head.write_future_slot(
            ops.as_ref(),
            &mut cache,
            e_f.clone(),
            tensor2(&t["f"]),
            slot_position,
            None,
        )
        .unwrap();
        let mut vis = Visibility::causal(1, 0, n);
        (0..n).for_each(|r| vis.allow(r, 0));
        let positions: Vec<usize> = (0..n).collect();
        let out = head
            .forward(
                ops.as_ref(),
                &mut cache,
                hidden_in.clone(),
                &ids,
                &positions,
                &vis,
            )
            .unwrap();
        let r_logits = close(
            "with_future.logits",
            &out.logits.to_host(),
            &t["with_future.logits"],
        );
        close(
            "with_future.out_hidden",
            &out.hidden.to_host(),
            &t["with_future.out_hidden"],
        );

        // The round-1 tree through the drafter.
        let tree = tree_settings(&json);
        let mut d = Eagle3Drafter::with_future_slot(
            head.clone(),
            ops.clone(),
            n + tree.depth * tree.top_k + 1,
        );
        d.set_future_slot(e_f, tensor2(&t["f"]), slot_position, None)
            .unwrap();
        d.extend(hidden_in, &ids).unwrap();
        let ours = d.draft_tree(*ids.last().unwrap(), tree).unwrap();
        let want = tree_of(&t, "tree");
        assert_eq!(ours, want, "{}: round-1 tree with the future slot", f.name);
        println!(
            "confu {}: draft with the future slot: e_f {r_ef:.1e}, logits {r_logits:.1e}, tree of {} nodes equal ... ok",
            f.name,
            ours.len()
        );
    }
}

#[test]
fn greedy_runs_match_the_reference() {
    // The check `confu check` runs on any device: output ids, accepted drafts per round, rounds
    // and the node each round's `f` came from.
    for f in fixtures() {
        let (_, t) = load(&f.dir, "greedy_generate").expect("greedy_generate case");
        assert_eq!(
            t["ids"].ids().unwrap(),
            t["plain_greedy_ids"].ids().unwrap(),
            "reference self-check"
        );
        let lines = confu::check::confu_runs(&f.dir, backend_cpu::ops(), &Default::default());
        assert_eq!(lines.len(), 1, "{}", f.name);
        println!("{}", lines[0]);
        assert!(lines[0].passed, "{}", lines[0]);
    }
}
