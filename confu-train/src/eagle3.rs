//! EAGLE-3's training-time test (METHOD.md §6) over the one head module, `confu_draft::Eagle3`:
//! `K` unrolled steps, step `k` feeding the head's own output states of step `k−1`, attention
//! causal over the step-0 keys plus the same position's keys of steps `1..k` ([`TttKeys`]), loss
//! `Σ_k decay^k · loss_k` of the masked soft cross-entropy against the target restricted to the
//! draft vocabulary. The head's layer body is the decoding one; only what it attends over differs.
//! The token embedding is the frozen target's and is passed in, never trained or stored.

use burn::tensor::activation::softmax;
use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use confu_core::{PortableOps, ToHost};
use confu_draft::{DraftConfig, DraftOutput, Eagle3};
use confu_model::RopeRows;

pub use crate::ttt_attention::{FutureSlots, KeyValues, TttAttention, TttKeys};

/// One unrolled step's statistics: masked mean soft cross-entropy, the fraction of positions
/// where the draft's argmax equals the target's, and how many positions were scored.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TttStep {
    pub loss: f64,
    pub top1: f64,
    pub count: usize,
    /// ConFu: the mean attention probability that rows with a future slot put on it (over
    /// rows and heads) — how much the head reads `f`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_attention: Option<f64>,
}

/// Count-weighted sums of unrolled steps' statistics over many batches.
#[derive(Clone, Debug, Default)]
pub struct StepTotals(Vec<(f64, f64, usize, Option<f64>)>);

impl StepTotals {
    pub fn add(&mut self, steps: &[TttStep]) {
        if self.0.len() < steps.len() {
            self.0.resize(steps.len(), (0.0, 0.0, 0, None));
        }
        for (acc, s) in self.0.iter_mut().zip(steps) {
            acc.0 += s.loss * s.count as f64;
            acc.1 += s.top1 * s.count as f64;
            acc.2 += s.count;
            if let Some(m) = s.slot_attention {
                acc.3 = Some(acc.3.unwrap_or(0.0) + m * s.count as f64);
            }
        }
    }

    /// Each step's mean loss and top-1 agreement over everything added.
    pub fn means(&self) -> Vec<TttStep> {
        self.0
            .iter()
            .map(|&(l, a, n, slot)| {
                let m = n.max(1) as f64;
                TttStep {
                    loss: l / m,
                    top1: a / m,
                    count: n,
                    slot_attention: slot.map(|x| x / m),
                }
            })
            .collect()
    }
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
pub fn fuse<B: Backend>(net: &Eagle3<B>, taps: Tensor<B, 3>) -> Tensor<B, 3> {
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
        &mut TttKeys::new(b, TttAttention::Efficient, None),
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
    let fused = fuse(net, taps);
    let loss = TttLoss {
        c,
        embed,
        ids,
        valid,
        steps,
        decay,
        attn,
    };
    loss.compute(net, fused, target, None)
}

/// The training-time-test loss's fixed inputs (see [`ttt_loss`]); ConFu adds future slots.
pub struct TttLoss<'a, B: Backend> {
    pub c: &'a DraftConfig,
    pub embed: &'a Tensor<B, 2>,
    pub ids: &'a [Vec<u32>],
    pub valid: &'a [Vec<bool>],
    pub steps: usize,
    pub decay: f64,
    pub attn: TttAttention,
}

impl<B: Backend> TttLoss<'_, B> {
    /// The loss from fused step-0 states `hidden: [b, t, d]`. With `slots`, every step's rows
    /// also see their anchor's future slot, and rows that see none are left out of the loss.
    pub fn compute(
        &self,
        net: &Eagle3<B>,
        hidden: Tensor<B, 3>,
        target: Tensor<B, 3>,
        slots: Option<FutureSlots<B>>,
    ) -> (Tensor<B, 1>, Vec<TttStep>) {
        let TttLoss {
            c,
            embed,
            ids,
            valid,
            steps,
            decay,
            attn,
        } = *self;
        let [b, t, _] = hidden.dims();
        let device = hidden.device();
        let vd = c.draft_vocab_size;
        let mut hidden = hidden;
        let covers: Vec<Vec<bool>> = (0..b)
            .map(|s| {
                (0..t)
                    .map(|j| slots.as_ref().is_none_or(|sl| sl.covers(s, j)))
                    .collect()
            })
            .collect();
        let mut keys = TttKeys::new(b, attn, slots);
        let mut total: Option<Tensor<B, 1>> = None;
        let mut per_step = Vec::new();
        for k in 0..steps {
            // Token j+1+k (0 where it does not exist) and the loss mask.
            let mut toks = Vec::with_capacity(b * t);
            let mut mask = Vec::with_capacity(b * t);
            for ((seq, ok), cov) in ids.iter().zip(valid).zip(&covers) {
                for (j, &covered) in cov.iter().enumerate() {
                    let p = j + 1 + k;
                    toks.push(seq.get(p).map_or(0, |&x| x as i64));
                    mask.push((p < seq.len() && ok[p] && covered) as i32 as f32);
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
                slot_attention: keys.slot_attention.take(),
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
