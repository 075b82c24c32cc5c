//! Training an EAGLE-3 head for a frozen target (METHOD.md §6): the frozen target computes the
//! features and distributions of each batch on the inference backend, and they move to the
//! autodiff backend as tensors (no host round trip); the head (`confu_draft::Eagle3`, the module
//! decoding uses) is trained with the training-time test through the shared loop
//! ([`crate::trainer::train`]).

use std::path::Path;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::tensor::{backend::Backend, Tensor};
use confu_core::{Error, Result};
use confu_draft::{export_official, DraftConfig, Eagle3, Eagle3Head};
use confu_model::naming::Copied;
use confu_model::TargetModel;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{fingerprint_of, module_fingerprint, target_fingerprint, Fingerprint};
use crate::config_file::{in_range, positive, Invalid, Validate};
use crate::eagle3::{draft_vocab_from_counts, ttt_loss, StepTotals, TttAttention, TttStep};
use crate::pretrain::{batch_indices, Packed};
use crate::trainer::{train, Control, DevResult, TrainLog, TrainSettings};
use crate::ttt_batch::{TttBatch, VocabMap};

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

/// The EAGLE-3 loss of one batch.
impl<B: Backend> TttBatch<B> {
    fn eagle3_loss(
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
    let vocab = VocabMap::new(&trained.d2t, &trained.t2d);
    let embed = target.embed_tokens().clone();
    let mut totals = StepTotals::default();
    for seq in tokens.chunks_exact(seq_len + 1) {
        let batch = TttBatch::<B>::new(target, &[seq], &vocab, false, |t| t)?;
        let (_, steps) = batch.eagle3_loss(&trained.head, &trained.config, &embed, eagle);
        totals.add(&steps);
    }
    Ok(DevResult::from_steps(category, totals.means(), Vec::new()))
}

/// Train (or resume) a head for `target` on `data` — a new one, or one continued from `init`
/// (whose shape and draft vocabulary are kept; `eagle.draft_vocab_size` is then unused); returns
/// the head, the draft vocabulary (`d2t`, `t2d`) and the log.
#[allow(clippy::too_many_arguments)]
pub fn train_eagle3<B: Backend>(
    target: &TargetModel<B>,
    init: Option<&Eagle3Head<B>>,
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
    let (head, dc, d2t, t2d, embed, init_print) = match init {
        // Continue a trained head: its shape and draft vocabulary stay.
        Some(h) => {
            let (d2t, t2d) = h.vocab.offsets_and_mask(c.vocab_size);
            let own = h.net.embed_tokens.is_some();
            let head = Eagle3::<Autodiff<B>>::from_values(
                &h.config,
                own,
                &mut Copied::of(&h.net),
                &device,
            )?;
            let print = module_fingerprint(&d2t, &h.net);
            (
                head,
                h.config.clone(),
                d2t,
                t2d,
                h.embed_tokens.clone(),
                print,
            )
        }
        None => {
            let mut counts = vec![0u64; c.vocab_size];
            for &t in &data.tokens {
                counts[t as usize] += 1;
            }
            let mut dc = DraftConfig::for_target(c);
            dc.draft_vocab_size = eagle.draft_vocab_size.min(c.vocab_size);
            let (d2t, t2d) = draft_vocab_from_counts(&counts, dc.draft_vocab_size);
            let head = Eagle3::<Autodiff<B>>::init(&dc, settings.seed, &device);
            (head, dc, d2t, t2d, target.embed_tokens(), "none".into())
        }
    };
    let vocab = VocabMap::new(&d2t, &t2d);
    let embed: Tensor<Autodiff<B>, 2> = Tensor::from_inner(embed);
    let loss = |head: &Eagle3<Autodiff<B>>, step: usize| {
        let idx = batch_indices(data.len(), settings.batch_size, settings.seed, step);
        let seqs: Vec<&[u32]> = idx.iter().map(|&i| data.get(i)).collect();
        let batch = TttBatch::<Autodiff<B>>::new(target, &seqs, &vocab, false, Tensor::from_inner)?;
        Ok(batch.eagle3_loss(head, &dc, &embed, eagle).0)
    };
    let fingerprint = Fingerprint::from([
        ("target".to_string(), target_fingerprint(target)),
        ("train".to_string(), settings.fingerprint()),
        ("eagle3".to_string(), fingerprint_of(eagle)),
        ("data".to_string(), data.fingerprint()),
        ("init".to_string(), init_print),
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
