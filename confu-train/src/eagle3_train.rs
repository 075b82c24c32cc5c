//! Training an EAGLE-3 head for a frozen target (METHOD.md §6): target features and
//! distributions are computed by the target on the inference backend (no gradients), the head is
//! trained on burn's autodiff backend with the training-time test, AdamW (0.9, 0.95) and gradient
//! clipping, with the same checkpoint / exact-resume machinery as LM pretraining.

use confu_core::ToHost;
use std::path::Path;

use burn::backend::Autodiff;
use burn::grad_clipping::GradientClippingConfig;
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::{backend::Backend, Tensor, TensorData};
use confu_core::{Error, Result};
use confu_draft::{feature_layers, DraftConfig};
use confu_model::{LogitRows, Tap, TargetModel};
use serde::{Deserialize, Serialize};

use crate::eagle3::{draft_vocab_from_counts, TrainableEagle3, TttAttention, TttStep};
use crate::pretrain::{
    batch_indices, checkpoint_dir, learning_rate, load_checkpoint, save_checkpoint, Control,
    DevResult, Packed, TrainLog, TrainSettings,
};

/// EAGLE-3 training settings beyond the shared optimisation settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Eagle3Settings {
    /// Unrolled training-time-test steps K.
    pub ttt_steps: usize,
    /// Weight of step k is `decay^k`.
    pub decay: f64,
    /// Size of the draft vocabulary (chosen by token frequency in the training data).
    pub draft_vocab_size: usize,
}

impl Default for Eagle3Settings {
    fn default() -> Self {
        Self {
            ttt_steps: 7,
            decay: 0.8,
            draft_vocab_size: 32000,
        }
    }
}

/// The result of a training run: the head, its shape, its draft vocabulary and the log.
#[derive(Debug)]
pub struct TrainedEagle3<B: Backend> {
    pub head: TrainableEagle3<B>,
    pub config: DraftConfig,
    pub d2t: Vec<i64>,
    pub t2d: Vec<bool>,
    pub log: TrainLog,
}

impl<B: Backend> TrainedEagle3<B> {
    /// Export in the official EAGLE-3 layout.
    pub fn export(&self, bos: Option<u32>, eos: Option<u32>, dir: &Path) -> Result<()> {
        self.head
            .export(&self.config, &self.d2t, &self.t2d, bos, eos, dir)
    }
}

/// Features and restricted target logits of one sequence, computed by the frozen target.
struct TargetPass {
    taps: Vec<f32>,
    target: Vec<f32>,
    valid: Vec<bool>,
}

fn target_pass<B: Backend>(
    target: &TargetModel<B>,
    seq: &[u32],
    draft_ids: &[u32],
    in_draft: &[bool],
) -> Result<TargetPass> {
    let c = target.config();
    let taps: Vec<Tap> = feature_layers(c.num_hidden_layers)
        .map(Tap::LayerInput)
        .to_vec();
    let mut cache = target.new_cache(0, seq.len());
    let out = target.forward_causal(&mut cache, seq, LogitRows::All, &taps)?;
    let v = c.vocab_size;
    let logits: Vec<f32> = out.logits.expect("requested").to_host();
    let mut target_rows = Vec::with_capacity(seq.len() * draft_ids.len());
    let mut valid = Vec::with_capacity(seq.len());
    for row in logits.chunks(v) {
        target_rows.extend(draft_ids.iter().map(|&id| row[id as usize]));
        valid.push(in_draft[confu_core::sampling::argmax(row)]);
    }
    // Features of positions 0..T-1 (the last position has no next token to pair with).
    let n = seq.len() - 1;
    let feats: Vec<Vec<f32>> = out
        .taps
        .into_iter()
        .map(|t| t.narrow(0, 0, n).to_host())
        .collect();
    let d = c.hidden_size;
    let mut taps_flat = Vec::with_capacity(n * 3 * d);
    for j in 0..n {
        for f in &feats {
            taps_flat.extend_from_slice(&f[j * d..(j + 1) * d]);
        }
    }
    Ok(TargetPass {
        taps: taps_flat,
        target: target_rows,
        valid,
    })
}

/// The draft vocabulary as the trainer needs it: the target id of every draft id, and whether each
/// target id is in the draft vocabulary.
struct DraftVocab {
    draft_ids: Vec<u32>,
    in_draft: Vec<bool>,
}

impl DraftVocab {
    fn new(d2t: &[i64], t2d: &[bool]) -> Self {
        Self {
            draft_ids: d2t
                .iter()
                .enumerate()
                .map(|(i, &o)| (i as i64 + o) as u32)
                .collect(),
            in_draft: t2d.to_vec(),
        }
    }
}

/// One batch of equal-length sequences with the frozen target's features and distributions.
struct TttBatch<B: Backend> {
    taps: Tensor<B, 3>,
    target: Tensor<B, 3>,
    valid: Vec<Vec<bool>>,
    ids: Vec<Vec<u32>>,
}

impl<B: Backend> TttBatch<B> {
    fn new<T: Backend>(
        model: &TargetModel<T>,
        seqs: &[&[u32]],
        vocab: &DraftVocab,
        device: &B::Device,
    ) -> Result<Self> {
        let (b, n) = (seqs.len(), seqs[0].len());
        let d = model.config().hidden_size;
        let vd = vocab.draft_ids.len();
        let (mut taps, mut tgt, mut valid, mut ids) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for seq in seqs {
            let pass = target_pass(model, seq, &vocab.draft_ids, &vocab.in_draft)?;
            taps.extend(pass.taps);
            tgt.extend(pass.target);
            valid.push(pass.valid);
            ids.push(seq.to_vec());
        }
        Ok(Self {
            taps: Tensor::from_data(TensorData::new(taps, [b, n - 1, 3 * d]), device),
            target: Tensor::from_data(TensorData::new(tgt, [b, n, vd]), device),
            valid,
            ids,
        })
    }

    fn loss(
        self,
        head: &TrainableEagle3<B>,
        dc: &DraftConfig,
        embed: &Tensor<B, 2>,
        eagle: &Eagle3Settings,
    ) -> (Tensor<B, 1>, Vec<TttStep>) {
        head.ttt_loss(
            dc,
            embed,
            self.taps,
            &self.ids,
            self.target,
            &self.valid,
            eagle.ttt_steps,
            eagle.decay,
            &mut TttAttention::Efficient,
        )
    }
}

/// Dev evaluation of a trained head on `tokens` of one category (cut into sequences of
/// `seq_len + 1`): the training-time-test loss and top-1 agreement with the target of every
/// unrolled step; `loss`/`top1` of the result are those of step 0 (plain next-token drafting).
pub fn evaluate_eagle3_dev<B: Backend>(
    target: &TargetModel<B>,
    trained: &TrainedEagle3<B>,
    eagle: &Eagle3Settings,
    category: &str,
    tokens: &[u32],
    seq_len: usize,
) -> Result<DevResult> {
    let vocab = DraftVocab::new(&trained.d2t, &trained.t2d);
    let embed = target.embed_tokens().clone();
    let mut sums = vec![(0f64, 0f64, 0usize); eagle.ttt_steps];
    for seq in tokens.chunks_exact(seq_len + 1) {
        let batch = TttBatch::<B>::new(target, &[seq], &vocab, target.device())?;
        let (_, steps) = batch.loss(&trained.head, &trained.config, &embed, eagle);
        for (acc, s) in sums.iter_mut().zip(steps) {
            acc.0 += s.loss * s.count as f64;
            acc.1 += s.top1 * s.count as f64;
            acc.2 += s.count;
        }
    }
    let per_step: Vec<TttStep> = sums
        .into_iter()
        .map(|(l, a, n)| {
            let m = n.max(1) as f64;
            TttStep {
                loss: l / m,
                top1: a / m,
                count: n,
            }
        })
        .collect();
    Ok(DevResult {
        category: category.to_string(),
        tokens: per_step.first().map_or(0, |s| s.count),
        loss: per_step.first().map_or(f64::NAN, |s| s.loss),
        top1: per_step.first().map_or(0.0, |s| s.top1),
        per_step,
    })
}

/// Train (or resume) a head for `target` on `data`; returns the head, the draft vocabulary
/// (`d2t`, `t2d`) and the log.
#[allow(clippy::too_many_arguments)]
pub fn train_eagle3<B: Backend>(
    target: &TargetModel<B>,
    settings: &TrainSettings,
    eagle: &Eagle3Settings,
    data: &Packed,
    out: &Path,
    resume: bool,
    mut on_step: impl FnMut(usize, f32, f64) -> Control,
) -> Result<TrainedEagle3<B>> {
    if data.len() < settings.batch_size {
        return Err(Error::invalid(
            "corpus",
            format!("{} sequences", data.len()),
            format!("fewer than one batch of {} sequences", settings.batch_size),
        ));
    }
    if eagle.ttt_steps == 0 {
        return Err(Error::invalid("ttt-steps", 0, "must be >= 1"));
    }
    let c = target.config();
    let device = target.device().clone();
    let mut counts = vec![0u64; c.vocab_size];
    for &t in &data.tokens {
        counts[t as usize] += 1;
    }
    let mut dc = DraftConfig::for_target(c);
    dc.draft_vocab_size = eagle.draft_vocab_size.min(c.vocab_size);
    let (d2t, t2d) = draft_vocab_from_counts(&counts, dc.draft_vocab_size);
    let vocab = DraftVocab::new(&d2t, &t2d);

    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut head = TrainableEagle3::<Autodiff<B>>::init(&dc, settings.seed, &device);
    let mut optim = AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.95)
        .with_weight_decay(settings.weight_decay)
        .with_grad_clipping(Some(GradientClippingConfig::Norm(settings.grad_clip)))
        .init::<Autodiff<B>, TrainableEagle3<Autodiff<B>>>();
    let ckpt = checkpoint_dir(out);
    let mut log = TrainLog::default();
    let mut start = 0;
    if resume {
        let (h, o, l) = load_checkpoint::<B, _, _>(head, optim, &ckpt, &device)?;
        (head, optim, log) = (h, o, l);
        start = log.steps.last().map_or(0, |s| s.0 + 1);
    }
    let embed: Tensor<Autodiff<B>, 2> = Tensor::from_inner(target.embed_tokens().clone());
    let t0 = std::time::Instant::now();
    for step in start..settings.steps {
        let idx = batch_indices(data.len(), settings.batch_size, settings.seed, step);
        let seqs: Vec<&[u32]> = idx.iter().map(|&i| data.get(i)).collect();
        let batch = TttBatch::<Autodiff<B>>::new(target, &seqs, &vocab, &device)?;
        let (loss, _) = batch.loss(&head, &dc, &embed, eagle);
        let value: f32 = loss.clone().to_host()[0];
        if !value.is_finite() {
            return Err(Error::invalid(
                "training loss",
                value,
                format!("diverged at step {step}; lower train.lr"),
            ));
        }
        let lr = learning_rate(settings, step);
        let grads = GradientsParams::from_grads(loss.backward(), &head);
        head = optim.step(lr, head, grads);
        log.steps.push((step, value, lr));
        let last = step + 1 == settings.steps;
        let stop = on_step(step, value, lr) == Control::Stop;
        if (step + 1) % settings.checkpoint_every == 0 || last || stop {
            save_checkpoint::<B, _, _>(&head, &optim, &log, &ckpt)?;
        }
        if stop {
            break;
        }
    }
    log.wall_s += t0.elapsed().as_secs_f64();
    Ok(TrainedEagle3 {
        head: head.valid(),
        config: dc,
        d2t,
        t2d,
        log,
    })
}
