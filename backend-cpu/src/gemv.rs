//! CPU kernels for decode-shaped work, overriding the portable ops where burn's general kernels
//! are either slower or batch-dependent:
//!
//! - **linear with few rows** (decode, small trees): a streaming matrix-vector product. Each output
//!   is one dot product over a contiguous weight row, so the weights are read once at memory speed,
//!   and a row's result never depends on which other rows share the call.
//! - **attention**: one task per (head, query row), visiting only the keys its mask lets it see, in
//!   slot order. Hidden keys cost nothing (tree and contemplate masks are mostly hidden), and a
//!   row's output is bit-identical whatever other rows or hidden slots the forward carries — the
//!   property ConFu needs so that contemplate rows leave real logits untouched.
//!
//! Larger matmuls (prefill) stay with burn-flex's blocked GEMM.

use burn::backend::flex::FlexTensor;
use burn::tensor::{Bool, DType, Tensor, TensorData, TensorPrimitive};
use confu_core::ops::portable;
use confu_core::Ops;
use rayon::prelude::*;

use crate::Cpu;

/// Up to this many rows, `linear` streams the weights instead of calling the blocked GEMM.
pub const GEMV_MAX_ROWS: usize = 8;

/// Output features per parallel task in the GEMV: big enough to amortise scheduling, small enough
/// to balance two to a few dozen cores.
const GEMV_CHUNK: usize = 64;

/// The CPU op set.
#[derive(Debug, Default, Clone, Copy)]
pub struct CpuOps;

impl Ops<Cpu> for CpuOps {
    fn linear(&self, x: Tensor<Cpu, 2>, w: &Tensor<Cpu, 2>) -> Tensor<Cpu, 2> {
        let [rows, inner] = x.dims();
        let [out, _] = w.dims();
        let wt = float(w.clone());
        let Some(w_data) = wt.as_slice::<f32>() else {
            return portable::linear(x, w);
        };
        if rows == 0 || rows > GEMV_MAX_ROWS {
            return portable::linear(x, w);
        }
        let device = x.device();
        let x_host = host_f32(x);
        let xs: Vec<&[f32]> = x_host.chunks_exact(inner).collect();
        let mut result = vec![0f32; out * rows];
        // Computed as [out, rows] so each task owns a contiguous piece, then transposed. Each
        // weight row is loaded once for up to four input rows.
        result
            .par_chunks_mut(GEMV_CHUNK * rows)
            .enumerate()
            .for_each(|(chunk, dst)| {
                let first = chunk * GEMV_CHUNK;
                for (j, outs) in dst.chunks_mut(rows).enumerate() {
                    let w_row = &w_data[(first + j) * inner..(first + j + 1) * inner];
                    for (block, o) in xs.chunks(4).zip(outs.chunks_mut(4)) {
                        dots(block, w_row, o);
                    }
                }
            });
        let data = if rows == 1 {
            result
        } else {
            let mut t = vec![0f32; out * rows];
            for j in 0..out {
                for r in 0..rows {
                    t[r * out + j] = result[j * rows + r];
                }
            }
            t
        };
        Tensor::from_data(TensorData::new(data, [rows, out]), &device)
    }

    fn rope(
        &self,
        x: Tensor<Cpu, 3>,
        cos: &Tensor<Cpu, 2>,
        sin: &Tensor<Cpu, 2>,
    ) -> Tensor<Cpu, 3> {
        // The portable body is six strided burn ops and four temporaries per call; this is one
        // pass. `x * c + r * s` as separate multiplies and an add, as the portable ops round it,
        // so the result is bit-identical.
        let [rows, heads, d] = x.dims();
        let (xt, ct, st) = (float(x.clone()), float(cos.clone()), float(sin.clone()));
        let (Some(xs), Some(cs), Some(ss)) = (
            Strided::of(&xt),
            ct.as_slice::<f32>().filter(|c| c.len() == rows * d),
            st.as_slice::<f32>().filter(|s| s.len() == rows * d),
        ) else {
            return portable::rope(x, cos, sin);
        };
        let half = d / 2;
        let mut out = vec![0f32; rows * heads * d];
        for (i, dst) in out.chunks_exact_mut(d).enumerate() {
            let (r, h) = (i / heads, i % heads);
            let src = xs.row(r, h);
            let (c, s) = (&cs[r * d..(r + 1) * d], &ss[r * d..(r + 1) * d]);
            for j in 0..d {
                let rotated = if j < half {
                    -src[j + half]
                } else {
                    src[j - half]
                };
                dst[j] = src[j] * c[j] + rotated * s[j];
            }
        }
        Tensor::from_data(TensorData::new(out, [rows, heads, d]), &x.device())
    }

    fn write_slots(
        &self,
        dst: Tensor<Cpu, 3>,
        start: usize,
        rows: Tensor<Cpu, 3>,
    ) -> Tensor<Cpu, 3> {
        // burn-flex's `slice_assign` copies the whole destination even when nothing else holds
        // it: for the KV cache that was a copy of every layer's cache on every forward.
        let [a, slots, d] = dst.dims();
        let [ra, n, rd] = rows.dims();
        let mut dt = float(dst);
        let rt = float(rows);
        let whole = dt.layout().contiguous_offsets() == Some((0, a * slots * d))
            && dt.bytes().len() == a * slots * d * 4;
        if let (true, true, Some(src)) = (
            whole && ra == a && rd == d && start + n <= slots && dt.dtype() == DType::F32,
            dt.is_unique(),
            Strided::of(&rt),
        ) {
            let buf = dt.try_storage_mut::<f32>().expect("checked unique");
            for h in 0..a {
                for r in 0..n {
                    let at = (h * slots + start + r) * d;
                    buf[at..at + d].copy_from_slice(src.row(h, r));
                }
            }
            return Tensor::from_primitive(TensorPrimitive::Float(dt));
        }
        let dst = Tensor::<Cpu, 3>::from_primitive(TensorPrimitive::Float(dt));
        let rows = Tensor::<Cpu, 3>::from_primitive(TensorPrimitive::Float(rt));
        dst.slice_assign([0..ra, start..start + n, 0..rd], rows)
    }

    fn attention(
        &self,
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
        let mut out = vec![0f32; heads * rows * d];
        out.par_chunks_mut(d).enumerate().for_each_init(
            || {
                (
                    Vec::<f32>::with_capacity(keys),
                    Vec::<usize>::with_capacity(keys),
                    vec![0f32; d],
                )
            },
            |(scores, idx, qrow), (task, dst)| {
                let (h, r) = (task / rows, task % rows);
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
        Tensor::from_data(TensorData::new(out, [heads, rows, d]), &device)
    }
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
    /// the same way (the dot products are [`dot_body`]'s, the sums separate multiplies and adds).
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
        let mut max = f32::NEG_INFINITY;
        for j in 0..self.keys {
            if self.masked_out.is_some_and(|m| m[j]) {
                continue;
            }
            let s = dot_body(self.q, self.k.row(self.kv_head, j)) * self.scale;
            max = max.max(s);
            scores.push(s);
            idx.push(j);
        }
        let mut sum = 0f32;
        for s in scores.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        dst.fill(0.0);
        for (&p, &j) in scores.iter().zip(idx.iter()) {
            for (o, &x) in dst.iter_mut().zip(self.v.row(self.kv_head, j)) {
                *o += p * x;
            }
        }
        let inv = 1.0 / sum;
        for o in dst.iter_mut() {
            *o *= inv;
        }
    }
}

fn float<const D: usize>(t: Tensor<Cpu, D>) -> FlexTensor {
    match t.into_primitive() {
        TensorPrimitive::Float(f) => f,
        TensorPrimitive::QFloat(_) => unreachable!("confu keeps weights and activations in float"),
    }
}

fn host_f32(x: Tensor<Cpu, 2>) -> Vec<f32> {
    let ft = float(x.clone());
    match ft.as_slice::<f32>() {
        Some(s) => s.to_vec(),
        None => x.into_data().to_vec().expect("f32 activations"),
    }
}

/// Read-only view of a `[a, b, d]` f32 tensor whose last axis is contiguous.
struct Strided<'a> {
    data: &'a [f32],
    offset: usize,
    s0: usize,
    s1: usize,
    d: usize,
}

impl<'a> Strided<'a> {
    fn of(t: &'a FlexTensor) -> Option<Self> {
        if t.dtype() != DType::F32 {
            return None;
        }
        let layout = t.layout();
        let strides = layout.strides();
        if strides.len() != 3 || strides[2] != 1 || strides[0] < 0 || strides[1] < 0 {
            return None;
        }
        Some(Self {
            data: t.storage::<f32>(),
            offset: layout.start_offset(),
            s0: strides[0] as usize,
            s1: strides[1] as usize,
            d: layout.shape()[2],
        })
    }

    fn row(&self, a: usize, b: usize) -> &'a [f32] {
        let start = self.offset + a * self.s0 + b * self.s1;
        &self.data[start..start + self.d]
    }

    fn read(&self, a: usize, b: usize, dst: &mut [f32]) {
        dst.copy_from_slice(self.row(a, b));
    }
}

/// `out[r] = dot_body(xs[r], w)` for up to four rows, loading each piece of `w` once for all of them.
/// Every row keeps its own 16 accumulators and the summation order of [`dot_body`], so a row's
/// result is bit-identical whichever rows share the call (the property the readiness tests and
/// ConFu's hidden rows rely on).
#[inline]
fn dots(xs: &[&[f32]], w: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            unsafe {
                match xs.len() {
                    1 => dots_avx2::<1>(xs, w, out),
                    2 => dots_avx2::<2>(xs, w, out),
                    3 => dots_avx2::<3>(xs, w, out),
                    _ => dots_avx2::<4>(xs, w, out),
                }
            }
            return;
        }
    }
    for (x, o) in xs.iter().zip(out.iter_mut()) {
        *o = dot_body(x, w);
    }
}

#[cfg(target_arch = "x86_64")]
fn has_avx2_fma() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}

/// [`dots`] for `R` rows with AVX2 FMA: lanes 0..8 and 8..16 of a row's accumulators live in
/// two registers, so `R = 4` keeps 8 accumulators and the two weight registers in the 16 ymm
/// registers. Lane `i` sees exactly the fused multiply-adds of `dot_body`'s `acc[i]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dots_avx2<const R: usize>(xs: &[&[f32]], w: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    const L: usize = 16;
    let n = w.len();
    let body = n - n % L;
    let mut lo = [_mm256_setzero_ps(); R];
    let mut hi = [_mm256_setzero_ps(); R];
    let mut i = 0;
    while i < body {
        // SAFETY: i + 16 <= body <= n, and every row has n elements.
        let w0 = _mm256_loadu_ps(w.as_ptr().add(i));
        let w1 = _mm256_loadu_ps(w.as_ptr().add(i + 8));
        for r in 0..R {
            let x = xs[r].as_ptr().add(i);
            lo[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x), w0, lo[r]);
            hi[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x.add(8)), w1, hi[r]);
        }
        i += L;
    }
    for r in 0..R {
        let mut acc = [0f32; L];
        _mm256_storeu_ps(acc.as_mut_ptr(), lo[r]);
        _mm256_storeu_ps(acc.as_mut_ptr().add(8), hi[r]);
        let mut tail = 0f32;
        for (x, y) in xs[r][body..].iter().zip(&w[body..]) {
            tail = x.mul_add(*y, tail);
        }
        let mut s = 0f32;
        for v in acc {
            s += v;
        }
        out[r] = s + tail;
    }
}

/// Dot product with 16 independent accumulators so that LLVM vectorises it; the summation order
/// depends only on the length, which keeps results reproducible across calls. Inlined into
/// callers compiled for AVX2+FMA, `mul_add` becomes the FMA instruction.
#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 16;
    let mut acc = [0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..L {
            acc[i] = x[i].mul_add(y[i], acc[i]);
        }
    }
    let mut tail = 0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail = x.mul_add(*y, tail);
    }
    let mut s = 0f32;
    for v in acc {
        s += v;
    }
    s + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use confu_core::PortableOps;

    fn tensor<const D: usize>(shape: [usize; D], salt: usize) -> Tensor<Cpu, D> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| ((i * 31 + salt * 17) as f32 * 0.37).sin())
            .collect();
        Tensor::from_data(TensorData::new(v, shape), &Default::default())
    }

    fn close<const D: usize>(a: Tensor<Cpu, D>, b: Tensor<Cpu, D>) -> f32 {
        let a: Vec<f32> = a.into_data().to_vec().unwrap();
        let b: Vec<f32> = b.into_data().to_vec().unwrap();
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    #[test]
    fn gemv_matches_portable_linear() {
        for rows in [1, 3, 8, 9] {
            let x = tensor([rows, 67], 1);
            let w = tensor([130, 67], 2);
            let ours = CpuOps.linear(x.clone(), &w);
            let theirs = Ops::<Cpu>::linear(&PortableOps, x, &w);
            assert!(close(ours, theirs) < 1e-4, "rows {rows}");
        }
    }

    #[test]
    fn gemv_rows_are_bit_identical_whatever_rows_share_the_call() {
        let x = tensor([7, 67], 4);
        let w = tensor([50, 67], 5);
        let all: Vec<f32> = CpuOps.linear(x.clone(), &w).into_data().to_vec().unwrap();
        for r in 0..7 {
            let one: Vec<f32> = CpuOps
                .linear(x.clone().slice([r..r + 1, 0..67]), &w)
                .into_data()
                .to_vec()
                .unwrap();
            assert_eq!(one, all[r * 50..(r + 1) * 50], "row {r}");
            let scalar: Vec<f32> = (0..50)
                .map(|j| {
                    let xr: Vec<f32> = x
                        .clone()
                        .slice([r..r + 1, 0..67])
                        .into_data()
                        .to_vec()
                        .unwrap();
                    let wj: Vec<f32> = w
                        .clone()
                        .slice([j..j + 1, 0..67])
                        .into_data()
                        .to_vec()
                        .unwrap();
                    dot_body(&xr, &wj)
                })
                .collect();
            assert_eq!(one, scalar, "row {r}: SIMD kernel differs from dot_body");
        }
    }

    #[test]
    fn rope_is_bit_identical_to_portable() {
        // A strided x (as q and k leave the projections) and odd row counts.
        for rows in [1, 5] {
            let x = tensor([4, rows, 8], 3).swap_dims(0, 1);
            let cos = tensor([rows, 8], 4);
            let sin = tensor([rows, 8], 5);
            let ours: Vec<f32> = CpuOps
                .rope(x.clone(), &cos, &sin)
                .into_data()
                .to_vec()
                .unwrap();
            let theirs: Vec<f32> = portable::rope(x, &cos, &sin).into_data().to_vec().unwrap();
            assert_eq!(ours, theirs, "rows {rows}");
        }
    }

    #[test]
    fn write_slots_matches_portable_in_place_and_when_shared() {
        let dst = tensor([2, 9, 5], 1);
        // Rows as attention produces them: a transposed, non-contiguous view.
        let rows = tensor([3, 2, 5], 2).swap_dims(0, 1);
        let expected: Vec<f32> =
            Ops::<Cpu>::write_slots(&PortableOps, dst.clone(), 4, rows.clone())
                .into_data()
                .to_vec()
                .unwrap();
        // `dst` is shared with `kept` here, so the kernel must not write into `kept`.
        let kept = dst.clone();
        let shared: Vec<f32> = CpuOps
            .write_slots(dst, 4, rows.clone())
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(shared, expected);
        let before: Vec<f32> = kept.clone().into_data().to_vec().unwrap();
        assert_eq!(
            before,
            tensor([2, 9, 5], 1).into_data().to_vec::<f32>().unwrap()
        );
        let alone: Vec<f32> = CpuOps
            .write_slots(kept, 4, rows)
            .into_data()
            .to_vec()
            .unwrap();
        assert_eq!(alone, expected);
    }

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
}
