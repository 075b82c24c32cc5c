//! What the draft head attends over in the training-time test (METHOD.md §6): every earlier
//! unrolled step's keys (step 0 causally, later steps only the row's own position) and, for ConFu,
//! the future slot of the row's anchor. The efficient form scores step 0 with one matmul and every
//! other key with one diagonal product per row; the naive form concatenates every key with an
//! explicit mask, and tests check that both give the same values and gradients.

use burn::tensor::activation::softmax;
use burn::tensor::{backend::Backend, Bool, Tensor, TensorData};
use confu_core::{index_tensor, Ops, ToHost};
use confu_model::keys::{batch_to_rows, rows_to_batch, Qkv};
use confu_model::AttentionKeys;

/// One unrolled step's keys and values `[b, heads, t, head_dim]`.
pub type KeyValues<B> = (Tensor<B, 4>, Tensor<B, 4>);

/// How the training-time-test attention is computed: the efficient form (step-0 keys causally plus
/// one diagonal score per later step and one for the future slot), or the naive reference (all
/// keys concatenated with an explicit mask) that tests check the efficient form against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TttAttention {
    Efficient,
    Naive,
}

/// ConFu's future slots of a batch: one per anchor, and which one each draft row sees.
#[derive(Clone, Debug)]
pub struct FutureSlots<B: Backend> {
    /// Keys and values of every slot `[batch * per_seq, kv_heads, head_dim]`, sequence-major.
    pub k: Tensor<B, 3>,
    pub v: Tensor<B, 3>,
    /// Slots per sequence.
    pub per_seq: usize,
    /// Per sequence and draft row: the index (within its sequence) of the slot it sees, if any.
    pub row_slot: Vec<Vec<Option<usize>>>,
}

impl<B: Backend> FutureSlots<B> {
    /// Whether row `j` of sequence `seq` sees a slot (rows that see none stay out of the loss).
    pub fn covers(&self, seq: usize, j: usize) -> bool {
        self.row_slot[seq].get(j).copied().flatten().is_some()
    }
}

/// `[rows, kv_heads, d]` widened to `[rows, kv_heads * group, d]` (grouped-query attention).
fn widen_rows<B: Backend>(z: Tensor<B, 3>, group: usize) -> Tensor<B, 3> {
    let [rows, kvh, d] = z.dims();
    z.unsqueeze_dim::<4>(2)
        .expand([rows, kvh, group, d])
        .reshape([rows, kvh * group, d])
}

/// What the head attends over in the training-time test: every earlier unrolled step's keys
/// and values (widened to the query heads), to which each step adds its own, and the future slots.
pub struct TttKeys<B: Backend> {
    pub batch: usize,
    pub mode: TttAttention,
    pub steps: Vec<KeyValues<B>>,
    pub slots: Option<FutureSlots<B>>,
    /// After an efficient step with slots: the mean attention probability on the slot over the
    /// rows that have one, and all heads.
    pub slot_attention: Option<f64>,
}

impl<B: Backend> TttKeys<B> {
    pub fn new(batch: usize, mode: TttAttention, slots: Option<FutureSlots<B>>) -> Self {
        Self {
            batch,
            mode,
            steps: Vec::new(),
            slots,
            slot_attention: None,
        }
    }

    /// `q: [b, h, t, d]`; `k`, `v` of this step; `slots` widened to `h` heads.
    fn apply(
        &mut self,
        q: Tensor<B, 4>,
        k: &Tensor<B, 4>,
        v: &Tensor<B, 4>,
        slots: Option<(Tensor<B, 3>, Tensor<B, 3>)>,
        scale: f64,
    ) -> Tensor<B, 4> {
        let [b, h, t, hd] = q.dims();
        let device = q.device();
        let all: Vec<KeyValues<B>> = self
            .steps
            .iter()
            .cloned()
            .chain([(k.clone(), v.clone())])
            .collect();
        let row_slot = self.slots.as_ref().map(|s| (&s.row_slot, s.per_seq));
        match self.mode {
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
                // The row's own slot, gathered per row; rows without one mask it out.
                let slot_rows = slots.zip(row_slot).map(|((sk, sv), (rows, per_seq))| {
                    let (idx, hidden): (Vec<usize>, Vec<bool>) = rows
                        .iter()
                        .enumerate()
                        .flat_map(|(s, r)| {
                            r.iter().map(move |slot| match slot {
                                Some(i) => (s * per_seq + i, false),
                                None => (s * per_seq, true),
                            })
                        })
                        .unzip();
                    let idx = index_tensor(&idx, &device);
                    let gather = |z: Tensor<B, 3>| rows_to_batch(z.select(0, idx.clone()), b);
                    let hidden = Tensor::<B, 3, Bool>::from_data(
                        TensorData::new(hidden, [b, t, 1]),
                        &device,
                    )
                    .unsqueeze_dim::<4>(1)
                    .expand([b, h, t, 1]);
                    (gather(sk), gather(sv), hidden)
                });
                if let Some((ks, _, hidden)) = &slot_rows {
                    scores.push(
                        (q.clone() * ks.clone())
                            .sum_dim(3)
                            .mul_scalar(scale)
                            .mask_fill(hidden.clone(), f32::NEG_INFINITY),
                    );
                }
                let p = softmax(Tensor::cat(scores, 3), 3);
                let mut out = p.clone().slice([0..b, 0..h, 0..t, 0..t]).matmul(v0.clone());
                for (i, (_, vi)) in all[1..].iter().enumerate() {
                    out = out + p.clone().slice([0..b, 0..h, 0..t, t + i..t + i + 1]) * vi.clone();
                }
                if let Some((_, vs, hidden)) = slot_rows {
                    let c = t + all.len() - 1;
                    let on_slot = p.slice([0..b, 0..h, 0..t, c..c + 1]);
                    // Read without tracking: a statistic, not part of the loss.
                    let seen = hidden.bool_not().float();
                    let rows: f32 = seen.clone().sum().to_host()[0];
                    let mass: f32 = (on_slot.clone().detach() * seen).sum().to_host()[0];
                    self.slot_attention = Some(mass as f64 / rows.max(1.0) as f64);
                    out = out + on_slot * vs;
                }
                out
            }
            TttAttention::Naive => {
                let n = all.len();
                let per_seq = row_slot.map_or(0, |(_, p)| p);
                let cols = n * t + per_seq;
                let mut keys: Vec<Tensor<B, 4>> = all.iter().map(|(k, _)| k.clone()).collect();
                let mut values: Vec<Tensor<B, 4>> = all.iter().map(|(_, v)| v.clone()).collect();
                if let Some((sk, sv)) = slots {
                    let per_batch =
                        |z: Tensor<B, 3>| z.reshape([b, per_seq, h, hd]).swap_dims(1, 2);
                    keys.push(per_batch(sk));
                    values.push(per_batch(sv));
                }
                let mut hidden = vec![true; b * t * cols];
                for s in 0..b {
                    for j in 0..t {
                        let row = &mut hidden[(s * t + j) * cols..(s * t + j + 1) * cols];
                        for step in 0..n {
                            for j2 in 0..t {
                                let visible = if step == 0 { j2 <= j } else { j2 == j };
                                row[step * t + j2] = !visible;
                            }
                        }
                        if let Some(Some(i)) = row_slot.map(|(r, _)| r[s][j]) {
                            row[n * t + i] = false;
                        }
                    }
                }
                let mask =
                    Tensor::<B, 3, Bool>::from_data(TensorData::new(hidden, [b, t, cols]), &device)
                        .unsqueeze_dim::<4>(1)
                        .expand([b, h, t, cols]);
                let scores = q
                    .matmul(Tensor::cat(keys, 2).swap_dims(2, 3))
                    .mul_scalar(scale)
                    .mask_fill(mask, f32::NEG_INFINITY);
                softmax(scores, 3).matmul(Tensor::cat(values, 2))
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

impl<B: Backend> AttentionKeys<B> for TttKeys<B> {
    fn attend(&mut self, _layer: usize, qkv: Qkv<B>, _ops: &dyn Ops<B>) -> Tensor<B, 3> {
        let (b, Qkv { q, k, v, scale }) = (self.batch, qkv);
        let group = q.dims()[1] / k.dims()[1];
        let widen = |z: Tensor<B, 3>| rows_to_batch(widen_rows(z, group), b);
        let (k, v) = (widen(k), widen(v));
        let slots = self.slots.as_ref().map(|s| {
            (
                widen_rows(s.k.clone(), group),
                widen_rows(s.v.clone(), group),
            )
        });
        let out = self.apply(rows_to_batch(q, b), &k, &v, slots, scale);
        self.steps.push((k, v));
        batch_to_rows(out)
    }
}
