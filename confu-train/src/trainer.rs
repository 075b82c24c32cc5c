//! The one training loop every trainer calls: AdamW (β = 0.9, 0.95) with linear warm-up and cosine
//! decay, gradient-norm clipping, a divergence check, periodic atomic checkpoints, exact resume,
//! a stop request from the caller, and the step log. A trainer brings only its trainable module
//! and its loss function (`train lm`, `train eagle3`, and next ConFu).
//!
//! Resume is exact: a trainer's batch for a step is a pure function of the seed and the step, and
//! a checkpoint holds the module, the optimizer state and the log, so a resumed run continues the
//! very same loss curve.

use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use burn::grad_clipping::GradientClippingConfig;
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;
use confu_core::{Error, Result, ToHost};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{load_checkpoint, save_checkpoint, Fingerprint};
use crate::config_file::{check, in_range, positive, Invalid, Validate};

/// Optimisation settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainSettings {
    pub seq_len: usize,
    pub batch_size: usize,
    pub steps: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    /// The cosine decays to `lr * min_lr_ratio`.
    pub min_lr_ratio: f64,
    pub weight_decay: f32,
    pub grad_clip: f32,
    pub seed: u64,
    pub checkpoint_every: usize,
    /// Tokens per dev category used by the evaluation.
    pub dev_tokens: usize,
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self {
            seq_len: 128,
            batch_size: 16,
            steps: 1000,
            lr: 3e-3,
            warmup_steps: 50,
            min_lr_ratio: 0.1,
            weight_decay: 0.01,
            grad_clip: 1.0,
            seed: 0,
            checkpoint_every: 100,
            dev_tokens: 8192,
        }
    }
}

impl Validate for TrainSettings {
    fn validate(&self) -> std::result::Result<(), Invalid> {
        positive(&[
            ("train.seq_len", self.seq_len),
            ("train.batch_size", self.batch_size),
            ("train.steps", self.steps),
            ("train.checkpoint_every", self.checkpoint_every),
        ])?;
        for (field, v, max) in [
            ("train.seq_len", self.seq_len, 1 << 20),
            ("train.batch_size", self.batch_size, 1 << 16),
        ] {
            check(v <= max, field, format!("{v} exceeds the limit of {max}"))?;
        }
        in_range("train.lr", self.lr, 0.0, 10.0, true)?;
        in_range("train.min_lr_ratio", self.min_lr_ratio, 0.0, 1.0, false)?;
        in_range(
            "train.weight_decay",
            self.weight_decay as f64,
            0.0,
            1e3,
            false,
        )?;
        in_range(
            "train.grad_clip",
            self.grad_clip as f64,
            0.0,
            f64::MAX,
            true,
        )?;
        check(
            self.warmup_steps <= self.steps,
            "train.warmup_steps",
            format!("{} exceeds train.steps {}", self.warmup_steps, self.steps),
        )
    }
}

/// Learning rate at `step`: linear warm-up, then cosine decay to `lr * min_lr_ratio`.
pub fn learning_rate(t: &TrainSettings, step: usize) -> f64 {
    if step < t.warmup_steps {
        return t.lr * (step + 1) as f64 / t.warmup_steps as f64;
    }
    let span = (t.steps - t.warmup_steps).max(1) as f64;
    let progress = ((step - t.warmup_steps) as f64 / span).min(1.0);
    let min = t.lr * t.min_lr_ratio;
    min + 0.5 * (t.lr - min) * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Progress of a run, as written to `log.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainLog {
    /// `(step, loss, learning rate)` of every step run so far (resumed runs keep the earlier ones).
    pub steps: Vec<(usize, f32, f64)>,
    /// Dev evaluation per category at the end.
    pub dev: Vec<DevResult>,
    pub wall_s: f64,
}

/// Dev loss and next-token top-1 accuracy of one category.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DevResult {
    pub category: String,
    pub tokens: usize,
    pub loss: f64,
    pub top1: f64,
    /// Draft heads: the same for every unrolled training-time-test step (step 0 first).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_step: Vec<crate::eagle3::TttStep>,
    /// ConFu heads: the same with the future vector zeroed, so the gain from `f` shows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_step_without_future: Vec<crate::eagle3::TttStep>,
}

impl DevResult {
    /// A draft head's result from its per-step statistics: `loss`/`top1` are step 0's (plain
    /// next-token drafting).
    pub fn from_steps(
        category: &str,
        per_step: Vec<crate::eagle3::TttStep>,
        per_step_without_future: Vec<crate::eagle3::TttStep>,
    ) -> Self {
        Self {
            category: category.to_string(),
            tokens: per_step.first().map_or(0, |s| s.count),
            loss: per_step.first().map_or(f64::NAN, |s| s.loss),
            top1: per_step.first().map_or(0.0, |s| s.top1),
            per_step,
            per_step_without_future,
        }
    }
}

/// What a step callback wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

impl TrainSettings {
    /// The settings a resumed run must share with its checkpoint: all but how long it runs and
    /// how often it saves and reports.
    pub fn fingerprint(&self) -> String {
        let mut v = serde_json::to_value(self).expect("json");
        for k in ["steps", "checkpoint_every", "dev_tokens"] {
            v.as_object_mut().expect("object").remove(k);
        }
        crate::checkpoint::fingerprint_of(&v)
    }
}

/// A module the loop trains, split into parameter groups that step at their own multiple of the
/// learning rate (one AdamW state per parameter, so the groups share one optimizer).
pub trait Trainable<B: AutodiffBackend>: AutodiffModule<B> {
    /// The step's gradients as `(learning-rate multiple, gradients)` groups; a multiple of 0
    /// freezes its group. The default: the whole module at 1.
    fn param_groups(&self, grads: &mut B::Gradients) -> Vec<(f64, GradientsParams)> {
        vec![(1.0, GradientsParams::from_module(grads, self))]
    }
}

impl<B: Backend> Trainable<Autodiff<B>> for confu_model::Llama<Autodiff<B>> {}
impl<B: Backend> Trainable<Autodiff<B>> for confu_draft::Eagle3<Autodiff<B>> {}

/// Checkpoint files inside `out/checkpoint/`.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    out.join("checkpoint")
}

/// Train `module` (or resume it from `out/checkpoint`, which must have been made from
/// `fingerprint`) for `settings.steps` steps.
///
/// `loss(module, step)` returns the step's scalar loss (its batch chosen from the step alone);
/// `on_step(step, loss, lr)` is called after every step and may stop the run (the checkpoint
/// written then allows an exact resume). Returns the trained module (still on the autodiff
/// backend; `valid()` gives its inference form) and the log.
#[allow(clippy::too_many_arguments)]
pub fn train<B, M>(
    module: M,
    settings: &TrainSettings,
    fingerprint: &Fingerprint,
    out: &Path,
    resume: bool,
    device: &B::Device,
    mut loss: impl FnMut(&M, usize) -> Result<Tensor<Autodiff<B>, 1>>,
    mut on_step: impl FnMut(usize, f32, f64) -> Control,
) -> Result<(M, TrainLog)>
where
    B: Backend,
    M: Trainable<Autodiff<B>>,
{
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut module = module;
    let mut optim = AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.95)
        .with_weight_decay(settings.weight_decay)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(settings.grad_clip)))
        .init::<Autodiff<B>, M>();
    let ckpt = checkpoint_dir(out);
    let mut log = TrainLog::default();
    let mut start = 0;
    if resume {
        let (m, o, l) = load_checkpoint::<B, _, _>(module, optim, &ckpt, fingerprint, device)?;
        (module, optim, log) = (m, o, l);
        start = log.steps.last().map_or(0, |s| s.0 + 1);
    }
    let t0 = std::time::Instant::now();
    for step in start..settings.steps {
        let value_t = loss(&module, step)?;
        let value: f32 = value_t.clone().to_host()[0];
        if !value.is_finite() {
            return Err(Error::invalid(
                "training loss",
                value,
                format!("diverged at step {step}; lower train.lr"),
            ));
        }
        let lr = learning_rate(settings, step);
        let mut grads = value_t.backward();
        for (scale, group) in module.param_groups(&mut grads) {
            if scale > 0.0 {
                module = optim.step(lr * scale, module, group);
            }
        }
        log.steps.push((step, value, lr));
        let last = step + 1 == settings.steps;
        let stop = on_step(step, value, lr) == Control::Stop;
        if (step + 1) % settings.checkpoint_every == 0 || last || stop {
            save_checkpoint::<B, _, _>(&module, &optim, &log, fingerprint, &ckpt)?;
        }
        if stop {
            break;
        }
    }
    log.wall_s += t0.elapsed().as_secs_f64();
    Ok((module, log))
}
