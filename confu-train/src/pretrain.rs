//! Pretraining a target LM from a text corpus: the `train lm` config, data packing, the batch of
//! every step (a pure function of the seed and the step, so resume is exact), the loss handed to
//! the shared loop ([`crate::trainer::train`]) and the dev evaluation. The model is
//! `confu_model::Llama` itself, exported in the Hugging Face layout by its own `export`.

use confu_core::ToHost;
use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use confu_core::{Error, Result, RopeConfig, RopeScaling};
use confu_model::{Architecture, Llama, ModelConfig, Tokenizer};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{fingerprint_of, Fingerprint};
use crate::config_file::{check, in_range, positive, read_config, Invalid, Validate};
pub use crate::trainer::{
    checkpoint_dir, learning_rate, train, Control, DevResult, TrainLog, TrainSettings,
};

/// Shape of the LM to train (vocabulary and special ids come from the tokenizer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmShape {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_theta")]
    pub rope_theta: f32,
}

fn default_theta() -> f32 {
    10000.0
}

/// The `--config` file of `confu train lm`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmTrainConfig {
    pub model: LmShape,
    #[serde(default)]
    pub train: TrainSettings,
}

impl Validate for LmTrainConfig {
    fn validate(&self) -> std::result::Result<(), Invalid> {
        let (m, t) = (&self.model, &self.train);
        positive(&[
            ("model.hidden_size", m.hidden_size),
            ("model.intermediate_size", m.intermediate_size),
            ("model.num_hidden_layers", m.num_hidden_layers),
            ("model.num_attention_heads", m.num_attention_heads),
            ("model.num_key_value_heads", m.num_key_value_heads),
            ("model.max_position_embeddings", m.max_position_embeddings),
        ])?;
        // Upper bounds keep a typo (an extra digit) from allocating until the process dies.
        for (field, v, max) in [
            ("model.hidden_size", m.hidden_size, 1 << 16),
            ("model.intermediate_size", m.intermediate_size, 1 << 18),
            ("model.num_hidden_layers", m.num_hidden_layers, 1 << 10),
            ("model.num_attention_heads", m.num_attention_heads, 1 << 10),
            (
                "model.max_position_embeddings",
                m.max_position_embeddings,
                1 << 20,
            ),
        ] {
            check(v <= max, field, format!("{v} exceeds the limit of {max}"))?;
        }
        check(
            m.hidden_size.is_multiple_of(m.num_attention_heads),
            "model.num_attention_heads",
            format!(
                "{} must divide hidden_size {}",
                m.num_attention_heads, m.hidden_size
            ),
        )?;
        check(
            (m.hidden_size / m.num_attention_heads).is_multiple_of(2),
            "model.num_attention_heads",
            "hidden_size / num_attention_heads (the head size) must be even for RoPE",
        )?;
        check(
            m.num_attention_heads.is_multiple_of(m.num_key_value_heads),
            "model.num_key_value_heads",
            "must divide num_attention_heads",
        )?;
        in_range("model.rope_theta", m.rope_theta as f64, 0.0, f64::MAX, true)?;
        t.validate()?;
        check(
            t.seq_len < m.max_position_embeddings,
            "train.seq_len",
            format!(
                "{} does not fit max_position_embeddings {}",
                t.seq_len, m.max_position_embeddings
            ),
        )
    }
}

impl LmTrainConfig {
    /// Read and validate a config file.
    pub fn from_file(path: &Path) -> Result<Self> {
        read_config(path)
    }

    /// The full model configuration for a tokenizer.
    pub fn model_config(&self, tokenizer: &Tokenizer) -> ModelConfig {
        let m = &self.model;
        let head_dim = m.hidden_size / m.num_attention_heads;
        ModelConfig {
            architecture: Architecture::Llama,
            vocab_size: tokenizer.vocab_size(),
            hidden_size: m.hidden_size,
            intermediate_size: m.intermediate_size,
            num_hidden_layers: m.num_hidden_layers,
            num_attention_heads: m.num_attention_heads,
            num_key_value_heads: m.num_key_value_heads,
            head_dim,
            rms_norm_eps: 1e-5,
            max_position_embeddings: m.max_position_embeddings,
            tie_word_embeddings: false,
            attention_bias: false,
            rope: RopeConfig {
                head_dim,
                theta: m.rope_theta,
                scaling: RopeScaling::None,
            },
            bos_token_id: tokenizer.token_to_id(crate::tokenizer::BOS),
            eos_token_ids: tokenizer
                .token_to_id(crate::tokenizer::EOS)
                .into_iter()
                .collect(),
            declared_dtype: Some("float32".into()),
        }
    }
}

/// Token sequences of `seq_len + 1` cut from a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packed {
    pub seq_len: usize,
    pub tokens: Vec<u32>,
}

impl Packed {
    /// Number of whole sequences.
    pub fn len(&self) -> usize {
        self.tokens.len() / (self.seq_len + 1)
    }

    /// Whether no sequence fits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A checksum of the token stream and the sequence length (a resumed run must train on the
    /// same data).
    pub fn fingerprint(&self) -> String {
        let tokens = self.tokens.iter().flat_map(|t| t.to_le_bytes());
        format!(
            "{:016x}/{}",
            crate::checkpoint::fnv64_of(tokens),
            self.seq_len
        )
    }

    /// Sequence `i`.
    pub fn get(&self, i: usize) -> &[u32] {
        let n = self.seq_len + 1;
        &self.tokens[i * n..(i + 1) * n]
    }
}

/// Tokenize a text file in paragraph-aligned chunks (each gets the begin-of-text token) and
/// return the concatenated stream, stopping after `limit` tokens if given.
pub fn tokenize_file(tokenizer: &Tokenizer, path: &Path, limit: Option<usize>) -> Result<Vec<u32>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    let mut chunk = String::new();
    for para in text.split("\n\n") {
        chunk.push_str(para);
        chunk.push_str("\n\n");
        if chunk.len() >= 4096 {
            out.extend(tokenizer.encode(&chunk)?);
            chunk.clear();
            if limit.is_some_and(|l| out.len() >= l) {
                break;
            }
        }
    }
    if !chunk.is_empty() && limit.is_none_or(|l| out.len() < l) {
        out.extend(tokenizer.encode(&chunk)?);
    }
    if let Some(l) = limit {
        out.truncate(l);
    }
    Ok(out)
}

/// Tokenize `files` in order (stopping after `max_tokens` if given) and pack the stream into
/// sequences of `seq_len + 1` tokens.
pub fn pack_corpus(
    tokenizer: &Tokenizer,
    files: &[PathBuf],
    seq_len: usize,
    max_tokens: Option<usize>,
) -> Result<Packed> {
    let mut tokens = Vec::new();
    for f in files {
        let left = max_tokens.map(|m| m.saturating_sub(tokens.len()));
        if left == Some(0) {
            break;
        }
        tokens.extend(tokenize_file(tokenizer, f, left)?);
    }
    Ok(Packed { seq_len, tokens })
}

/// The sequence indices of `step`'s batch: a seeded shuffle per epoch, so any step's batch can be
/// recomputed on resume.
pub fn batch_indices(num_seqs: usize, batch: usize, seed: u64, step: usize) -> Vec<usize> {
    let per_epoch = (num_seqs / batch).max(1);
    let epoch = step / per_epoch;
    let mut order: Vec<usize> = (0..num_seqs).collect();
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    order.shuffle(&mut rng);
    let start = (step % per_epoch) * batch;
    (0..batch).map(|i| order[(start + i) % num_seqs]).collect()
}

/// Train (or resume) a target LM of shape `config` on `data`; returns the model and log.
/// `on_step(step, loss, lr)` is called after every step and may stop the run (the last
/// checkpoint then allows an exact resume).
pub fn pretrain<B: Backend>(
    config: &ModelConfig,
    settings: &TrainSettings,
    data: &Packed,
    out: &Path,
    resume: bool,
    device: &B::Device,
    on_step: impl FnMut(usize, f32, f64) -> Control,
) -> Result<(Llama<B>, TrainLog)> {
    if data.len() < settings.batch_size {
        return Err(Error::invalid(
            "corpus",
            format!("{} sequences", data.len()),
            format!(
                "fewer than one batch of {} sequences of {} tokens",
                settings.batch_size,
                settings.seq_len + 1
            ),
        ));
    }
    let model = Llama::<Autodiff<B>>::init(config, settings.seed, device)?;
    let n = settings.seq_len + 1;
    let loss = |model: &Llama<Autodiff<B>>, step: usize| {
        let idx = batch_indices(data.len(), settings.batch_size, settings.seed, step);
        let flat: Vec<i64> = idx
            .iter()
            .flat_map(|&i| data.get(i).iter().map(|&t| t as i64))
            .collect();
        let batch =
            Tensor::<Autodiff<B>, 2, Int>::from_data(TensorData::new(flat, [idx.len(), n]), device);
        Ok(model.loss(config, batch))
    };
    let fingerprint = Fingerprint::from([
        ("model".to_string(), fingerprint_of(config)),
        ("train".to_string(), settings.fingerprint()),
        ("data".to_string(), data.fingerprint()),
    ]);
    let (model, log) = train(
        model,
        settings,
        &fingerprint,
        out,
        resume,
        device,
        loss,
        on_step,
    )?;
    Ok((model.valid(), log))
}

/// Dev loss and top-1 accuracy over `tokens` (cut into sequences of `seq_len + 1`).
pub fn evaluate_dev<B: Backend>(
    model: &Llama<B>,
    config: &ModelConfig,
    category: &str,
    tokens: &[u32],
    seq_len: usize,
    device: &B::Device,
) -> DevResult {
    let n = seq_len + 1;
    let (mut loss_sum, mut hits, mut count) = (0f64, 0usize, 0usize);
    for seq in tokens.chunks_exact(n) {
        let ids: Vec<i64> = seq.iter().map(|&t| t as i64).collect();
        let input = Tensor::<B, 2, Int>::from_data(
            TensorData::new(ids[..seq_len].to_vec(), [1, seq_len]),
            device,
        );
        let logits: Vec<f32> = model.forward_batch(config, input).to_host();
        let v = config.vocab_size;
        for (p, row) in logits.chunks(v).enumerate() {
            let target = seq[p + 1] as usize;
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let lse = max as f64
                + row
                    .iter()
                    .map(|&x| ((x - max) as f64).exp())
                    .sum::<f64>()
                    .ln();
            loss_sum += lse - row[target] as f64;
            hits += (confu_core::sampling::argmax(row) == target) as usize;
            count += 1;
        }
    }
    DevResult {
        category: category.to_string(),
        tokens: count,
        loss: if count > 0 {
            loss_sum / count as f64
        } else {
            f64::NAN
        },
        top1: if count > 0 {
            hits as f64 / count as f64
        } else {
            0.0
        },
        per_step: Vec::new(),
        per_step_without_future: Vec::new(),
    }
}
