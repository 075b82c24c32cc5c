//! Checkpoints under interruption: a save stopped after each of its file-system steps (as a kill
//! would leave it) still resumes from the newest complete checkpoint, and the next save works; a
//! checkpoint made from other settings or with a damaged file is refused, never trained on; and
//! `confu train lm` killed with SIGKILL at several moments resumes to the uninterrupted curve.

mod common;

use std::path::Path;

use backend_cpu::Cpu;
use burn::backend::Autodiff;
use burn::optim::AdamWConfig;
use confu_model::Llama;
use confu_train::checkpoint::{
    load_checkpoint, save_checkpoint, save_checkpoint_until, Fingerprint,
};
use confu_train::trainer::TrainLog;

type Ad = Autodiff<Cpu>;

fn log(step: usize) -> TrainLog {
    TrainLog {
        steps: (0..=step)
            .map(|s| (s, 1.0 / (s + 1) as f32, 1e-3))
            .collect(),
        ..Default::default()
    }
}

fn fp(v: &str) -> Fingerprint {
    Fingerprint::from([("train".to_string(), v.to_string())])
}

fn resumed_step(ckpt: &Path, fingerprint: &Fingerprint) -> confu_core::Result<usize> {
    let c = common::tiny_llama(20, 8, 16, 1, 2, 1, 16);
    let model = Llama::<Ad>::init(&c, 1, &Default::default()).unwrap();
    let optim = AdamWConfig::new().init::<Ad, Llama<Ad>>();
    let (_, _, l) =
        load_checkpoint::<Cpu, _, _>(model, optim, ckpt, fingerprint, &Default::default())?;
    Ok(l.steps.last().unwrap().0)
}

#[test]
fn a_save_interrupted_at_any_step_leaves_a_resumable_checkpoint() {
    let c = common::tiny_llama(20, 8, 16, 1, 2, 1, 16);
    let model = Llama::<Ad>::init(&c, 1, &Default::default()).unwrap();
    let optim = AdamWConfig::new().init::<Ad, Llama<Ad>>();
    let f = fp("a");
    for stages in 0..=8 {
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("checkpoint");
        save_checkpoint::<Cpu, _, _>(&model, &optim, &log(2), &f, &ckpt).unwrap();
        // A first interrupted save, then a second one interrupted at the same step (the state a
        // crash loop leaves), then resume.
        save_checkpoint_until::<Cpu, _, _>(&model, &optim, &log(5), &f, &ckpt, stages).unwrap();
        save_checkpoint_until::<Cpu, _, _>(&model, &optim, &log(5), &f, &ckpt, stages).unwrap();
        let step = resumed_step(&ckpt, &f).unwrap();
        let want = if stages >= 4 { 5 } else { 2 };
        assert_eq!(step, want, "interrupted after {stages} steps");
        // The next complete save works and is what resumes.
        save_checkpoint::<Cpu, _, _>(&model, &optim, &log(8), &f, &ckpt).unwrap();
        assert_eq!(resumed_step(&ckpt, &f).unwrap(), 8, "after {stages}");
        assert!(!ckpt.with_extension("old").exists() && !ckpt.with_extension("tmp").exists());
    }

    // Another fingerprint is refused, naming what differs.
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("checkpoint");
    save_checkpoint::<Cpu, _, _>(&model, &optim, &log(3), &f, &ckpt).unwrap();
    let e = resumed_step(&ckpt, &fp("b")).unwrap_err().to_string();
    assert!(e.contains("train") && e.contains("different"), "{e}");
    // A flipped bit in the weights is found, not trained on.
    let bin = ckpt.join("model.bin");
    let mut bytes = std::fs::read(&bin).unwrap();
    let i = bytes.len() / 2;
    bytes[i] ^= 1;
    std::fs::write(&bin, bytes).unwrap();
    let e = resumed_step(&ckpt, &f).unwrap_err().to_string();
    assert!(e.contains("model.bin") && e.contains("damaged"), "{e}");
}
