//! Attention for decoding: one task per (query row, head), visiting only the keys its mask lets it
//! see, in slot order. Hidden keys cost nothing (tree and contemplate masks are mostly hidden), and
//! a row's output is bit-identical whatever other rows or hidden slots the forward carries — the
//! property ConFu needs so that contemplate rows leave real logits untouched.
//!
//! The output is written row-major (`[rows, heads, d]`) and returned as a `[heads, rows, d]` view
//! of it, so the caller's swap back to rows and merge of heads copies nothing.

use burn::tensor::{Bool, Tensor, TensorData};
use confu_core::Ops;
use rayon::prelude::*;

use crate::exact_dot::{dots, has_avx2_fma, lane_sum};
use crate::exp::exp;
use crate::flex_view::{float, Strided};
use crate::Cpu;

/// [`confu_core::Ops::attention`] on the CPU.
pub fn attention(
    q: Tensor<Cpu, 3>,
    k: Tensor<Cpu, 3>,
    v: Tensor<Cpu, 3>,
    masked_out: Option<Tensor<Cpu, 2, Bool>>,
    scale: f64,
) -> Tensor<Cpu, 3> {
    let [heads, rows, d] = q.dims();
    let [kv_heads, keys, _] = k.dims();
    let device = q.device();
    let (qt, kt, vt) = (float(q.clone()), float(k.clone()), float(v.clone()));
    let (Some(qa), Some(ka), Some(va)) = (Strided::of(&qt), Strided::of(&kt), Strided::of(&vt))
    else {
        return confu_core::PortableOps.attention(q, k, v, masked_out, scale);
    };
    let mask_host: Option<Vec<bool>> =
        masked_out.map(|m| m.into_data().to_vec::<bool>().expect("bool mask"));
    let group = heads / kv_heads;
    let scale = scale as f32;
    let mut out = vec![0f32; rows * heads * d];
    out.par_chunks_mut(d).enumerate().for_each_init(
        || {
            (
                Vec::<f32>::with_capacity(keys),
                Vec::<usize>::with_capacity(keys),
                vec![0f32; d],
            )
        },
        |(scores, idx, qrow), (task, dst)| {
            let (r, h) = (task / heads, task % heads);
            qa.read(h, r, qrow);
            let row = AttendRow {
                q: qrow,
                k: &ka,
                v: &va,
                kv_head: h / group,
                keys,
                masked_out: mask_host.as_ref().map(|m| &m[r * keys..(r + 1) * keys]),
                scale,
            };
            row.run(scores, idx, dst);
        },
    );
    Tensor::<Cpu, 3>::from_data(TensorData::new(out, [rows, heads, d]), &device).swap_dims(0, 1)
}

/// One query row of one head against the keys its mask lets it see.
struct AttendRow<'a> {
    q: &'a [f32],
    k: &'a Strided<'a>,
    v: &'a Strided<'a>,
    kv_head: usize,
    keys: usize,
    masked_out: Option<&'a [bool]>,
    scale: f32,
}

impl AttendRow<'_> {
    /// Softmax-weighted sum of the visible values into `dst`. The body is compiled once for
    /// AVX2+FMA and once portably and picked at run time, as the GEMV is; both round every step
    /// the same way (the dot products are `dot_body`'s, the sums separate multiplies and adds).
    fn run(&self, scores: &mut Vec<f32>, idx: &mut Vec<usize>, dst: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        {
            if has_avx2_fma() {
                // SAFETY: the CPU supports AVX2 and FMA (checked above).
                unsafe { self.run_avx2(scores, idx, dst) };
                return;
            }
        }
        self.body(scores, idx, dst);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2(&self, scores: &mut Vec<f32>, idx: &mut Vec<usize>, dst: &mut [f32]) {
        self.body(scores, idx, dst);
    }

    #[inline(always)]
    fn body(&self, scores: &mut Vec<f32>, idx: &mut Vec<usize>, dst: &mut [f32]) {
        scores.clear();
        idx.clear();
        match self.masked_out {
            Some(m) => idx.extend((0..self.keys).filter(|&j| !m[j])),
            None => idx.extend(0..self.keys),
        }
        // Four keys per call share each load of the query and keep four independent
        // accumulator chains; each score is still `dot_body(q, k)` bit for bit.
        let mut max = f32::NEG_INFINITY;
        for group in idx.chunks(4) {
            let rows: [&[f32]; 4] =
                std::array::from_fn(|t| self.k.row(self.kv_head, group[t.min(group.len() - 1)]));
            let mut s4 = [0f32; 4];
            dots(&rows[..group.len()], self.q, &mut s4);
            for &s in &s4[..group.len()] {
                let s = s * self.scale;
                max = max.max(s);
                scores.push(s);
            }
        }
        // The exponentials vectorise (no call per element), and so does their sum: sixteen lane
        // sums in slot order, then `lane_sum`'s tree, then the remainder.
        for s in scores.iter_mut() {
            *s = exp(*s - max);
        }
        let whole = scores.chunks_exact(16);
        let rest = whole.remainder().iter().fold(0f32, |acc, &s| acc + s);
        let mut lanes = [0f32; 16];
        for c in whole {
            for (l, &s) in lanes.iter_mut().zip(c) {
                *l += s;
            }
        }
        let sum = lane_sum(&lanes) + rest;
        weighted_values(scores, idx, self.v, self.kv_head, dst);
        let inv = 1.0 / sum;
        for o in dst.iter_mut() {
            *o *= inv;
        }
    }
}

/// Lanes of one block of value sums: 64 floats stay in registers across all keys.
const BLOCK: usize = 64;

/// `dst = Σ_j probs[j] · v[idx[j]]`, each element summed in slot order as `o + p * x` (a
/// multiply, then an add), one block of [`BLOCK`] features at a time so that the sums live in
/// registers instead of being loaded and stored once per key.
#[inline(always)]
fn weighted_values(probs: &[f32], idx: &[usize], v: &Strided, kv_head: usize, dst: &mut [f32]) {
    let d = dst.len();
    let mut start = 0;
    while start + BLOCK <= d {
        let mut acc = [0f32; BLOCK];
        for (&p, &j) in probs.iter().zip(idx) {
            let x: &[f32; BLOCK] = v.row(kv_head, j)[start..start + BLOCK]
                .try_into()
                .expect("a whole block");
            for l in 0..BLOCK {
                acc[l] += p * x[l];
            }
        }
        dst[start..start + BLOCK].copy_from_slice(&acc);
        start += BLOCK;
    }
    if start < d {
        let tail = &mut dst[start..];
        tail.fill(0.0);
        for (&p, &j) in probs.iter().zip(idx) {
            for (o, &x) in tail.iter_mut().zip(&v.row(kv_head, j)[start..]) {
                *o += p * x;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flex_view::test_tensors::*;
    use crate::CpuOps;
    use confu_core::PortableOps;

    #[test]
    fn attention_matches_portable_with_gqa_mask_and_strides() {
        let q = tensor([4, 3, 5], 1).swap_dims(0, 1).swap_dims(0, 1);
        let k = tensor([2, 9, 5], 2).slice([0..2, 0..7, 0..5]);
        let v = tensor([2, 9, 5], 3).slice([0..2, 0..7, 0..5]);
        let masked_out: Vec<bool> = (0..21).map(|i| i % 3 == 1 && i % 7 != 0).collect();
        let mask = Tensor::<Cpu, 2, Bool>::from_data(
            TensorData::new(masked_out, [3, 7]),
            &Default::default(),
        );
        let ours = CpuOps.attention(q.clone(), k.clone(), v.clone(), Some(mask.clone()), 0.4);
        let theirs = Ops::<Cpu>::attention(&PortableOps, q, k, v, Some(mask), 0.4);
        assert!(close(ours, theirs) < 1e-5);
    }

    #[test]
    fn a_row_is_bit_identical_alone_or_among_others() {
        // Eight query rows over 40 keys (d = 80: one register block and a tail), causal; each
        // row alone must give the same bits as inside the batch.
        let (rows, keys, d) = (8, 40, 80);
        let q = tensor([2, rows, d], 5);
        let k = tensor([1, keys, d], 6);
        let v = tensor([1, keys, d], 7);
        let mask_of = |r: usize| (0..keys).map(move |j| j > keys - rows + r);
        let all: Vec<bool> = (0..rows).flat_map(mask_of).collect();
        let mask = Tensor::<Cpu, 2, Bool>::from_data(
            TensorData::new(all, [rows, keys]),
            &Default::default(),
        );
        let batch: Vec<f32> = CpuOps
            .attention(q.clone(), k.clone(), v.clone(), Some(mask), 0.1)
            .into_data()
            .to_vec()
            .unwrap();
        for r in 0..rows {
            let one = Tensor::<Cpu, 2, Bool>::from_data(
                TensorData::new(mask_of(r).collect::<Vec<_>>(), [1, keys]),
                &Default::default(),
            );
            let qr = q.clone().slice([0..2, r..r + 1, 0..d]);
            let alone: Vec<f32> = CpuOps
                .attention(qr, k.clone(), v.clone(), Some(one), 0.1)
                .into_data()
                .to_vec()
                .unwrap();
            for h in 0..2 {
                let b = &batch[(h * rows + r) * d..(h * rows + r + 1) * d];
                assert_eq!(b, &alone[h * d..(h + 1) * d], "row {r}, head {h}");
            }
        }
    }
}
