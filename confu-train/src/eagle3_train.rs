//! Training an EAGLE-3 head for a frozen target (METHOD.md §6): the frozen target computes the
//! features and distributions of each batch on the inference backend, and they move to the
//! autodiff backend as tensors (no host round trip); the head (`confu_draft::Eagle3`, the module
//! decoding uses) is trained with the training-time test through the shared loop
//! ([`crate::trainer::train`]).

use std::path::Path;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::tensor::{backend::Backend, Tensor};
use confu_core::{index_tensor, Error, Result};
use confu_draft::{export_official, DraftConfig, Eagle3};
use confu_model::{feature_taps, LogitRows, TargetModel};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{fingerprint_of, target_fingerprint, Fingerprint};
use crate::config_file::{in_range, positive, Invalid, Validate};
use crate::eagle3::{draft_vocab_from_counts, ttt_loss, TttAttention, TttStep};
use crate::pretrain::{batch_indices, Packed};
use crate::trainer::{train, Control, DevResult, TrainLog, TrainSettings};

/// EAGLE-3 training settings beyond the shared optimisation settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
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

impl Validate for Eagle3Settings {
    fn validate(&self) -> std::result::Result<(), Invalid> {
        positive(&[
            ("eagle3.ttt_steps", self.ttt_steps),
            ("eagle3.draft_vocab_size", self.draft_vocab_size),
        ])?;
        in_range("eagle3.decay", self.decay, 0.0, 1.0, true)
    }
}

/// The result of a training run: the head, its shape, its draft vocabulary and the log.
#[derive(Debug)]
pub struct TrainedEagle3<B: Backend> {
    pub head: Eagle3<B>,
    pub config: DraftConfig,
    pub d2t: Vec<i64>,
    pub t2d: Vec<bool>,
    pub log: TrainLog,
}

impl<B: Backend> TrainedEagle3<B> {
    /// Export in the official EAGLE-3 layout.
    pub fn export(&self, bos: Option<u32>, eos: Option<u32>, dir: &Path) -> Result<()> {
        export_official(
            &self.head,
            &self.config,
            &self.d2t,
            &self.t2d,
            (bos, eos),
            dir,
        )
    }
}

/// Features `[n - 1, 3d]`, target logits restricted to the draft vocabulary `[n, vd]` and the
/// validity of each position, for one sequence, computed by the frozen target.
fn target_pass<B: Backend>(
    target: &TargetModel<B>,
    seq: &[u32],
    vocab: &DraftVocab,
) -> Result<(Tensor<B, 2>, Tensor<B, 2>, Vec<bool>)> {
    let c = target.config();
    let mut cache = target.new_cache(0, seq.len());
    let out = target.forward_causal(
        &mut cache,
        seq,
        LogitRows::All,
        &feature_taps(c.num_hidden_layers),
    )?;
    let logits = out.logits.expect("requested");
    // Only the argmax per position comes to the host: whether it lies in the draft vocabulary.
    let argmax: Vec<i64> = logits
        .clone()
        .argmax(1)
        .into_data()
        .convert::<i64>()
        .to_vec()
        .expect("int data");
    let valid = argmax.iter().map(|&a| vocab.in_draft[a as usize]).collect();
    let restricted = logits.select(1, index_tensor(&vocab.draft_ids, target.device()));
    // Features of positions 0..T-1 (the last position has no next token to pair with).
    let n = seq.len() - 1;
    let taps = Tensor::cat(out.taps, 1).narrow(0, 0, n);
    Ok((taps, restricted, valid))
}

/// The draft vocabulary as the trainer needs it: the target id of every draft id, and whether each
/// target id is in the draft vocabulary.
struct DraftVocab {
    draft_ids: Vec<usize>,
    in_draft: Vec<bool>,
}

impl DraftVocab {
    fn new(d2t: &[i64], t2d: &[bool]) -> Self {
        Self {
            draft_ids: d2t
                .iter()
                .enumerate()
                .map(|(i, &o)| (i as i64 + o) as usize)
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
    /// The frozen target's pass over `seqs` on the inference backend `T`, moved to `B` by `lift`.
    fn new<T: Backend>(
        model: &TargetModel<T>,
        seqs: &[&[u32]],
        vocab: &DraftVocab,
        lift: impl Fn(Tensor<T, 3>) -> Tensor<B, 3>,
    ) -> Result<Self> {
        let (mut taps, mut tgt, mut valid, mut ids) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for seq in seqs {
            let (t, r, v) = target_pass(model, seq, vocab)?;
            taps.push(t.unsqueeze::<3>());
            tgt.push(r.unsqueeze::<3>());
            valid.push(v);
            ids.push(seq.to_vec());
        }
        Ok(Self {
            taps: lift(Tensor::cat(taps, 0)),
            target: lift(Tensor::cat(tgt, 0)),
            valid,
            ids,
        })
    }

    fn loss(
        self,
        head: &Eagle3<B>,
        dc: &DraftConfig,
        embed: &Tensor<B, 2>,
        eagle: &Eagle3Settings,
    ) -> (Tensor<B, 1>, Vec<TttStep>) {
        ttt_loss(
            head,
            dc,
            embed,
            self.taps,
            &self.ids,
            self.target,
            &self.valid,
            eagle.ttt_steps,
            eagle.decay,
            TttAttention::Efficient,
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
        let batch = TttBatch::<B>::new(target, &[seq], &vocab, |t| t)?;
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
    on_step: impl FnMut(usize, f32, f64) -> Control,
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

    let head = Eagle3::<Autodiff<B>>::init(&dc, settings.seed, &device);
    let embed: Tensor<Autodiff<B>, 2> = Tensor::from_inner(target.embed_tokens());
    let loss = |head: &Eagle3<Autodiff<B>>, step: usize| {
        let idx = batch_indices(data.len(), settings.batch_size, settings.seed, step);
        let seqs: Vec<&[u32]> = idx.iter().map(|&i| data.get(i)).collect();
        let batch = TttBatch::<Autodiff<B>>::new(target, &seqs, &vocab, Tensor::from_inner)?;
        Ok(batch.loss(head, &dc, &embed, eagle).0)
    };
    let fingerprint = Fingerprint::from([
        ("target".to_string(), target_fingerprint(target)),
        ("train".to_string(), settings.fingerprint()),
        ("eagle3".to_string(), fingerprint_of(eagle)),
        ("data".to_string(), data.fingerprint()),
    ]);
    let (head, log) = train(
        head,
        settings,
        &fingerprint,
        out,
        resume,
        &device,
        loss,
        on_step,
    )?;
    Ok(TrainedEagle3 {
        head: head.valid(),
        config: dc,
        d2t,
        t2d,
        log,
    })
}
