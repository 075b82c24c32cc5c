//! Training a ConFu head (METHOD.md §6) through the shared loop: the draft head starts from a
//! trained EAGLE-3 head, the soft prompt and both MoEs from the target's token embeddings; the
//! target stays frozen while gradients flow through it into the soft prompt and the contemplate
//! embeddings. Exported as a ConFu draft folder (official EAGLE-3 files + `confu.safetensors` +
//! `confu.json`) that `confu generate --draft` loads.

use std::path::Path;

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::{backend::Backend, Tensor};
use confu_core::{Error, Result, ToHost};
use confu_draft::{export_official, DraftConfig, Eagle3, Eagle3Head};
use confu_model::naming::Copied;
use confu_model::TargetModel;
use confu_moe::{ConfuDims, ConfuOptions, ConfuParams};
use serde::{Deserialize, Serialize};

use crate::anchors::{anchor_count, sample_anchors, AnchorSampling};
use crate::checkpoint::{fingerprint_of, module_fingerprint, target_fingerprint, Fingerprint};
use crate::config_file::{check, in_range, positive, Invalid, Validate};
use crate::confu_loss::{ConfuForward, ConfuNet, FutureSource, PartScales};
use crate::contemplate_pass::{frozen_on_autodiff, ContemplateMode};
use crate::eagle3::StepTotals;
use crate::pretrain::{batch_indices, Packed};
use crate::trainer::{train, Control, DevResult, TrainLog, TrainSettings, Trainable};
use crate::ttt_attention::TttAttention;
use crate::ttt_batch::{TttBatch, VocabMap};

/// ConFu training settings beyond the shared optimisation settings; the model's own options
/// (`s`, `n_expert`, …) are a [`ConfuOptions`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfuSettings {
    /// Unrolled training-time-test steps K.
    pub ttt_steps: usize,
    /// Weight of step k is `decay^k`.
    pub decay: f64,
    /// Anchors per sequence of N tokens: `N / anchor_every` (METHOD.md: N/8).
    pub anchor_every: usize,
    pub anchor_sampling: AnchorSampling,
    /// Future-prediction replication `l`: rows `a .. a+l−1` see anchor `a`'s slot (1 = none).
    pub replication: usize,
    /// Learning-rate multiple per part; 0 freezes it.
    pub lr_scale: PartScales,
    /// Where `f` comes from: `contemplate` (the method) or the diagnostic
    /// `oracle_next_features`.
    pub future: FutureSource,
}

impl Default for ConfuSettings {
    fn default() -> Self {
        Self {
            ttt_steps: 7,
            decay: 0.8,
            anchor_every: 8,
            anchor_sampling: AnchorSampling::Uniform,
            replication: 4,
            lr_scale: PartScales::default(),
            future: FutureSource::Contemplate,
        }
    }
}

impl Validate for ConfuSettings {
    fn validate(&self) -> std::result::Result<(), Invalid> {
        positive(&[
            ("confu.ttt_steps", self.ttt_steps),
            ("confu.anchor_every", self.anchor_every),
            ("confu.replication", self.replication),
        ])?;
        in_range("confu.decay", self.decay, 0.0, 1.0, true)?;
        let s = &self.lr_scale;
        for (field, v) in [
            ("confu.lr_scale.head", s.head),
            ("confu.lr_scale.soft_prompt", s.soft_prompt),
            ("confu.lr_scale.contemplate", s.contemplate),
            ("confu.lr_scale.future", s.future),
            ("confu.lr_scale.slot_gain", s.slot_gain),
        ] {
            in_range(field, v, 0.0, 1e3, false)?;
        }
        check(
            s.head + s.soft_prompt + s.contemplate + s.future > 0.0,
            "confu.lr_scale",
            "every part is frozen: nothing would train",
        )
    }
}

impl<B: Backend> Trainable<Autodiff<B>> for ConfuNet<Autodiff<B>> {
    fn param_groups(
        &self,
        grads: &mut <Autodiff<B> as burn::tensor::backend::AutodiffBackend>::Gradients,
    ) -> Vec<(f64, GradientsParams)> {
        let s = self.scales;
        let mut groups = vec![
            (s.head, GradientsParams::from_module(grads, &self.head)),
            (
                s.soft_prompt,
                GradientsParams::from_module(grads, &self.confu.soft_prompt),
            ),
            (
                s.contemplate,
                GradientsParams::from_module(grads, &self.confu.contemplate),
            ),
            (
                s.future,
                GradientsParams::from_module(grads, &self.confu.future),
            ),
        ];
        if let Some(gain) = &self.confu.slot_gain {
            groups.push((s.slot_gain, GradientsParams::from_module(grads, gain)));
        }
        groups
    }
}

/// A trained ConFu head.
#[derive(Debug)]
pub struct TrainedConfu<B: Backend> {
    pub net: ConfuNet<B>,
    pub config: DraftConfig,
    pub options: ConfuOptions,
    pub d2t: Vec<i64>,
    pub t2d: Vec<bool>,
    /// The table the head reads tokens with.
    pub embed: Tensor<B, 2>,
    pub log: TrainLog,
}

impl<B: Backend> TrainedConfu<B> {
    /// Export as a ConFu draft folder.
    pub fn export(&self, bos: Option<u32>, eos: Option<u32>, dir: &Path) -> Result<()> {
        export_official(
            &self.net.head,
            &self.config,
            &self.d2t,
            &self.t2d,
            (bos, eos),
            dir,
        )?;
        self.net.confu.save(&self.options, dir)
    }
}

/// The anchors of every sequence of a batch: a pure function of the seed, the step and the
/// sequence's place, so a resumed run draws the same ones.
fn batch_anchors(tokens: usize, batch: usize, c: &ConfuSettings, seed: u64) -> Vec<Vec<usize>> {
    let count = anchor_count(tokens, c.anchor_every);
    (0..batch)
        .map(|i| {
            let s = seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(i as u64 + 1);
            sample_anchors(tokens, count, c.anchor_sampling, s)
        })
        .collect()
}

/// Train (or resume) ConFu for `target` from the EAGLE-3 head `init` on `data`.
#[allow(clippy::too_many_arguments)]
pub fn train_confu<B: Backend>(
    target: &TargetModel<B>,
    init: &Eagle3Head<B>,
    options: &ConfuOptions,
    settings: &TrainSettings,
    confu: &ConfuSettings,
    data: &Packed,
    out: &Path,
    resume: bool,
    on_step: impl FnMut(usize, f32, f64) -> Control,
) -> Result<TrainedConfu<B>> {
    if data.len() < settings.batch_size {
        return Err(Error::invalid(
            "corpus",
            format!("{} sequences", data.len()),
            format!("fewer than one batch of {} sequences", settings.batch_size),
        ));
    }
    if settings.seq_len < 2 {
        return Err(Error::invalid(
            "train.seq_len",
            settings.seq_len,
            "ConFu needs at least 2 (an anchor predicts the token two after it)",
        ));
    }
    options
        .validate()
        .map_err(|(field, msg)| Error::invalid(field, "confu options", msg))?;
    for check in [settings.validate(), confu.validate()] {
        check.map_err(|(field, msg)| Error::invalid("training settings", field, msg))?;
    }
    let c = target.config();
    let device = target.device().clone();
    let frozen = frozen_on_autodiff(target)?;
    let (d2t, t2d) = init.vocab.offsets_and_mask(c.vocab_size);
    let vocab = VocabMap::new(&d2t, &t2d);
    let own = init.net.embed_tokens.is_some();
    let head =
        Eagle3::<Autodiff<B>>::from_values(&init.config, own, &mut Copied::of(&init.net), &device)?;
    let dims = ConfuDims {
        target_hidden: c.hidden_size,
        draft_hidden: init.config.hidden_size,
        draft_kv_heads: init.config.shape.kv_heads,
    };
    let table: Vec<f32> = target.embed_tokens().to_host();
    let params = ConfuParams::init_for_training(options, dims, &table, settings.seed, &device)?;
    let net = ConfuNet {
        head,
        confu: params,
        scales: confu.lr_scale,
    };
    let embed: Tensor<Autodiff<B>, 2> = Tensor::from_inner(init.embed_tokens.clone());
    let forward = ConfuForward {
        frozen: &frozen,
        options,
        config: &init.config,
        embed: &embed,
        ttt_steps: confu.ttt_steps,
        decay: confu.decay,
        replication: confu.replication,
        contemplate: ContemplateMode::Anchors,
        attention: TttAttention::Efficient,
        future: confu.future,
    };
    let loss = |net: &ConfuNet<Autodiff<B>>, step: usize| {
        let idx = batch_indices(data.len(), settings.batch_size, settings.seed, step);
        let seqs: Vec<&[u32]> = idx.iter().map(|&i| data.get(i)).collect();
        let batch = TttBatch::<Autodiff<B>>::new(target, &seqs, &vocab, true, Tensor::from_inner)?;
        let seed = settings.seed ^ (step as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
        let anchors = batch_anchors(settings.seq_len + 1, seqs.len(), confu, seed);
        Ok(forward.loss(net, batch, &anchors, false)?.0)
    };
    let fingerprint = Fingerprint::from([
        ("target".to_string(), target_fingerprint(target)),
        ("train".to_string(), settings.fingerprint()),
        ("confu".to_string(), fingerprint_of(confu)),
        ("options".to_string(), fingerprint_of(options)),
        ("data".to_string(), data.fingerprint()),
        ("init".to_string(), module_fingerprint(&d2t, &init.net)),
    ]);
    let (net, log) = train(
        net,
        settings,
        &fingerprint,
        out,
        resume,
        &device,
        loss,
        on_step,
    )?;
    Ok(TrainedConfu {
        net: net.valid(),
        config: init.config.clone(),
        options: options.clone(),
        d2t,
        t2d,
        embed: init.embed_tokens.clone(),
        log,
    })
}

/// Dev evaluation on `tokens` of one category (sequences of `seq_len + 1`, anchors drawn as in
/// training from a fixed seed): per unrolled step, the loss and top-1 agreement with the target
/// on the rows the anchors cover, with `f` and with `f` zeroed.
pub fn evaluate_confu_dev<B: Backend>(
    target: &TargetModel<B>,
    trained: &TrainedConfu<B>,
    confu: &ConfuSettings,
    category: &str,
    tokens: &[u32],
    seq_len: usize,
) -> Result<DevResult> {
    let vocab = VocabMap::new(&trained.d2t, &trained.t2d);
    let forward = ConfuForward {
        frozen: target,
        options: &trained.options,
        config: &trained.config,
        embed: &trained.embed,
        ttt_steps: confu.ttt_steps,
        decay: confu.decay,
        replication: confu.replication,
        contemplate: ContemplateMode::Anchors,
        attention: TttAttention::Efficient,
        future: confu.future,
    };
    let (mut with, mut without) = (StepTotals::default(), StepTotals::default());
    for (i, seq) in tokens.chunks_exact(seq_len + 1).enumerate() {
        let anchors = batch_anchors(seq.len(), 1, confu, 0xDE7 + i as u64);
        for (zero, totals) in [(false, &mut with), (true, &mut without)] {
            let batch = TttBatch::<B>::new(target, &[seq], &vocab, true, |t| t)?;
            let (_, steps) = forward.loss(&trained.net, batch, &anchors, zero)?;
            totals.add(&steps);
        }
    }
    Ok(DevResult::from_steps(
        category,
        with.means(),
        without.means(),
    ))
}
