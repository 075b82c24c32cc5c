//! Speculative decoding is lossless.
//! - Greedy: speculative output equals vanilla greedy output for every fixture model, many prompts
//!   and several tree settings (a 1-node tree, budgets larger than the context left), with EAGLE-3
//!   and prompt lookup. Verifying many rows at once may round differently from decoding one row,
//!   so a divergence is tolerated only where the target's top-2 logit gap is below 1e-4, and named.
//!   Vanilla decoding gives the same ids whether the pool's threads poll or park between passes.
//! - Sampling: token distributions under speculative sampling match vanilla sampling (chi-square),
//!   with the head's top-k trees and with chains drawn from the head's distribution, and the same
//!   check rejects a deliberately broken acceptance rule.

mod common;

use std::sync::Arc;

use backend_cpu::Cpu;
use confu::reference::fixture_dirs;
use confu::{DraftMode, Engine, GenerationConfig};
use confu_core::sampling::filtered_probs;
use confu_core::{DraftTree, Sampler, SamplingParams};
use confu_draft::{DraftSampling, Eagle3Head, PromptLookup, TreeSettings};
use confu_model::TargetModel;
use confu_verify::{sample_accept, Acceptance};

#[test]
fn greedy_speculative_equals_vanilla() {
    let settings = [
        TreeSettings {
            total_tokens: 1,
            depth: 3,
            top_k: 4,
        },
        TreeSettings {
            total_tokens: 2,
            depth: 1,
            top_k: 1,
        },
        TreeSettings {
            total_tokens: 8,
            depth: 3,
            top_k: 2,
        },
        TreeSettings {
            total_tokens: 30,
            depth: 4,
            top_k: 8,
        },
        TreeSettings {
            total_tokens: 60,
            depth: 5,
            top_k: 10,
        },
    ];
    let max_new = 40;
    for dir in fixture_dirs("hf") {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let target =
            TargetModel::<Cpu>::load(&dir, backend_cpu::ops(), &Default::default()).unwrap();
        let vocab = target.config().vocab_size as u32;
        let limit = target.config().max_position_embeddings;
        let mut modes: Vec<(String, DraftMode<Cpu>)> =
            vec![("lookup".into(), DraftMode::Lookup(PromptLookup::default()))];
        match Eagle3Head::load(&common::draft_dir(), &target) {
            Ok(head) => {
                let head = Arc::new(head);
                for s in settings {
                    modes.push((
                        format!("eagle3 {}/{}/{}", s.total_tokens, s.depth, s.top_k),
                        DraftMode::Eagle3 {
                            head: head.clone(),
                            tree: s,
                        },
                    ));
                }
            }
            Err(e) => println!(
                "speculative {name}: the fixture EAGLE-3 head does not fit ({e}); lookup only"
            ),
        }
        let mut all_prompts = common::prompts(vocab);
        // A prompt that leaves less context than the largest tree.
        all_prompts.push(
            (0..(limit as u32 - 20))
                .map(|i| (i * 7 + 3) % vocab)
                .collect(),
        );
        let vanilla = Engine::new(target.clone());
        for prompt in &all_prompts {
            let config = GenerationConfig {
                max_new_tokens: max_new,
                ..Default::default()
            };
            let want = vanilla.generate(prompt, &config, |_| {}).unwrap();
            // Worker threads kept polling (the default) change when work runs, never what.
            let parked = Engine::new(target.clone()).with_warm_threads(false);
            let got = parked.generate(prompt, &config, |_| {}).unwrap();
            assert_eq!(
                got.generated_ids, want.generated_ids,
                "{name}: vanilla with parked threads"
            );
            for (label, mode) in &modes {
                let engine = Engine::with_mode(target.clone(), mode.clone()).unwrap();
                let got = engine.generate(prompt, &config, |_| {}).unwrap();
                common::check_greedy(&target, &name, label, prompt, &want, &got);
                assert_eq!(
                    got.stop_reason, want.stop_reason,
                    "{name} {label}: stop reason"
                );
            }
        }
        println!(
            "speculative {name}: {} prompts x {} drafters (lookup, eagle3 trees 1..60 nodes) equal vanilla greedy ... ok",
            all_prompts.len(),
            modes.len()
        );
    }
}

#[test]
fn speculative_sampling_matches_vanilla_sampling() {
    let (target, prompt, tree) = common::sampling_setup();
    let head = Arc::new(Eagle3Head::load(&common::draft_dir(), &target).unwrap());
    let spec = Engine::with_mode(target.clone(), DraftMode::Eagle3 { head, tree }).unwrap();
    let vanilla = Engine::new(target);
    let n = 1500;
    let positions = 3;
    // The tiny random target is flat at high temperatures (few drafts accepted, many categories)
    // and peaked at low ones (many accepted, few categories): check across that range.
    let mut total_accepted = 0;
    for (t, top_k, top_p) in [
        (0.25, None, None),
        (0.6, None, None),
        (0.8, Some(30), Some(0.95)),
    ] {
        let (a, b, accepted) =
            common::sample_both(&vanilla, &spec, &prompt, (t, top_k, top_p), n, positions);
        println!("lossless T={t} top_k={top_k:?} top_p={top_p:?}: {n} runs each, {accepted} drafts accepted by the speculative runs");
        total_accepted += accepted;
        for p in 0..positions {
            common::same_distribution(&format!("T={t} position {p}"), &a[p], &b[p]).unwrap();
        }
    }
    assert!(
        total_accepted > n,
        "too few accepted drafts ({total_accepted}) for the test to have power"
    );
}

#[test]
fn drawn_chains_match_vanilla_sampling() {
    let (target, prompt, _) = common::sampling_setup();
    let head = Arc::new(Eagle3Head::load(&common::draft_dir(), &target).unwrap());
    let chain = TreeSettings {
        total_tokens: 4,
        depth: 2,
        top_k: 1,
    };
    let mode = DraftMode::Eagle3 { head, tree: chain };
    let drawn = Engine::with_mode(target.clone(), mode)
        .unwrap()
        .with_draft_sampling(DraftSampling::Draw);
    let vanilla = Engine::new(target.clone());
    let (n, positions) = (1500, 3);
    // The fixture's head is untrained: only a peaked target accepts enough drafts for power.
    let mut total = 0;
    for (t, top_k, top_p) in [(0.25, None, None), (0.5, Some(30), Some(0.9))] {
        let filters = (t, top_k, top_p);
        let (a, b, accepted) =
            common::sample_both(&vanilla, &drawn, &prompt, filters, n, positions);
        println!("drawn chains T={t} top_k={top_k:?} top_p={top_p:?}: {accepted} drafts accepted");
        for p in 0..positions {
            common::same_distribution(&format!("drawn T={t} position {p}"), &a[p], &b[p]).unwrap();
        }
        total += accepted;
    }
    assert!(
        total > n,
        "too few accepted drafts ({total}) for the test to have power"
    );
}

#[test]
fn drawing_from_the_trained_head_raises_acceptance_at_t1() {
    // The embedded testbed: a trained head on a high-entropy target, one draft a round. Any
    // draft rule is lossless (above); drawing is what makes the drafts worth verifying.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/testbed");
    let target =
        TargetModel::<Cpu>::load(&dir.join("target"), backend_cpu::ops(), &Default::default())
            .unwrap();
    let head = Arc::new(Eagle3Head::load(&dir.join("draft"), &target).unwrap());
    let tokenizer = confu_model::Tokenizer::from_file(&dir.join("target/tokenizer.json")).unwrap();
    let prompt = tokenizer.encode("fn main() {\n    let").unwrap();
    let one_draft = TreeSettings {
        total_tokens: 2,
        depth: 0,
        top_k: 1,
    };
    let mode = DraftMode::Eagle3 {
        head,
        tree: one_draft,
    };
    let acceptance = |sampling| {
        let engine = Engine::with_mode(target.clone(), mode.clone())
            .unwrap()
            .with_draft_sampling(sampling);
        let (mut accepted, mut rounds) = (0, 0);
        for seed in 0..40 {
            let config = GenerationConfig {
                max_new_tokens: 32,
                sampling: SamplingParams {
                    temperature: 1.0,
                    seed,
                    ..Default::default()
                },
                stop_at_eos: false,
            };
            let g = engine.generate(&prompt, &config, |_| {}).unwrap();
            accepted += g.rounds.iter().map(|r| r.accepted_drafts).sum::<usize>();
            rounds += g.rounds.len();
        }
        accepted as f64 / rounds as f64
    };
    let (drawn, top) = (
        acceptance(DraftSampling::Draw),
        acceptance(DraftSampling::Top),
    );
    println!("testbed T=1, one draft a round: accepted {drawn:.2} drawn, {top:.2} top-1");
    assert!(drawn > 1.5 * top, "drawn {drawn:.2} vs top-1 {top:.2}");
}

/// The acceptance walk with the renormalisation after a rejection removed: a rejected draft
/// keeps its mass, so the bonus over-samples drafted tokens.
fn broken_accept(
    tree: &DraftTree,
    probs: impl Fn(usize) -> Vec<f32>,
    sampler: &mut Sampler,
) -> Acceptance {
    let children = tree.children();
    let p = probs(0);
    for &c in &children[0] {
        if sampler.uniform() < p[tree.tokens[c] as usize] as f64 {
            return Acceptance {
                path: vec![0, c],
                bonus: 0,
            };
        }
    }
    Acceptance {
        path: vec![0],
        bonus: sampler.draw(&p) as u32,
    }
}

#[test]
fn the_lossless_check_rejects_a_broken_acceptance_rule() {
    // One round over a fixed tree: the first emitted token must follow p(root).
    let logits: Vec<f32> = (0..12).map(|i| ((i * 7 % 5) as f32) * 0.6).collect();
    let params = SamplingParams {
        temperature: 1.0,
        ..Default::default()
    };
    let p = filtered_probs(&logits, &params);
    let tree = DraftTree {
        tokens: vec![0, 3, 8, 1],
        parents: vec![None, Some(0), Some(0), Some(0)],
        depths: vec![0, 1, 1, 1],
    };
    let first = |acc: &Acceptance| {
        if acc.path.len() > 1 {
            tree.tokens[acc.path[1]]
        } else {
            acc.bonus
        }
    };
    let n = 20_000;
    let mut sampler = Sampler::new(SamplingParams {
        seed: 1,
        ..params.clone()
    })
    .unwrap();
    let reference: Vec<u32> = (0..n).map(|_| sampler.draw(&p) as u32).collect();
    let mut sampler = Sampler::new(SamplingParams {
        seed: 2,
        ..params.clone()
    })
    .unwrap();
    let good: Vec<u32> = (0..n)
        .map(|_| first(&sample_accept(&tree, &[], |_| p.clone(), &mut sampler)))
        .collect();
    let mut sampler = Sampler::new(SamplingParams { seed: 3, ..params }).unwrap();
    let bad: Vec<u32> = (0..n)
        .map(|_| first(&broken_accept(&tree, |_| p.clone(), &mut sampler)))
        .collect();
    common::same_distribution("correct acceptance vs p", &reference, &good).unwrap();
    let verdict = common::same_distribution("broken acceptance vs p", &reference, &bad);
    assert!(
        verdict.is_err(),
        "the chi-square check failed to notice a broken acceptance rule"
    );
}
