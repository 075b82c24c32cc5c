//! ConFu is lossless: greedy ConFu output equals vanilla greedy output for every fixture target
//! (the fixture's ConFu folder where one fits, seeded random ConFu heads on every target), many
//! prompts including one that leaves little context, trees of 1 to 60 nodes, and
//! `contemplate_nodes` all and top:M; and sampled ConFu output follows the target's distribution
//! (the chi-square test of EAGLE-3, whose power against a broken rule `speculative.rs` checks).

mod common;

use std::sync::Arc;

use backend_cpu::Cpu;
use confu::reference::{fixture_dirs, fixture_models};
use confu::{ConfuHead, DraftMode, Engine, GenerationConfig};
use confu_draft::{DraftConfig, Eagle3Head, TreeSettings};
use confu_model::TargetModel;
use confu_moe::{
    ConPosition, ConfuDims, ConfuOptions, ConfuParams, ContemplateNodes, FutureLayers,
};

fn fixture_confu(target: &TargetModel<Cpu>) -> Option<ConfuHead<Cpu>> {
    let dir = confu::reference::fixture_folders("confu")
        .into_iter()
        .next()?;
    ConfuHead::load(&fixture_models(&dir).ok()?.1, target).ok()
}

fn random_confu(target: &TargetModel<Cpu>, options: ConfuOptions) -> ConfuHead<Cpu> {
    let dc = DraftConfig::for_target(target.config());
    let head = Eagle3Head::random(dc.clone(), 3, target).unwrap();
    let dims = ConfuDims {
        target_hidden: target.config().hidden_size,
        draft_hidden: dc.hidden_size,
        draft_kv_heads: dc.shape.kv_heads,
    };
    let params = ConfuParams::random(&options, dims, 5, target.device());
    ConfuHead::from_parts(target, Arc::new(head), options, params).unwrap()
}

/// The same head with another `contemplate_nodes` rule.
fn with_nodes(
    confu: &ConfuHead<Cpu>,
    target: &TargetModel<Cpu>,
    nodes: ContemplateNodes,
) -> ConfuHead<Cpu> {
    let c = &confu.contemplator;
    let options = ConfuOptions {
        contemplate_nodes: nodes,
        ..c.options.clone()
    };
    let params = (*c.params).clone();
    ConfuHead::from_parts(target, confu.head.clone(), options, params).unwrap()
}

#[test]
fn greedy_confu_equals_vanilla() {
    let trees =
        [(1, 3, 4), (2, 1, 1), (8, 3, 2), (30, 4, 8), (60, 5, 10)].map(|(t, d, k)| TreeSettings {
            total_tokens: t,
            depth: d,
            top_k: k,
        });
    for dir in fixture_dirs("hf") {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let target =
            TargetModel::<Cpu>::load(&dir, backend_cpu::ops(), &Default::default()).unwrap();
        let vocab = target.config().vocab_size as u32;
        let limit = target.config().max_position_embeddings;
        let mut heads = vec![(
            "random".to_string(),
            random_confu(&target, ConfuOptions::default()),
        )];
        if let Some(h) = fixture_confu(&target) {
            heads.push(("fixture".into(), h));
        }
        let static_options = ConfuOptions {
            n_expert: 1,
            top_k_expert: 1,
            ..Default::default()
        };
        heads.push((
            "random static".into(),
            random_confu(&target, static_options),
        ));
        let other_choices = ConfuOptions {
            future_layers: FutureLayers::LastLayer,
            con_position: ConPosition::Node,
            ..Default::default()
        };
        heads.push((
            "random last-layer f, [con] at its node".into(),
            random_confu(&target, other_choices),
        ));
        let mut modes = Vec::new();
        for (label, head) in &heads {
            for nodes in [ContemplateNodes::All, ContemplateNodes::Top(3)] {
                let h = with_nodes(head, &target, nodes);
                for tree in trees {
                    let l = format!(
                        "confu {label} {nodes} {}/{}/{}",
                        tree.total_tokens, tree.depth, tree.top_k
                    );
                    modes.push((
                        l,
                        DraftMode::Confu {
                            confu: h.clone(),
                            tree,
                        },
                    ));
                }
            }
        }
        let mut prompts = common::prompts(vocab);
        prompts.truncate(4);
        prompts.push(vec![vocab - 3]);
        // A prompt that leaves less context than the largest tree with its [con] rows.
        prompts.push(
            (0..(limit as u32 - 30))
                .map(|i| (i * 7 + 3) % vocab)
                .collect(),
        );
        let vanilla = Engine::new(target.clone());
        let mut accepted = 0;
        for prompt in &prompts {
            let config = GenerationConfig {
                max_new_tokens: 24,
                ..Default::default()
            };
            let want = vanilla.generate(prompt, &config, |_| {}).unwrap();
            for (label, mode) in &modes {
                let engine = Engine::with_mode(target.clone(), mode.clone()).unwrap();
                let got = engine.generate(prompt, &config, |_| {}).unwrap();
                common::check_greedy(&target, &name, label, prompt, &want, &got);
                assert_eq!(
                    got.stop_reason, want.stop_reason,
                    "{name} {label}: stop reason"
                );
                accepted += got.rounds.iter().map(|r| r.accepted_drafts).sum::<usize>();
            }
        }
        println!(
            "confu {name}: {} prompts x {} ConFu drafters (trees 1..60 nodes, [con] on all / top:3 nodes, MoE and static, f from the taps or the last layer) equal vanilla greedy; {accepted} drafts accepted ... ok",
            prompts.len(),
            modes.len()
        );
    }
}

#[test]
fn confu_sampling_matches_vanilla_sampling() {
    let (target, prompt, tree) = common::sampling_setup();
    let confu = fixture_confu(&target).expect("the ConFu fixture fits llama3-tiny");
    let spec = Engine::with_mode(target.clone(), DraftMode::Confu { confu, tree }).unwrap();
    let vanilla = Engine::new(target);
    let (n, positions) = (1500, 3);
    let mut total_accepted = 0;
    for (t, top_k, top_p) in [(0.25, None, None), (0.8, Some(30), Some(0.95))] {
        let (a, b, accepted) =
            common::sample_both(&vanilla, &spec, &prompt, (t, top_k, top_p), n, positions);
        total_accepted += accepted;
        for p in 0..positions {
            common::same_distribution(&format!("confu T={t} position {p}"), &a[p], &b[p]).unwrap();
        }
    }
    println!("confu lossless sampling: {total_accepted} drafts accepted over the ConFu runs");
    assert!(
        total_accepted > n,
        "too few accepted drafts ({total_accepted}) for the test to have power"
    );
}
