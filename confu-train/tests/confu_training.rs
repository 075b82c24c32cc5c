//! ConFu training (METHOD.md §6): the efficient forward (anchor rows over cached K/V, one
//! diagonal score per future slot) gives the same loss and gradients as the naive reference (one
//! plain forward per anchor, explicit masks); the frozen target takes no gradient and no update;
//! a part with learning-rate multiple 0 stays as it was; resume is exact; and the exported folder
//! loads with `--draft` semantics and decodes losslessly.

mod common;

use std::sync::Arc;

use backend_cpu::Cpu;
use burn::backend::Autodiff;
use burn::module::{Module, Param};
use burn::tensor::{backend::Backend, Tensor};
use confu::{ConfuHead, DraftMode, Engine, GenerationConfig};
use confu_core::{PortableOps, ToHost};
use confu_draft::{export_official, DraftConfig, Eagle3, Eagle3Head, TreeSettings};
use confu_model::{named_values, Llama, TargetModel};
use confu_moe::{ConfuDims, ConfuOptions, ConfuParams};
use confu_train::checkpoint::target_fingerprint;
use confu_train::confu_loss::{ConfuForward, ConfuNet, FutureSource, PartScales};
use confu_train::confu_train::{train_confu, ConfuSettings};
use confu_train::contemplate_pass::{frozen_on_autodiff, ContemplateMode};
use confu_train::eagle3::draft_vocab_from_counts;
use confu_train::pretrain::{Control, Packed, TrainSettings};
use confu_train::ttt_attention::TttAttention;
use confu_train::ttt_batch::{TttBatch, VocabMap};

type Ad = Autodiff<Cpu>;

const VOCAB: usize = 40;

fn target(layers: usize) -> TargetModel<Cpu> {
    let c = common::tiny_llama(VOCAB, 32, 64, layers, 4, 2, 64);
    let device = Default::default();
    let module = Llama::<Cpu>::init(&c, 11, &device).unwrap();
    // Portable ops on both sides, so the two forms differ only by summation order.
    TargetModel::from_module(c, module, Arc::new(PortableOps), &device)
}

fn head_config(t: &TargetModel<Cpu>) -> (DraftConfig, Vec<i64>, Vec<bool>) {
    let mut dc = DraftConfig::for_target(t.config());
    dc.draft_vocab_size = 28;
    let counts: Vec<u64> = (0..VOCAB as u64).map(|i| (i * 7919) % 31 + 1).collect();
    let (d2t, t2d) = draft_vocab_from_counts(&counts, 28);
    (dc, d2t, t2d)
}

fn seqs() -> Vec<Vec<u32>> {
    (0..2u32)
        .map(|s| {
            (0..12u32)
                .map(|i| (i * 7 + s * 13 + 3) % VOCAB as u32)
                .collect()
        })
        .collect()
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().map(|x| x.abs()).fold(1e-12, f32::max);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

/// Loss and the named gradients of every trainable tensor, for one way of computing the forward.
fn loss_and_grads(
    options: &ConfuOptions,
    layers: usize,
    replication: usize,
    mode: (ContemplateMode, TttAttention),
) -> (f32, Vec<(String, Vec<f32>)>) {
    let t = target(layers);
    let device = Default::default();
    let (dc, d2t, t2d) = head_config(&t);
    let frozen = frozen_on_autodiff(&t).unwrap();
    let head = Eagle3::<Ad>::init(&dc, 4, &device);
    let dims = ConfuDims {
        target_hidden: 32,
        draft_hidden: 32,
        draft_kv_heads: dc.shape.kv_heads,
    };
    let table = t.embed_tokens().to_host();
    let mut confu =
        ConfuParams::<Ad>::init_for_training(options, dims, &table, 9, &device).unwrap();
    if let Some(gain) = &mut confu.slot_gain {
        // Gains other than 1, different per head, so that their use is checked too.
        let heads = dims.draft_kv_heads;
        let logs = |s: f32| {
            Tensor::from_floats(
                &*(0..heads).map(|h| s * (h as f32 + 1.0)).collect::<Vec<_>>(),
                &device,
            )
        };
        gain.log_k = Param::from_tensor(logs(0.7));
        gain.log_v = Param::from_tensor(logs(-0.4));
    }
    let net = ConfuNet {
        head,
        confu,
        scales: PartScales::default(),
    };
    let vocab = VocabMap::new(&d2t, &t2d);
    let data = seqs();
    let refs: Vec<&[u32]> = data.iter().map(Vec::as_slice).collect();
    let batch = TttBatch::<Ad>::new(&t, &refs, &vocab, true, Tensor::from_inner).unwrap();
    let embed: Tensor<Ad, 2> = Tensor::from_inner(t.embed_tokens());
    let forward = ConfuForward {
        frozen: &frozen,
        options,
        config: &dc,
        embed: &embed,
        ttt_steps: 3,
        decay: 0.8,
        replication,
        contemplate: mode.0,
        attention: mode.1,
        future: FutureSource::Contemplate,
    };
    let anchors = vec![vec![0, 4, 7], vec![2, 3, 9]];
    let (loss, steps) = forward.loss(&net, batch, &anchors, false).unwrap();
    assert!(steps.iter().all(|s| s.count > 0));
    if mode.1 == TttAttention::Efficient {
        // Every row with a slot attends to it with some probability, never all of it.
        assert!(steps
            .iter()
            .all(|s| s.slot_attention.is_some_and(|m| m > 0.0 && m < 1.0)));
    }
    let value = loss.clone().to_host()[0];
    let grads = loss.backward();
    // The frozen target takes no gradient at all.
    let tw = &frozen.weights().model;
    for w in [
        tw.layers[0].self_attn.q_proj.weight.val(),
        tw.layers[layers - 1].mlp.down_proj.weight.val(),
        tw.embed_tokens.weight.val(),
    ] {
        assert!(w.grad(&grads).is_none(), "the frozen target got a gradient");
    }
    let mut out = Vec::new();
    let mut take = |name: &str, g: Option<Tensor<Cpu, 2>>| {
        out.push((name.to_string(), g.expect(name).to_host()));
    };
    let p = &net.confu;
    take("soft_prompt", p.soft_prompt.val().grad(&grads));
    take(
        "contemplate.experts",
        p.contemplate.experts.val().grad(&grads),
    );
    take(
        "contemplate.router.weight",
        p.contemplate.router.weight.val().grad(&grads),
    );
    take("future.experts", p.future.experts.val().grad(&grads));
    take(
        "future.router.weight",
        p.future.router.weight.val().grad(&grads),
    );
    if let Some(gain) = &p.slot_gain {
        let as_row = |g: Option<Tensor<Cpu, 1>>| g.map(|g| g.unsqueeze::<2>());
        take("slot_gain.log_k", as_row(gain.log_k.val().grad(&grads)));
        take("slot_gain.log_v", as_row(gain.log_v.val().grad(&grads)));
    }
    take("fc.weight", net.head.fc.weight.val().grad(&grads));
    take(
        "midlayer.self_attn.k_proj.weight",
        net.head.midlayer.self_attn.k_proj.weight.val().grad(&grads),
    );
    (value, out)
}

#[test]
fn anchor_rows_and_future_slots_match_the_naive_reference() {
    let moe = ConfuOptions {
        soft_prompt_len: 3,
        n_expert: 4,
        top_k_expert: 2,
        ..Default::default()
    };
    let cases = [
        ("MoE, l=4, 3 layers", moe.clone(), 3, 4),
        ("MoE, l=1, 4 layers", moe.clone(), 4, 1),
        (
            "MoE, l=4, learned slot gains",
            ConfuOptions {
                future_slot_gain: true,
                ..moe.clone()
            },
            3,
            4,
        ),
        (
            "static, l=2, last-layer f, [con] at its node's position",
            ConfuOptions {
                n_expert: 1,
                top_k_expert: 1,
                future_layers: confu_moe::FutureLayers::LastLayer,
                con_position: confu_moe::ConPosition::Node,
                ..moe
            },
            3,
            2,
        ),
    ];
    for (label, options, layers, l) in cases {
        let fast = (ContemplateMode::Anchors, TttAttention::Efficient);
        let slow = (ContemplateMode::Naive, TttAttention::Naive);
        let (la, ga) = loss_and_grads(&options, layers, l, fast);
        let (lb, gb) = loss_and_grads(&options, layers, l, slow);
        let dl = (la - lb).abs() / lb.abs();
        println!("confu training {label}: loss {la:.6} vs naive {lb:.6} (rel {dl:.1e})");
        assert!(dl < 1e-5, "{label}: loss {la} vs {lb}");
        for ((name, a), (_, b)) in ga.iter().zip(&gb) {
            let norm: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
            let r = max_rel(a, b);
            println!("  d loss / d {name}: |g| = {norm:.3e}, max rel diff {r:.1e}");
            // One expert: the router's softmax is constant, so it has no gradient to get.
            let constant = options.n_expert == 1 && name.ends_with("router.weight");
            assert!(norm > 0.0 || constant, "{label}: {name} gets no gradient");
            assert!(r < 1e-4, "{label}: {name} gradient differs by {r}");
        }
    }
}

/// A tiny target and EAGLE-3 head in folders, as the CLI would load them.
fn folders(dir: &std::path::Path) -> (TargetModel<Cpu>, Eagle3Head<Cpu>) {
    let c = common::tiny_llama(VOCAB, 32, 64, 3, 4, 2, 128);
    let device = Default::default();
    let target_dir = dir.join("target");
    Llama::<Cpu>::init(&c, 3, &device)
        .unwrap()
        .export(&c, &target_dir)
        .unwrap();
    let target = TargetModel::<Cpu>::load(&target_dir, backend_cpu::ops(), &device).unwrap();
    let (dc, d2t, t2d) = head_config(&target);
    let head = Eagle3::<Cpu>::init(&dc, 5, &device);
    let draft_dir = dir.join("eagle3");
    export_official(&head, &dc, &d2t, &t2d, (Some(0), Some(1)), &draft_dir).unwrap();
    let head = Eagle3Head::load(&draft_dir, &target).unwrap();
    (target, head)
}

fn data() -> Packed {
    Packed {
        seq_len: 16,
        tokens: (0..17 * 6).map(|i| 2 + ((i * 7) % 31) as u32).collect(),
    }
}

fn settings(steps: usize) -> TrainSettings {
    TrainSettings {
        seq_len: 16,
        batch_size: 2,
        steps,
        lr: 1e-2,
        warmup_steps: 1,
        checkpoint_every: 2,
        ..Default::default()
    }
}

fn small() -> ConfuOptions {
    ConfuOptions {
        soft_prompt_len: 4,
        n_expert: 4,
        top_k_expert: 2,
        ..Default::default()
    }
}

fn params_of<B: Backend, M: Module<B>>(m: &M) -> Vec<Vec<f32>> {
    named_values(m, "").into_iter().map(|v| v.values).collect()
}

#[test]
fn training_moves_the_trained_parts_only_and_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (target, init) = folders(dir.path());
    let before = target_fingerprint(&target);
    let confu = ConfuSettings {
        ttt_steps: 2,
        anchor_every: 4,
        ..Default::default()
    };
    let full = train_confu(
        &target,
        &init,
        &small(),
        &settings(4),
        &confu,
        &data(),
        &dir.path().join("full"),
        false,
        |_, _, _| Control::Continue,
    )
    .unwrap();
    assert_eq!(target_fingerprint(&target), before, "the target changed");
    assert_ne!(params_of(&full.net.head), params_of(&init.net));
    let losses: Vec<f32> = full.log.steps.iter().map(|s| s.1).collect();
    println!("confu training: losses {losses:?}");
    assert!(losses.iter().all(|l| l.is_finite()));

    // Stopped after step 1, then resumed: the same curve and the same parameters.
    let out = dir.path().join("resumed");
    let run = |resume: bool, stop_at: usize| {
        train_confu(
            &target,
            &init,
            &small(),
            &settings(4),
            &confu,
            &data(),
            &out,
            resume,
            |step, _, _| {
                if step == stop_at {
                    Control::Stop
                } else {
                    Control::Continue
                }
            },
        )
        .unwrap()
    };
    run(false, 1);
    let resumed = run(true, usize::MAX);
    assert_eq!(resumed.log.steps, full.log.steps, "resumed curve differs");
    assert_eq!(params_of(&resumed.net), params_of(&full.net));

    // A frozen head (lr multiple 0) stays bit-identical while the soft prompt moves.
    let frozen_head = ConfuSettings {
        lr_scale: PartScales {
            head: 0.0,
            ..Default::default()
        },
        ..confu
    };
    let t = train_confu(
        &target,
        &init,
        &small(),
        &settings(2),
        &frozen_head,
        &data(),
        &dir.path().join("frozen-head"),
        false,
        |_, _, _| Control::Continue,
    )
    .unwrap();
    assert_eq!(params_of(&t.net.head), params_of(&init.net));
    let start = ConfuParams::<Cpu>::init_for_training(
        &small(),
        ConfuDims {
            target_hidden: 32,
            draft_hidden: 32,
            draft_kv_heads: init.config.shape.kv_heads,
        },
        &target.embed_tokens().to_host(),
        settings(2).seed,
        &Default::default(),
    )
    .unwrap();
    assert_ne!(
        t.net.confu.soft_prompt.val().to_host(),
        start.soft_prompt.val().to_host()
    );
}

#[test]
fn an_exported_confu_folder_loads_and_decodes_losslessly() {
    let dir = tempfile::tempdir().unwrap();
    let (target, init) = folders(dir.path());
    // With the learned slot gains, so that they are trained, saved, loaded and decoded with too.
    let options = ConfuOptions {
        future_slot_gain: true,
        ..small()
    };
    let trained = train_confu(
        &target,
        &init,
        &options,
        &settings(2),
        &ConfuSettings {
            ttt_steps: 2,
            ..Default::default()
        },
        &data(),
        &dir.path().join("run"),
        false,
        |_, _, _| Control::Continue,
    )
    .unwrap();
    // Settings a library caller passes are checked like a config file's.
    let bad = ConfuSettings {
        replication: 0,
        ..Default::default()
    };
    let e = train_confu(
        &target,
        &init,
        &small(),
        &settings(2),
        &bad,
        &data(),
        &dir.path().join("bad"),
        false,
        |_, _, _| Control::Continue,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("confu.replication"), "{e}");
    let gain = trained.net.confu.slot_gain.as_ref().expect("slot gain");
    assert!(
        gain.gains().0.iter().all(|&g| g != 1.0),
        "the slot gains did not train"
    );
    let out = dir.path().join("confu");
    trained.export(Some(0), Some(1), &out).unwrap();
    assert!(ConfuHead::<Cpu>::is_confu_folder(&out));
    let confu = ConfuHead::load(&out, &target).unwrap();
    // The loaded parameters are the trained ones.
    assert_eq!(
        params_of(confu.contemplator.params.as_ref()),
        params_of(&trained.net.confu)
    );
    let tree = TreeSettings {
        total_tokens: 8,
        depth: 3,
        top_k: 3,
    };
    let spec = Engine::with_mode(target.clone(), DraftMode::Confu { confu, tree }).unwrap();
    let vanilla = Engine::new(target.clone());
    let config = GenerationConfig {
        max_new_tokens: 20,
        ..Default::default()
    };
    for prompt in [vec![2u32, 9, 4, 17], vec![5, 5, 5, 5, 5, 30, 3]] {
        let want = vanilla.generate(&prompt, &config, |_| {}).unwrap();
        let got = spec.generate(&prompt, &config, |_| {}).unwrap();
        confu::greedy_rule::check_greedy(&target, &prompt, &want, &got).unwrap();
        assert!(got.rounds.iter().any(|r| r.contemplate_rows > 0));
    }
    println!("confu training: exported folder drafts losslessly");
}
