//! `--tree auto` stays lossless whatever it chooses: with costs that make it draft large trees,
//! decode plainly (head positions deferred, ConFu's future slot kept) with a probe every few
//! rounds, verify prompt-lookup chains instead of head trees, or trade nodes against time, and
//! with the costs it measures itself, greedy EAGLE-3 and ConFu output equals vanilla greedy output
//! on every fixture target, and sampled output follows the target's distribution (chi-square, as
//! `speculative.rs`), with chains drawn from the head and with top-k trees.

mod common;

use std::sync::Arc;

use backend_cpu::Cpu;
use confu::reference::fixture_dirs;
use confu::{ConfuHead, DraftMode, Engine, GenerationConfig};
use confu_draft::{
    AutoTree, AutoTreeOptions, CostModel, DraftConfig, DraftSampling, Eagle3Head, TreeSettings,
};
use confu_model::TargetModel;
use confu_moe::{ConfuDims, ConfuOptions, ConfuParams};

fn options() -> AutoTreeOptions {
    AutoTreeOptions {
        max: TreeSettings {
            total_tokens: 24,
            depth: 4,
            top_k: 4,
        },
        explore_every: 3,
        ..AutoTreeOptions::default()
    }
}

/// Policies with hand-set costs: verification points, seconds per draft forward and of the
/// update after a drafted round.
fn policies() -> Vec<(&'static str, AutoTree)> {
    let policy = |verify: Vec<(usize, f64)>, forward: f64, update: f64| {
        let mut costs = CostModel::new(verify, 5, 1.0);
        for f in 1..=5 {
            costs.observe(f, 2, forward * f as f64, 0.0, update);
        }
        // Frozen: the rounds' real timings must not replace the hand-set costs.
        AutoTree::new(options(), costs.with_alpha(0.0))
    };
    vec![
        ("free drafts", policy(vec![(1, 1.0), (64, 1.0)], 0.0, 0.0)),
        ("a step per row", policy(vec![(1, 1.0), (2, 2.0)], 0.3, 0.2)),
        (
            "a tenth of a step per row",
            policy(vec![(1, 1.0), (2, 1.1)], 0.05, 0.05),
        ),
        lookup_policy(),
    ]
}

/// Rows cost a tenth of a step but a draft forward a whole one: no head tree pays, and prompt
/// lookup's chains (which cost no forward) do wherever the text repeats.
fn lookup_policy() -> (&'static str, AutoTree) {
    let mut costs = CostModel::new(vec![(1, 1.0), (2, 1.1)], 5, 1.0);
    for f in 1..=5 {
        costs.observe(f, 2, f as f64, 0.0, 0.05);
    }
    (
        "lookup pays",
        AutoTree::new(options(), costs.with_alpha(0.0)),
    )
}

fn random_confu(target: &TargetModel<Cpu>) -> ConfuHead<Cpu> {
    let dc = DraftConfig::for_target(target.config());
    let head = Eagle3Head::random(dc.clone(), 3, target).unwrap();
    let dims = ConfuDims {
        target_hidden: target.config().hidden_size,
        draft_hidden: dc.hidden_size,
        draft_kv_heads: dc.shape.kv_heads,
    };
    let options = ConfuOptions::default();
    let params = ConfuParams::random(&options, dims, 5, target.device());
    ConfuHead::from_parts(target, Arc::new(head), options, params).unwrap()
}

#[test]
fn greedy_auto_trees_equal_vanilla() {
    for dir in fixture_dirs("hf") {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let target =
            TargetModel::<Cpu>::load(&dir, backend_cpu::ops(), &Default::default()).unwrap();
        let vocab = target.config().vocab_size as u32;
        let mut modes: Vec<(String, DraftMode<Cpu>)> = Vec::new();
        let tree = options().max;
        if let Ok(head) = Eagle3Head::load(&common::draft_dir(), &target) {
            let head = Arc::new(head);
            modes.push(("eagle3".into(), DraftMode::Eagle3 { head, tree }));
        }
        let confu = random_confu(&target);
        modes.push(("confu".into(), DraftMode::Confu { confu, tree }));
        let mut prompts = common::prompts(vocab);
        // Two varied prompts and the repetitive one, where lookup finds matches.
        prompts.swap(2, 5);
        prompts.truncate(3);
        let config = GenerationConfig {
            max_new_tokens: 24,
            ..Default::default()
        };
        let vanilla = Engine::new(target.clone());
        let (mut plain, mut drafted, mut lookup) = (0, 0, 0);
        for (label, mode) in &modes {
            let mut engines: Vec<(String, Engine<Cpu>)> = policies()
                .into_iter()
                .map(|(p, policy)| {
                    let e = Engine::with_mode(target.clone(), mode.clone()).unwrap();
                    (format!("{label} auto ({p})"), e.with_auto_policy(policy))
                })
                .collect();
            let measured = Engine::with_mode(target.clone(), mode.clone())
                .unwrap()
                .with_auto_tree(options())
                .unwrap();
            engines.push((format!("{label} auto (measured)"), measured));
            for prompt in &prompts {
                let want = vanilla.generate(prompt, &config, |_| {}).unwrap();
                for (l, engine) in &engines {
                    let got = engine.generate(prompt, &config, |_| {}).unwrap();
                    common::check_greedy(&target, &name, l, prompt, &want, &got);
                    for r in &got.rounds {
                        let a = r.auto.expect("every round of an auto engine is planned");
                        assert_eq!(a.nodes, r.tree_size, "{name} {l}: the verified tree");
                        match (a.nodes, a.lookup_ngram) {
                            (1, _) => plain += 1,
                            (_, 0) => drafted += 1,
                            _ => lookup += 1,
                        }
                    }
                }
            }
        }
        println!(
            "auto tree {name}: {} prompts x {} auto drafters equal vanilla greedy; {plain} plain, {drafted} head-drafted and {lookup} prompt-lookup rounds ... ok",
            prompts.len(),
            5 * modes.len()
        );
        assert!(
            plain > 0 && drafted > 0 && lookup > 0,
            "every kind of round was exercised"
        );
    }
}

/// Samples `n` generations of `positions` tokens at T = 0.25 from both engines, checks that each
/// position follows the same distribution, and returns the drafts `spec` had accepted.
fn sample_like_vanilla(
    label: &str,
    vanilla: &Engine<Cpu>,
    spec: &Engine<Cpu>,
    prompt: &[u32],
    n: usize,
    positions: usize,
) -> usize {
    let (a, b, accepted) =
        common::sample_both(vanilla, spec, prompt, (0.25, None, None), n, positions);
    for p in 0..positions {
        common::same_distribution(&format!("{label} T=0.25 position {p}"), &a[p], &b[p]).unwrap();
    }
    accepted
}

#[test]
fn sampled_auto_trees_match_vanilla_sampling() {
    let (target, prompt, _) = common::sampling_setup();
    let head = Arc::new(Eagle3Head::load(&common::draft_dir(), &target).unwrap());
    let mode = DraftMode::Eagle3 {
        head,
        tree: options().max,
    };
    let vanilla = Engine::new(target.clone());
    let (n, positions) = (1500, 3);
    // Trees whose depth and size change from round to round (the switch to plain rounds and
    // back is exercised by the greedy test above): chains drawn from the head, and top-k trees.
    for sampling in [DraftSampling::Draw, DraftSampling::Top] {
        let (_, policy) = policies().remove(0);
        let spec = Engine::with_mode(target.clone(), mode.clone())
            .unwrap()
            .with_draft_sampling(sampling)
            .with_auto_policy(policy);
        let label = format!("auto {sampling:?}");
        let accepted = sample_like_vanilla(&label, &vanilla, &spec, &prompt, n, positions);
        println!("{label} lossless sampling: {accepted} drafts accepted");
        assert!(
            accepted > n,
            "too few accepted drafts ({accepted}) for the test to have power"
        );
    }
}

/// The embedded testbed model's folder, its target and its EAGLE-3 head.
fn testbed() -> (std::path::PathBuf, TargetModel<Cpu>, Arc<Eagle3Head<Cpu>>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/testbed");
    let target =
        TargetModel::<Cpu>::load(&dir.join("target"), backend_cpu::ops(), &Default::default())
            .unwrap();
    let head = Arc::new(Eagle3Head::load(&dir.join("draft"), &target).unwrap());
    (dir, target, head)
}

#[test]
fn sampled_lookup_rounds_match_vanilla_sampling() {
    // The embedded testbed model: trained on the corpus, it repeats itself, so lookup chains are
    // accepted at a low temperature (the fixtures' random models never copy).
    let (dir, target, head) = testbed();
    let tokenizer = confu_model::Tokenizer::from_file(&dir.join("target/tokenizer.json")).unwrap();
    let vanilla = Engine::new(target.clone());
    // The prompt and its greedy continuation, which loops: its next tokens occurred before.
    let mut prompt = tokenizer.encode("fn main() {").unwrap();
    let config = GenerationConfig {
        max_new_tokens: 40,
        ..Default::default()
    };
    prompt.extend(
        vanilla
            .generate(&prompt, &config, |_| {})
            .unwrap()
            .generated_ids,
    );
    let mode = DraftMode::Eagle3 {
        head,
        tree: options().max,
    };
    let (n, positions) = (1000, 3);
    let (_, policy) = lookup_policy();
    let spec = Engine::with_mode(target, mode)
        .unwrap()
        .with_auto_policy(policy);
    let accepted = sample_like_vanilla("auto lookup", &vanilla, &spec, &prompt, n, positions);
    let policy = spec.auto_tree().unwrap().lock().unwrap();
    let lookup = policy.lookup_stats();
    println!(
        "auto tree lossless sampling with lookup chains: {accepted} drafts accepted; depth-1 acceptance {:.2}",
        lookup.rate(1, 0)
    );
    assert!(
        accepted > n / 2,
        "too few accepted drafts ({accepted}) for the test to have power"
    );
    assert!(lookup.rate(1, 0) > 0.5, "the accepted drafts were lookup's");
}

#[test]
fn a_trained_head_seeds_the_policy_with_its_dev_evaluation() {
    // The embedded testbed's heads keep the `log.json` their training wrote.
    let (dir, target, head) = testbed();
    // Step 0's top-1 over the dev categories, weighted by their tokens, read here on its own.
    let log: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("draft/log.json")).unwrap())
            .unwrap();
    let (mut hits, mut count) = (0.0, 0.0);
    for dev in log["dev"].as_array().unwrap() {
        let step = &dev["per_step"][0];
        let n = step["count"].as_f64().unwrap();
        hits += step["top1"].as_f64().unwrap() * n;
        count += n;
    }
    let top1 = hits / count;
    assert_eq!(
        head.prior.source(),
        Some(dir.join("draft/log.json").as_path())
    );
    assert!((head.prior.rate(1, 0) - top1).abs() < 1e-9);
    let mode = DraftMode::Eagle3 {
        head,
        tree: options().max,
    };
    let engine = Engine::with_mode(target.clone(), mode)
        .unwrap()
        .with_auto_tree(options())
        .unwrap();
    let policy = engine.auto_tree().unwrap().lock().unwrap();
    assert!((policy.stats().rate(1, 0) - top1).abs() < 1e-9);
    // A head built in code knows nothing of its training: the generic prior.
    let random = Eagle3Head::random(DraftConfig::for_target(target.config()), 1, &target).unwrap();
    assert_eq!(random.prior, confu_draft::AcceptancePrior::generic());
}
