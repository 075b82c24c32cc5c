//! A run killed after a checkpoint and resumed continues the same loss curve as an uninterrupted
//! run (same data order, same optimizer state), and the loss goes down.

mod common;

use backend_cpu::Cpu;
use confu_model::ModelConfig;
use confu_train::pretrain::{
    batch_indices, learning_rate, pretrain, Control, Packed, TrainSettings,
};

fn config() -> ModelConfig {
    common::tiny_llama(30, 16, 32, 2, 2, 1, 32)
}

fn data() -> Packed {
    Packed {
        seq_len: 8,
        tokens: (0..9 * 12).map(|i| 2 + ((i * 7) % 13) as u32).collect(),
    }
}

fn settings() -> TrainSettings {
    TrainSettings {
        seq_len: 8,
        batch_size: 4,
        steps: 8,
        lr: 1e-2,
        warmup_steps: 2,
        checkpoint_every: 3,
        ..Default::default()
    }
}

#[test]
fn killed_and_resumed_run_continues_the_same_curve() {
    let (c, s, d) = (config(), settings(), data());
    let device = Default::default();
    let full_dir = tempfile::tempdir().unwrap();
    let (_, full) = pretrain::<Cpu>(&c, &s, &d, full_dir.path(), false, &device, |_, _, _| {
        Control::Continue
    })
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    // Stopped after step 4; the run leaves the checkpoint a kill would have left at that point.
    let (_, first) = pretrain::<Cpu>(&c, &s, &d, dir.path(), false, &device, |step, _, _| {
        if step == 4 {
            Control::Stop
        } else {
            Control::Continue
        }
    })
    .unwrap();
    assert_eq!(first.steps.len(), 5);
    let (_, resumed) = pretrain::<Cpu>(&c, &s, &d, dir.path(), true, &device, |_, _, _| {
        Control::Continue
    })
    .unwrap();
    let losses =
        |l: &confu_train::pretrain::TrainLog| l.steps.iter().map(|s| s.1).collect::<Vec<_>>();
    println!("resume: uninterrupted {:?}", losses(&full));
    println!("resume: killed+resumed {:?}", losses(&resumed));
    assert_eq!(resumed.steps.len(), s.steps);
    assert_eq!(losses(&resumed), losses(&full), "the resumed curve differs");
    assert!(losses(&full)[7] < losses(&full)[0], "loss did not go down");
}

#[test]
fn schedule_and_data_order_are_deterministic() {
    let s = TrainSettings {
        steps: 100,
        warmup_steps: 10,
        lr: 1.0,
        min_lr_ratio: 0.1,
        ..Default::default()
    };
    assert!((learning_rate(&s, 0) - 0.1).abs() < 1e-12);
    assert!((learning_rate(&s, 9) - 1.0).abs() < 1e-12);
    assert!((learning_rate(&s, 99) - 0.1).abs() < 1e-3);
    assert!(learning_rate(&s, 50) < learning_rate(&s, 20));
    assert_eq!(batch_indices(20, 4, 3, 7), batch_indices(20, 4, 3, 7));
    // One epoch visits every sequence once.
    let mut seen: Vec<usize> = (0..5).flat_map(|st| batch_indices(20, 4, 3, st)).collect();
    seen.sort();
    assert_eq!(seen, (0..20).collect::<Vec<_>>());
}
