//! A tiny EAGLE-3 training run against a frozen target: the loss goes down, a stopped run resumes
//! onto the same loss curve, and the exported head loads and drafts for the target.

mod common;

use std::sync::Arc;

use backend_cpu::Cpu;
use confu::{DraftMode, Engine, GenerationConfig};
use confu_draft::{Eagle3Head, TreeSettings};
use confu_model::TargetModel;
use confu_train::eagle3_train::{train_eagle3, Eagle3Settings};
use confu_train::pretrain::{Control, Packed, TrainSettings};

#[test]
fn eagle3_training_runs_resumes_and_exports() {
    let c = common::tiny_llama(30, 16, 32, 4, 2, 1, 64);
    let device = Default::default();
    let dir = tempfile::tempdir().unwrap();
    confu_model::Llama::<Cpu>::init(&c, 1, &device)
        .unwrap()
        .export(&c, &dir.path().join("target"))
        .unwrap();
    let target =
        TargetModel::<Cpu>::load(&dir.path().join("target"), backend_cpu::ops(), &device).unwrap();
    let data = Packed {
        seq_len: 10,
        tokens: (0..11 * 16).map(|i| 2 + ((i * 7) % 17) as u32).collect(),
    };
    let settings = TrainSettings {
        seq_len: 10,
        batch_size: 4,
        steps: 10,
        lr: 1e-2,
        warmup_steps: 2,
        checkpoint_every: 4,
        grad_clip: 0.5,
        ..Default::default()
    };
    let eagle = Eagle3Settings {
        ttt_steps: 3,
        decay: 0.8,
        draft_vocab_size: 20,
    };

    let full = train_eagle3(
        &target,
        None,
        &settings,
        &eagle,
        &data,
        &dir.path().join("a"),
        false,
        |_, _, _| Control::Continue,
    )
    .unwrap()
    .log;
    let losses =
        |l: &confu_train::pretrain::TrainLog| l.steps.iter().map(|s| s.1).collect::<Vec<_>>();
    train_eagle3(
        &target,
        None,
        &settings,
        &eagle,
        &data,
        &dir.path().join("b"),
        false,
        |s, _, _| {
            if s == 5 {
                Control::Stop
            } else {
                Control::Continue
            }
        },
    )
    .unwrap();
    let trained = train_eagle3(
        &target,
        None,
        &settings,
        &eagle,
        &data,
        &dir.path().join("b"),
        true,
        |_, _, _| Control::Continue,
    )
    .unwrap();
    let resumed = &trained.log;
    println!("train eagle3 tiny: losses {:?}", losses(&full));
    assert_eq!(losses(resumed), losses(&full), "resumed curve differs");
    assert!(losses(&full)[9] < losses(&full)[0], "loss did not go down");

    let out = dir.path().join("head");
    trained.export(Some(0), Some(1), &out).unwrap();
    let loaded = Arc::new(Eagle3Head::load(&out, &target).unwrap());
    let engine = Engine::with_mode(
        target.clone(),
        DraftMode::Eagle3 {
            head: loaded,
            tree: TreeSettings {
                total_tokens: 8,
                depth: 3,
                top_k: 2,
            },
        },
    )
    .unwrap();
    let prompt: Vec<u32> = data.get(0)[..6].to_vec();
    let config = GenerationConfig {
        max_new_tokens: 12,
        ..Default::default()
    };
    let spec = engine.generate(&prompt, &config, |_| {}).unwrap();
    let vanilla = Engine::new(target)
        .generate(&prompt, &config, |_| {})
        .unwrap();
    assert_eq!(spec.generated_ids, vanilla.generated_ids);
}
