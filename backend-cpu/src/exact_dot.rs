//! Dot products in one fixed summation order ([`dot_body`]): 16 lane accumulators over the
//! inner axis, the lanes summed as a tree ([`lane_sum`]: lanes `i` and `i + 8`, then `i + 4`,
//! `i + 2`, `i + 1`), then the tail. The tree is what AVX-512 reduces cheaply for 16 outputs at a
//! time and AVX2 in registers (`lane_sums`): summing lanes in sequence cost as much as the
//! multiply-adds at a width of 256. Every kernel (the AVX2 and AVX-512 tiles of `tiles` and
//! `gemm`) reproduces that order exactly, so an output never
//! depends on which kernel computed it or on which other rows shared the call — the property the
//! greedy-equality tests and ConFu's hidden rows rely on, from one-row decode to prefill.

#[cfg(target_arch = "x86_64")]
use crate::ahead::Spread;
#[cfg(target_arch = "x86_64")]
use crate::tiles::tile_avx2;
use crate::weight_elem::WeightElem;

/// Where the kernels write: output `(j, r)` (weight row `j`, input row `r`, counted from the
/// grid's origin) at element `origin + j * js + r * rs` of one buffer. The tasks of one parallel
/// call write disjoint elements of the same `[rows, out]` buffer through copies of it, so the
/// result needs no transposition or gathering afterwards.
#[derive(Clone, Copy)]
pub(crate) struct Grid {
    ptr: *mut f32,
    len: usize,
    origin: usize,
    js: usize,
    rs: usize,
}

// SAFETY: a grid is a pointer into a buffer that outlives the parallel call using it; the
// callers' tasks write disjoint elements (the contract of `Grid::set`).
unsafe impl Send for Grid {}
unsafe impl Sync for Grid {}

impl Grid {
    /// The row-major `[rows, out]` buffer `buf`: output feature `j` of input row `r` at `r * out + j`.
    pub(crate) fn rows_major(buf: &mut [f32], out: usize) -> Self {
        Self {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            origin: 0,
            js: 1,
            rs: out,
        }
    }

    /// A fresh row-major `[len / out, out]` buffer that `fill` writes through a grid, without
    /// zeroing it first (for a prefill's GEMM that zeroing was a memset of every output).
    ///
    /// # Safety
    /// `fill` writes every element of the buffer (a panic inside it is fine: the buffer is then
    /// dropped unread).
    pub(crate) unsafe fn written_rows_major(
        len: usize,
        out: usize,
        fill: impl FnOnce(Grid),
    ) -> Vec<f32> {
        let mut buf: Vec<std::mem::MaybeUninit<f32>> = Vec::with_capacity(len);
        // SAFETY: `MaybeUninit` needs no initialisation.
        buf.set_len(len);
        fill(Self {
            ptr: buf.as_mut_ptr().cast(),
            len,
            origin: 0,
            js: 1,
            rs: out,
        });
        let mut buf = std::mem::ManuallyDrop::new(buf);
        // SAFETY: every element was written (the caller's contract); `MaybeUninit<f32>` has
        // `f32`'s layout, and the allocation is handed over whole.
        Vec::from_raw_parts(buf.as_mut_ptr().cast(), len, buf.capacity())
    }

    /// The same buffer with its origin moved to weight row `j` and input row `r`.
    pub(crate) fn at(self, j: usize, r: usize) -> Self {
        Self {
            origin: self.origin + j * self.js + r * self.rs,
            ..self
        }
    }

    /// Writes `vals[i]` to output `(i, r)`: consecutive weight rows of one input row, which are
    /// consecutive elements in a row-major grid. Panics outside the buffer or on another layout.
    ///
    /// # Safety
    /// As for [`Self::set`], for every element written.
    #[inline(always)]
    pub(crate) unsafe fn set_run(&self, r: usize, vals: &[f32]) {
        let i = self.origin + r * self.rs;
        assert!(
            self.js == 1 && i + vals.len() <= self.len,
            "run outside the buffer"
        );
        std::ptr::copy_nonoverlapping(vals.as_ptr(), self.ptr.add(i), vals.len());
    }

    /// Writes output `(j, r)`; panics outside the buffer.
    ///
    /// # Safety
    /// No other thread reads or writes that element during the call that shares this grid, and
    /// the buffer is alive.
    #[inline(always)]
    pub(crate) unsafe fn set(&self, j: usize, r: usize, v: f32) {
        let i = self.origin + j * self.js + r * self.rs;
        assert!(i < self.len, "output ({j}, {r}) outside the buffer");
        *self.ptr.add(i) = v;
    }
}

/// `out[r] = dot_body(xs[r], w)` for up to four rows, loading each piece of `w` once for all of them.
/// Every row keeps its own 16 accumulators and the summation order of [`dot_body`], so a row's
/// result is bit-identical whichever rows share the call (the property the readiness tests and
/// ConFu's hidden rows rely on).
#[inline]
pub(crate) fn dots<W: WeightElem>(xs: &[&[f32]], w: &[W], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() && W::simd_ok() {
            let out = Grid::rows_major(out, 1);
            // SAFETY: the CPU supports AVX2, FMA and F16C (checked above); one thread writes
            // `out`.
            unsafe {
                match xs.len() {
                    1 => tile_avx2::<W, 1, 1>(&[w], xs, out, Spread::none(), 0),
                    2 => tile_avx2::<W, 1, 2>(&[w], xs, out, Spread::none(), 0),
                    3 => tile_avx2::<W, 1, 3>(&[w], xs, out, Spread::none(), 0),
                    _ => tile_avx2::<W, 1, 4>(&[w], &xs[..4], out, Spread::none(), 0),
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
pub(crate) fn has_avx2_fma() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    // F16C comes with every AVX2 CPU; the GEMV's half-precision loads need it.
    *HAS.get_or_init(|| {
        is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
    })
}

/// [`dot_body`] compiled for AVX2+FMA when the CPU has them, for callers that are not: outside
/// such a function `mul_add` is a call to the C library's `fmaf` per element.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_body(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot_body(a, b)
}

/// Dot product with 16 independent accumulators so that LLVM vectorises it; the summation order
/// depends only on the length, which keeps results reproducible across calls. Inlined into
/// callers compiled for AVX2+FMA, `mul_add` becomes the FMA instruction.
#[inline(always)]
pub(crate) fn dot_body<W: WeightElem>(a: &[f32], b: &[W]) -> f32 {
    const L: usize = 16;
    let mut acc = [0f32; L];
    let (ca, cb) = (a.chunks_exact(L), b.chunks_exact(L));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..L {
            acc[i] = x[i].mul_add(y[i].widen(), acc[i]);
        }
    }
    lane_sum(&acc) + tail_dot(ra, rb)
}

/// The 16 lane accumulators summed as a tree: `i + (i + 8)`, then `+ 4`, `+ 2`, `+ 1`.
#[inline(always)]
pub(crate) fn lane_sum(acc: &[f32; 16]) -> f32 {
    let s8: [f32; 8] = std::array::from_fn(|i| acc[i] + acc[i + 8]);
    half_sum(&s8)
}

/// The tree's last three levels, from the 8 sums of its first.
#[inline(always)]
fn half_sum(s8: &[f32; 8]) -> f32 {
    let s4: [f32; 4] = std::array::from_fn(|i| s8[i] + s8[i + 4]);
    (s4[0] + s4[2]) + (s4[1] + s4[3])
}

/// The elements after the last whole group of 16, in order.
#[inline(always)]
pub(crate) fn tail_dot<W: WeightElem>(x: &[f32], w: &[W]) -> f32 {
    let mut tail = 0f32;
    for (x, y) in x.iter().zip(w) {
        tail = x.mul_add(y.widen(), tail);
    }
    tail
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn values(n: usize, salt: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 + salt * 11) as f32 * 0.29).sin() * (1.0 + (i % 7) as f32))
            .collect()
    }

    #[test]
    fn lane_sum_is_the_documented_tree() {
        let acc: [f32; 16] = std::array::from_fn(|i| 1.0 + (i as f32) * 1e-7 * 3f32.powi(i as i32));
        let s8: Vec<f32> = (0..8).map(|i| acc[i] + acc[i + 8]).collect();
        let s4: Vec<f32> = (0..4).map(|i| s8[i] + s8[i + 4]).collect();
        let s2: Vec<f32> = (0..2).map(|i| s4[i] + s4[i + 2]).collect();
        assert_eq!(lane_sum(&acc), s2[0] + s2[1]);
    }

    #[test]
    fn dots_give_dot_body_bit_for_bit() {
        // 67: four pieces of 16 and a tail of 3.
        for inner in [16, 67, 256] {
            let xs: Vec<Vec<f32>> = (0..4).map(|r| values(inner, r)).collect();
            let w = values(inner, 9);
            let expected: Vec<f32> = xs.iter().map(|x| dot_body(x, &w)).collect();
            let rows: Vec<&[f32]> = xs.iter().map(|x| x.as_slice()).collect();
            for n in 1..=4 {
                let mut got = [0f32; 4];
                dots(&rows[..n], &w, &mut got);
                assert_eq!(got[..n], expected[..n], "dots, {n} rows of {inner}");
            }
        }
    }
}
