//! EAGLE-3's training-time test (METHOD.md §6) over the one head module, `confu_draft::Eagle3`:
//! `K` unrolled steps, step `k` feeding the head's own output states of step `k−1`, attention
//! causal over the step-0 keys plus the same position's keys of steps `1..k` ([`TttKeys`]), loss
//! `Σ_k decay^k · loss_k` of the masked soft cross-entropy against the target restricted to the
//! draft vocabulary. The head's layer body is the decoding one; only what it attends over differs.
//! The token embedding is the frozen target's and is passed in, never trained or stored.

use burn::tensor::activation::softmax;
use burn::tensor::{backend::Backend, Bool, Int, Tensor, TensorData};
use confu_core::{Ops, PortableOps, ToHost};
use confu_draft::{DraftConfig, DraftOutput, Eagle3};
use confu_model::keys::{batch_to_rows, rows_to_batch, Qkv};
use confu_model::{AttentionKeys, RopeRows};

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
        &self,
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

/// `[b, h, t, t]`, true where a query may not attend (a later position).
fn causal_hidden<B: Backend>(
    b: usize,
    h: usize,
    t: usize,
    device: &B::Device,
) -> Tensor<B, 4, Bool> {
    let hidden: Vec<bool> = (0..t * t).map(|k| k % t > k / t).collect();
    Tensor::<B, 2, Bool>::from_data(TensorData::new(hidden, [t, t]), device)
        .unsqueeze::<4>()
        .expand([b, h, t, t])
}

/// What the head attends over in the training-time test: every earlier unrolled step's keys
/// and values (widened to the query heads), to which each step adds its own.
pub struct TttKeys<B: Backend> {
    pub batch: usize,
    pub mode: TttAttention,
    pub steps: Vec<KeyValues<B>>,
}

impl<B: Backend> TttKeys<B> {
    pub fn new(batch: usize, mode: TttAttention) -> Self {
        Self {
            batch,
            mode,
            steps: Vec::new(),
        }
    }
}

impl<B: Backend> AttentionKeys<B> for TttKeys<B> {
    fn attend(&mut self, _layer: usize, qkv: Qkv<B>, _ops: &dyn Ops<B>) -> Tensor<B, 3> {
        let (b, Qkv { q, k, v, scale }) = (self.batch, qkv);
        let (heads, kv_heads) = (q.dims()[1], k.dims()[1]);
        let group = heads / kv_heads;
        let widen = |z: Tensor<B, 3>| {
            let z = rows_to_batch(z, b);
            let [b, kvh, t, hd] = z.dims();
            z.unsqueeze_dim::<5>(2)
                .expand([b, kvh, group, t, hd])
                .reshape([b, kvh * group, t, hd])
        };
        let (k, v) = (widen(k), widen(v));
        let out = self
            .mode
            .apply(rows_to_batch(q, b), &k, &v, &self.steps, scale);
        self.steps.push((k, v));
        batch_to_rows(out)
    }
}

/// One unrolled step over `[b, t]` rows: fused (or fed-back) states `hidden: [b, t, d]` paired
/// with `tokens: [b, t]`, positions `0..t`, attending through `keys`.
fn step<B: Backend>(
    net: &Eagle3<B>,
    c: &DraftConfig,
    embed: &Tensor<B, 2>,
    hidden: Tensor<B, 3>,
    tokens: Tensor<B, 2, Int>,
    keys: &mut TttKeys<B>,
) -> (Tensor<B, 3>, Tensor<B, 3>) {
    let [b, t, d] = hidden.dims();
    let device = hidden.device();
    let e = embed.clone().select(0, tokens.reshape([b * t]));
    let rope = RopeRows::batch(&c.rope, b, t, &device);
    let DraftOutput { hidden, logits } =
        net.forward_rows(hidden.reshape([b * t, d]), e, &rope, &PortableOps, keys);
    let vd = logits.dims()[1];
    (hidden.reshape([b, t, d]), logits.reshape([b, t, vd]))
}

/// `fc` over taps `[b, t, 3d]`.
fn fuse<B: Backend>(net: &Eagle3<B>, taps: Tensor<B, 3>) -> Tensor<B, 3> {
    let [b, t, w] = taps.dims();
    let g = net.fuse(taps.reshape([b * t, w]), &PortableOps);
    let d = g.dims()[1];
    g.reshape([b, t, d])
}

/// One causal pass over `[b, t]` pairs: `taps: [b, t, 3d]` (target features at position `j`)
/// and `next: [b, t]` (the token at `j + 1`), positions `0..t`. Returns the output states
/// `[b, t, d]` and draft logits `[b, t, draft_vocab]`.
pub fn causal_pass<B: Backend>(
    net: &Eagle3<B>,
    c: &DraftConfig,
    embed: &Tensor<B, 2>,
    taps: Tensor<B, 3>,
    next: Tensor<B, 2, Int>,
) -> (Tensor<B, 3>, Tensor<B, 3>) {
    let b = taps.dims()[0];
    let g = fuse(net, taps);
    step(
        net,
        c,
        embed,
        g,
        next,
        &mut TttKeys::new(b, TttAttention::Efficient),
    )
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
pub fn ttt_loss<B: Backend>(
    net: &Eagle3<B>,
    c: &DraftConfig,
    embed: &Tensor<B, 2>,
    taps: Tensor<B, 3>,
    ids: &[Vec<u32>],
    target: Tensor<B, 3>,
    valid: &[Vec<bool>],
    steps: usize,
    decay: f64,
    attn: TttAttention,
) -> (Tensor<B, 1>, Vec<TttStep>) {
    let [b, t, _] = taps.dims();
    let device = taps.device();
    let vd = c.draft_vocab_size;
    let mut hidden = fuse(net, taps);
    let mut keys = TttKeys::new(b, attn);
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
        let (out, logits) = step(net, c, embed, hidden, tokens, &mut keys);
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
    }
    (total.expect("steps >= 1"), per_step)
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
