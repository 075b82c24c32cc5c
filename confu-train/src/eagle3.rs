//! The trainable EAGLE-3 draft head and its export in the official checkpoint layout
//! (`config.json` + `model.safetensors` with `fc`, `midlayer.*`, `norm`, `lm_head`, `d2t`, `t2d`),
//! which `confu_draft::Eagle3Head::load` and the official EAGLE code load unchanged.
//!
//! The equations are those of `confu_draft::Eagle3Head` (see there), in batched form for autodiff.
//! The token embedding is the frozen target's and is passed in, never trained or stored.

use confu_core::ToHost;
use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, Param};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{backend::Backend, Bool, Int, Tensor, TensorData};
use confu_core::ops::portable::rms_norm;
use confu_core::{Error, Result};
use confu_draft::DraftConfig;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::lm::{causal_hidden, linear, normal, ones, rope, write_atomic};

/// One unrolled step's statistics: masked mean soft cross-entropy, the fraction of positions
/// where the draft's argmax equals the target's, and how many positions were scored.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TttStep {
    pub loss: f64,
    pub top1: f64,
    pub count: usize,
}

/// Choose the draft vocabulary: the `size` most frequent target ids (ties: smaller id first),
/// sorted ascending. Returns the official `d2t` offsets and the `t2d` mask.
pub fn draft_vocab_from_counts(counts: &[u64], size: usize) -> (Vec<i64>, Vec<bool>) {
    let size = size.min(counts.len());
    let mut ids: Vec<usize> = (0..counts.len()).collect();
    ids.sort_by(|&a, &b| counts[b].cmp(&counts[a]).then(a.cmp(&b)));
    let mut chosen: Vec<usize> = ids[..size].to_vec();
    chosen.sort_unstable();
    let mut t2d = vec![false; counts.len()];
    for &id in &chosen {
        t2d[id] = true;
    }
    let d2t = chosen
        .iter()
        .enumerate()
        .map(|(i, &id)| id as i64 - i as i64)
        .collect();
    (d2t, t2d)
}

/// One unrolled step's keys and values `[b, heads, t, head_dim]`.
pub type KeyValues<B> = (Tensor<B, 4>, Tensor<B, 4>);

/// How the training-time-test attention is computed: the efficient form (step-0 keys causally plus
/// one diagonal score per later step), or the naive reference (all steps' keys concatenated with an
/// explicit mask) that tests check the efficient form against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TttAttention {
    Efficient,
    Naive,
}

impl TttAttention {
    /// `q: [b, h, t, d]`; `k`, `v` of this step; `earlier`: keys/values of steps 0..k-1.
    fn apply<B: Backend>(
        &mut self,
        q: Tensor<B, 4>,
        k: &Tensor<B, 4>,
        v: &Tensor<B, 4>,
        earlier: &[KeyValues<B>],
        scale: f64,
    ) -> Tensor<B, 4> {
        let [b, h, t, _] = q.dims();
        let device = q.device();
        // Step 0's keys are `earlier[0]` (or this step's own keys at step 0); later steps add one
        // key per position: their own position only.
        let all: Vec<KeyValues<B>> = earlier
            .iter()
            .cloned()
            .chain([(k.clone(), v.clone())])
            .collect();
        match self {
            TttAttention::Efficient => {
                let (k0, v0) = &all[0];
                let mut scores = vec![q
                    .clone()
                    .matmul(k0.clone().swap_dims(2, 3))
                    .mul_scalar(scale)
                    .mask_fill(causal_hidden::<B>(b, h, t, &device), f32::NEG_INFINITY)];
                for (ki, _) in &all[1..] {
                    scores.push((q.clone() * ki.clone()).sum_dim(3).mul_scalar(scale));
                }
                let p = softmax(Tensor::cat(scores, 3), 3);
                let mut out = p.clone().slice([0..b, 0..h, 0..t, 0..t]).matmul(v0.clone());
                for (i, (_, vi)) in all[1..].iter().enumerate() {
                    out = out + p.clone().slice([0..b, 0..h, 0..t, t + i..t + i + 1]) * vi.clone();
                }
                out
            }
            TttAttention::Naive => {
                let n = all.len();
                let keys = Tensor::cat(all.iter().map(|(k, _)| k.clone()).collect(), 2);
                let values = Tensor::cat(all.iter().map(|(_, v)| v.clone()).collect(), 2);
                let mut hidden = vec![true; t * n * t];
                for j in 0..t {
                    for s in 0..n {
                        for j2 in 0..t {
                            let visible = if s == 0 { j2 <= j } else { j2 == j };
                            hidden[j * n * t + s * t + j2] = !visible;
                        }
                    }
                }
                let mask =
                    Tensor::<B, 2, Bool>::from_data(TensorData::new(hidden, [t, n * t]), &device)
                        .unsqueeze::<4>()
                        .expand([b, h, t, n * t]);
                let scores = q
                    .matmul(keys.swap_dims(2, 3))
                    .mul_scalar(scale)
                    .mask_fill(mask, f32::NEG_INFINITY);
                softmax(scores, 3).matmul(values)
            }
        }
    }
}

/// Trainable EAGLE-3 head weights (`[out, in]`).
#[derive(Module, Debug)]
pub struct TrainableEagle3<B: Backend> {
    pub fc: Param<Tensor<B, 2>>,
    pub hidden_norm: Param<Tensor<B, 1>>,
    pub input_norm: Param<Tensor<B, 1>>,
    pub q_proj: Param<Tensor<B, 2>>,
    pub k_proj: Param<Tensor<B, 2>>,
    pub v_proj: Param<Tensor<B, 2>>,
    pub o_proj: Param<Tensor<B, 2>>,
    pub post_attention_norm: Param<Tensor<B, 1>>,
    pub gate_proj: Param<Tensor<B, 2>>,
    pub up_proj: Param<Tensor<B, 2>>,
    pub down_proj: Param<Tensor<B, 2>>,
    pub norm: Param<Tensor<B, 1>>,
    pub lm_head: Param<Tensor<B, 2>>,
}

impl<B: Backend> TrainableEagle3<B> {
    /// Random initialisation (linear weights N(0, 0.02²), norms 1).
    pub fn init(c: &DraftConfig, seed: u64, device: &B::Device) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (d, i, vd) = (c.hidden_size, c.intermediate_size, c.draft_vocab_size);
        let s = c.shape;
        let (q, kv) = (s.heads * s.head_dim, s.kv_heads * s.head_dim);
        let std = 0.02;
        Self {
            fc: normal(&mut rng, [d, 3 * c.target_hidden_size], std, device),
            hidden_norm: ones(d, device),
            input_norm: ones(d, device),
            q_proj: normal(&mut rng, [q, 2 * d], std, device),
            k_proj: normal(&mut rng, [kv, 2 * d], std, device),
            v_proj: normal(&mut rng, [kv, 2 * d], std, device),
            o_proj: normal(&mut rng, [d, q], std, device),
            post_attention_norm: ones(d, device),
            gate_proj: normal(&mut rng, [i, d], std, device),
            up_proj: normal(&mut rng, [i, d], std, device),
            down_proj: normal(&mut rng, [d, i], std, device),
            norm: ones(d, device),
            lm_head: normal(&mut rng, [vd, d], std, device),
        }
    }

    /// One causal pass over `[b, t]` pairs: `taps: [b, t, 3d]` (target features at position `j`)
    /// and `next: [b, t]` (the token at `j + 1`), positions `0..t`. Returns the output states
    /// `[b, t, d]` and draft logits `[b, t, draft_vocab]`.
    pub fn forward(
        &self,
        c: &DraftConfig,
        embed: &Tensor<B, 2>,
        taps: Tensor<B, 3>,
        next: Tensor<B, 2, Int>,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let g = linear(taps, &self.fc);
        let mut attn = TttAttention::Efficient;
        let (out, logits, _) = self.step(c, embed, g, next, &[], &mut attn);
        (out, logits)
    }

    /// One unrolled step: the draft layer on `(hidden, tokens)` at positions `0..t`, attending
    /// causally to its own keys when `earlier` is empty, or else causally to the step-0 keys and to
    /// the same position's keys of the later steps in `earlier` (the training-time test).
    /// Returns the output states, the logits and this step's keys/values.
    fn step(
        &self,
        c: &DraftConfig,
        embed: &Tensor<B, 2>,
        hidden: Tensor<B, 3>,
        tokens: Tensor<B, 2, Int>,
        earlier: &[KeyValues<B>],
        attn: &mut TttAttention,
    ) -> (Tensor<B, 3>, Tensor<B, 3>, KeyValues<B>) {
        let [b, t, _] = hidden.dims();
        let device = hidden.device();
        let d = c.hidden_size;
        let s = c.shape;
        let (h, kvh, hd) = (s.heads, s.kv_heads, s.head_dim);
        let eps = c.rms_norm_eps;
        let e = embed
            .clone()
            .select(0, tokens.reshape([b * t]))
            .reshape([b, t, d]);
        let x = Tensor::cat(
            vec![
                rms_norm(e, &self.input_norm.val(), eps),
                rms_norm(hidden.clone(), &self.hidden_norm.val(), eps),
            ],
            2,
        );
        let positions: Vec<usize> = (0..t).collect();
        let (cos, sin) =
            confu_model::rope_tables::<B>(&c.rope, &c.rope.inv_freq(), &positions, &device);
        let (cos, sin) = (cos.unsqueeze::<4>(), sin.unsqueeze::<4>());
        let group = h / kvh;
        let widen = |z: Tensor<B, 4>| {
            z.unsqueeze_dim::<5>(2)
                .expand([b, kvh, group, t, hd])
                .reshape([b, h, t, hd])
        };
        let q = rope(
            linear(x.clone(), &self.q_proj)
                .reshape([b, t, h, hd])
                .swap_dims(1, 2),
            &cos,
            &sin,
        );
        let k = widen(rope(
            linear(x.clone(), &self.k_proj)
                .reshape([b, t, kvh, hd])
                .swap_dims(1, 2),
            &cos,
            &sin,
        ));
        let v = widen(
            linear(x, &self.v_proj)
                .reshape([b, t, kvh, hd])
                .swap_dims(1, 2),
        );
        let scale = 1.0 / (hd as f64).sqrt();
        let a = attn.apply(q, &k, &v, earlier, scale);
        let a = a.swap_dims(1, 2).reshape([b, t, h * hd]);
        let h1 = hidden + linear(a, &self.o_proj);
        let m = rms_norm(h1.clone(), &self.post_attention_norm.val(), eps);
        let out = h1
            + linear(
                silu(linear(m.clone(), &self.gate_proj)) * linear(m, &self.up_proj),
                &self.down_proj,
            );
        let logits = linear(rms_norm(out.clone(), &self.norm.val(), eps), &self.lm_head);
        (out, logits, (k, v))
    }

    /// The training-time-test loss `sum_k decay^k * loss_k` over `steps` unrolled steps.
    ///
    /// `ids: [b, T]` tokens; `taps: [b, T-1, 3d]` target features of positions `0..T-1`;
    /// `target: [b, T, draft_vocab]` the target's logits restricted to the draft vocabulary (at
    /// position `p`, the distribution of token `p + 1`); `valid: [b, T]` whether the target's argmax
    /// at `p` lies in the draft vocabulary. Step `k` at position `j` reads token `j+1+k` and is
    /// scored against the target at `j+1+k`; positions past the end or with `valid` false are
    /// left out. Returns the loss and each step's masked mean loss and top-1 agreement.
    #[allow(clippy::too_many_arguments)]
    pub fn ttt_loss(
        &self,
        c: &DraftConfig,
        embed: &Tensor<B, 2>,
        taps: Tensor<B, 3>,
        ids: &[Vec<u32>],
        target: Tensor<B, 3>,
        valid: &[Vec<bool>],
        steps: usize,
        decay: f64,
        attn: &mut TttAttention,
    ) -> (Tensor<B, 1>, Vec<TttStep>) {
        let [b, t, _] = taps.dims();
        let device = taps.device();
        let vd = c.draft_vocab_size;
        let mut hidden = linear(taps, &self.fc);
        let mut earlier: Vec<KeyValues<B>> = Vec::new();
        let mut total: Option<Tensor<B, 1>> = None;
        let mut per_step = Vec::new();
        for k in 0..steps {
            // Token j+1+k (0 where it does not exist) and the loss mask.
            let mut toks = Vec::with_capacity(b * t);
            let mut mask = Vec::with_capacity(b * t);
            for (seq, ok) in ids.iter().zip(valid) {
                for j in 0..t {
                    let p = j + 1 + k;
                    toks.push(seq.get(p).map_or(0, |&x| x as i64));
                    mask.push((p < seq.len() && ok[p]) as i32 as f32);
                }
            }
            let count: f32 = mask.iter().sum();
            let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(toks, [b, t]), &device);
            let (out, logits, kv) = self.step(c, embed, hidden, tokens, &earlier, attn);
            // Target rows j+1+k, padded past the end (masked out anyway).
            let [_, tt, _] = target.dims();
            let lo = (1 + k).min(tt);
            let hi = (t + 1 + k).min(tt);
            let mut rows = target.clone().slice([0..b, lo..hi, 0..vd]);
            if hi - lo < t {
                rows = Tensor::cat(
                    vec![rows, Tensor::zeros([b, t - (hi - lo), vd], &device)],
                    1,
                );
            }
            // Top-1 agreement: the draft's argmax equals the target's (within the draft vocabulary,
            // which is where every unmasked target argmax lies).
            let same = logits
                .clone()
                .argmax(2)
                .equal(rows.clone().argmax(2))
                .float()
                .reshape([b * t]);
            let p = softmax(rows, 2);
            let logq = burn::tensor::activation::log_softmax(logits, 2);
            let ce = (p * logq).sum_dim(2).neg().reshape([b * t]);
            let m = Tensor::<B, 1>::from_data(TensorData::new(mask, [b * t]), &device);
            let hits: f32 = (same * m.clone()).sum().to_host()[0];
            let loss_k = (ce * m).sum().div_scalar(count.max(1.0));
            per_step.push(TttStep {
                loss: loss_k.clone().to_host()[0] as f64,
                top1: (hits / count.max(1.0)) as f64,
                count: count as usize,
            });
            let weighted = loss_k.mul_scalar(decay.powi(k as i32));
            total = Some(match total {
                Some(acc) => acc + weighted,
                None => weighted,
            });
            hidden = out;
            earlier.push(kv);
        }
        (total.expect("steps >= 1"), per_step)
    }

    /// Write the official layout into `dir` (each file atomically).
    pub fn export(
        &self,
        c: &DraftConfig,
        d2t: &[i64],
        t2d: &[bool],
        bos: Option<u32>,
        eos: Option<u32>,
        dir: &Path,
    ) -> Result<()> {
        if d2t.len() != c.draft_vocab_size || t2d.len() != c.vocab_size {
            return Err(Error::shape(
                "draft vocabulary",
                format!(
                    "d2t {} / t2d {} for draft vocab {} / vocab {}",
                    d2t.len(),
                    t2d.len(),
                    c.draft_vocab_size,
                    c.vocab_size
                ),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut blobs: BTreeMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)> =
            BTreeMap::new();
        let mut f32s = |name: &str, t: Tensor<B, 2>, one_d: bool| {
            let shape = if one_d {
                vec![t.dims()[1]]
            } else {
                t.dims().to_vec()
            };
            let data: Vec<f32> = t.to_host();
            blobs.insert(
                name.into(),
                (
                    safetensors::Dtype::F32,
                    shape,
                    data.iter().flat_map(|x| x.to_le_bytes()).collect(),
                ),
            );
        };
        f32s("fc.weight", self.fc.val(), false);
        f32s(
            "midlayer.hidden_norm.weight",
            self.hidden_norm.val().unsqueeze(),
            true,
        );
        f32s(
            "midlayer.input_layernorm.weight",
            self.input_norm.val().unsqueeze(),
            true,
        );
        f32s(
            "midlayer.post_attention_layernorm.weight",
            self.post_attention_norm.val().unsqueeze(),
            true,
        );
        f32s("midlayer.self_attn.q_proj.weight", self.q_proj.val(), false);
        f32s("midlayer.self_attn.k_proj.weight", self.k_proj.val(), false);
        f32s("midlayer.self_attn.v_proj.weight", self.v_proj.val(), false);
        f32s("midlayer.self_attn.o_proj.weight", self.o_proj.val(), false);
        f32s("midlayer.mlp.gate_proj.weight", self.gate_proj.val(), false);
        f32s("midlayer.mlp.up_proj.weight", self.up_proj.val(), false);
        f32s("midlayer.mlp.down_proj.weight", self.down_proj.val(), false);
        f32s("norm.weight", self.norm.val().unsqueeze(), true);
        f32s("lm_head.weight", self.lm_head.val(), false);
        blobs.insert(
            "d2t".into(),
            (
                safetensors::Dtype::I64,
                vec![d2t.len()],
                d2t.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        );
        blobs.insert(
            "t2d".into(),
            (
                safetensors::Dtype::BOOL,
                vec![t2d.len()],
                t2d.iter().map(|&x| x as u8).collect(),
            ),
        );
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = blobs
            .iter()
            .map(|(n, (dt, s, b))| {
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(*dt, s.clone(), b)
                        .expect("consistent sizes"),
                )
            })
            .collect();
        let bytes = safetensors::serialize(views, None).map_err(|e| Error::Format {
            path: dir.join("model.safetensors"),
            msg: e.to_string(),
        })?;
        write_atomic(&dir.join("model.safetensors"), &bytes)?;
        let s = c.shape;
        let mut config = serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "hidden_act": "silu",
            "hidden_size": c.hidden_size,
            "intermediate_size": c.intermediate_size,
            "num_attention_heads": s.heads,
            "num_key_value_heads": s.kv_heads,
            "num_hidden_layers": 1,
            "vocab_size": c.vocab_size,
            "draft_vocab_size": c.draft_vocab_size,
            "rms_norm_eps": c.rms_norm_eps,
            "max_position_embeddings": 2048,
            "tie_word_embeddings": false,
            "torch_dtype": "float32",
            "pad_token_id": 0,
        });
        if let Some(b) = bos {
            config["bos_token_id"] = b.into();
        }
        if let Some(e) = eos {
            config["eos_token_id"] = e.into();
        }
        if c.rope.theta != 10000.0 {
            config["rope_theta"] = c.rope.theta.into();
        }
        write_atomic(
            &dir.join("config.json"),
            serde_json::to_string_pretty(&config)
                .expect("json")
                .as_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draft_vocab_keeps_the_most_frequent_ids_in_order() {
        let counts = [5, 0, 9, 5, 1, 7];
        let (d2t, t2d) = draft_vocab_from_counts(&counts, 3);
        // Top 3 by count: 2 (9), 5 (7), then 0 and 3 tie at 5 -> 0. Sorted: [0, 2, 5].
        assert_eq!(t2d, vec![true, false, true, false, false, true]);
        assert_eq!(d2t, vec![0, 1, 3]);
    }
}
