//! Dot products in one fixed summation order ([`dot_body`]): 16 lane accumulators over the
//! inner axis, the lanes summed as a tree ([`lane_sum`]: lanes `i` and `i + 8`, then `i + 4`,
//! `i + 2`, `i + 1`), then the tail. The tree is what AVX-512 reduces cheaply for 16 outputs at a
//! time ([`sums16`]): summing lanes in sequence cost as much as the multiply-adds at a width of
//! 256. Every kernel here (AVX2 rows,
//! AVX-512 tiles of weight rows x input rows) reproduces that order exactly, so an output never
//! depends on which kernel computed it or on which other rows shared the call — the property the
//! greedy-equality tests and ConFu's hidden rows rely on, from one-row decode to prefill.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

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
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            unsafe {
                match xs.len() {
                    1 => dots_avx2::<W, 1>(xs, w, out),
                    2 => dots_avx2::<W, 2>(xs, w, out),
                    3 => dots_avx2::<W, 3>(xs, w, out),
                    _ => dots_avx2::<W, 4>(xs, w, out),
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

/// [`dots`] for `R` rows with AVX2 FMA: lanes 0..8 and 8..16 of a row's accumulators live in
/// two registers, so `R = 4` keeps 8 accumulators and the two weight registers in the 16 ymm
/// registers. Lane `i` sees exactly the fused multiply-adds of `dot_body`'s `acc[i]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dots_avx2<W: WeightElem, const R: usize>(xs: &[&[f32]], w: &[W], out: &mut [f32]) {
    const L: usize = 16;
    let n = w.len();
    let body = n - n % L;
    let mut lo = [_mm256_setzero_ps(); R];
    let mut hi = [_mm256_setzero_ps(); R];
    let mut i = 0;
    while i < body {
        // SAFETY: i + 16 <= body <= n, and every row has n elements.
        let w0 = W::load8(w.as_ptr().add(i));
        let w1 = W::load8(w.as_ptr().add(i + 8));
        for r in 0..R {
            let x = xs[r].as_ptr().add(i);
            lo[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x), w0, lo[r]);
            hi[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x.add(8)), w1, hi[r]);
        }
        i += L;
    }
    for r in 0..R {
        // The tree's first level: lane i + lane i + 8, in one add.
        let mut s8 = [0f32; 8];
        _mm256_storeu_ps(s8.as_mut_ptr(), _mm256_add_ps(lo[r], hi[r]));
        out[r] = half_sum(&s8) + tail_dot(&xs[r][body..], &w[body..]);
    }
}

/// Output `(j, r)` of `out` = `dot_body(xs[r], ws[j])` for up to four weight rows and four input
/// rows, with AVX-512: one 16-lane register per (weight row, input row) holds exactly the
/// accumulators of [`dot_body`], so every output is bit-identical to it (and to the other
/// kernels) whatever rows share the tile.
#[cfg(target_arch = "x86_64")]
///
/// # Safety
/// As for [`Grid::set`], for every output of the tile.
pub(crate) unsafe fn tile<W: WeightElem>(ws: &[&[W]], xs: &[&[f32]], out: Grid, ahead: &[W]) {
    macro_rules! go {
        ($($j:literal, $r:literal);*) => {
            match (ws.len(), xs.len()) {
                // SAFETY: only called when the CPU supports AVX-512F (`has_avx512f`).
                $(($j, $r) => unsafe { tile_avx512::<W, $j, $r>(ws, xs, out, ahead) },)*
                _ => unreachable!("tiles are at most 4 x 4"),
            }
        };
    }
    go!(1,1; 1,2; 1,3; 1,4; 2,1; 2,2; 2,3; 2,4; 3,1; 3,2; 3,3; 3,4; 4,1; 4,2; 4,3; 4,4)
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn tile<W: WeightElem>(_: &[&[W]], _: &[&[f32]], _: Grid, _: &[W]) {
    unreachable!("AVX-512 tiles exist only on x86-64")
}

#[cfg(target_arch = "x86_64")]
pub(crate) fn has_avx512f() -> bool {
    use std::sync::OnceLock;
    static HAS: OnceLock<bool> = OnceLock::new();
    *HAS.get_or_init(|| is_x86_feature_detected!("avx512f"))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<W: WeightElem, const J: usize, const R: usize>(
    ws: &[&[W]],
    xs: &[&[f32]],
    out: Grid,
    ahead: &[W],
) {
    const L: usize = 16;
    let n = ws[0].len();
    let body = n - n % L;
    let mut acc = [[_mm512_setzero_ps(); R]; J];
    let mut i = 0;
    while i < body {
        // A hint only: the address stays inside `ahead`.
        for j in 0..4 {
            if j * n + i < ahead.len() {
                _mm_prefetch::<_MM_HINT_T0>(ahead.as_ptr().add(j * n + i) as *const i8);
            }
        }
        // SAFETY: i + 16 <= body <= n, and every row has n elements.
        let mut w = [_mm512_setzero_ps(); J];
        for j in 0..J {
            w[j] = W::load16(ws[j].as_ptr().add(i));
        }
        for r in 0..R {
            let x = _mm512_loadu_ps(xs[r].as_ptr().add(i));
            for j in 0..J {
                acc[j][r] = _mm512_fmadd_ps(x, w[j], acc[j][r]);
            }
        }
        i += L;
    }
    let flat: [__m512; 16] = std::array::from_fn(|t| {
        if t < J * R {
            acc[t / R][t % R]
        } else {
            _mm512_setzero_ps()
        }
    });
    let mut sums = [0f32; 16];
    lane_sums(&flat[..J * R], &mut sums);
    for j in 0..J {
        for r in 0..R {
            out.set(
                j,
                r,
                sums[j * R + r] + tail_dot(&xs[r][body..], &ws[j][body..]),
            );
        }
    }
}

/// `sums[t] = lane_sum(acc[t])` for every accumulator: sixteen at a time, or one by one when
/// there are too few to fill [`sums16`] (a decode step's tiles hold four).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn lane_sums(acc: &[__m512], sums: &mut [f32]) {
    const L: usize = 16;
    assert!(sums.len() >= acc.len());
    if acc.len() < 6 {
        for (s, a) in sums.iter_mut().zip(acc) {
            *s = lane_sum_one(*a);
        }
        return;
    }
    assert!(sums.len() >= acc.len().next_multiple_of(L));
    for first in (0..acc.len()).step_by(L) {
        // sums16's lane 4q + m holds its input 4m + q: inputs fed in that order land in place.
        let group: [__m512; L] = std::array::from_fn(|s| {
            let t = first + 4 * (s % 4) + s / 4;
            if t < acc.len() {
                acc[t]
            } else {
                _mm512_setzero_ps()
            }
        });
        _mm512_storeu_ps(sums.as_mut_ptr().add(first), sums16(&group));
    }
}

/// [`lane_sum`] of one vector: halves added, then quarters, pairs, and the last two lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn lane_sum_one(a: __m512) -> f32 {
    // The upper half through a 64-bit-lane extract: AVX-512F has no 32-bit one (that is DQ).
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(a)));
    let s8 = _mm256_add_ps(_mm512_castps512_ps256(a), hi);
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2)))
}

/// The lane sums ([`lane_sum`]) of 16 vectors in one vector: lane `4q + m` holds the sum of
/// input `4m + q`. Three shuffles and one add per input, where reducing each vector alone costs
/// four dependent shuffle-add pairs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sums16(a: &[__m512; 16]) -> __m512 {
    // Level 1, lanes i + i + 8: pairs (a, b) -> [a's 8 sums | b's 8 sums].
    let u: [__m512; 8] = std::array::from_fn(|p| {
        let (x, y) = (a[2 * p], a[2 * p + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x44>(x, y),
            _mm512_shuffle_f32x4::<0xEE>(x, y),
        )
    });
    // Level 2, i + i + 4: 128-bit lane q of v[t] holds input 4t + q's four sums.
    let v: [__m512; 4] = std::array::from_fn(|t| {
        let (x, y) = (u[2 * t], u[2 * t + 1]);
        _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(x, y),
            _mm512_shuffle_f32x4::<0xDD>(x, y),
        )
    });
    // Level 3, i + i + 2: lane q of w[h] holds [4(2h) + q's two sums, 4(2h + 1) + q's two sums].
    let w: [__m512; 2] = std::array::from_fn(|h| {
        let (x, y) = (v[2 * h], v[2 * h + 1]);
        _mm512_add_ps(
            _mm512_shuffle_ps::<0x44>(x, y),
            _mm512_shuffle_ps::<0xEE>(x, y),
        )
    });
    // Level 4, i + i + 1.
    _mm512_add_ps(
        _mm512_shuffle_ps::<0x88>(w[0], w[1]),
        _mm512_shuffle_ps::<0xDD>(w[0], w[1]),
    )
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
mod tests {
    use super::*;

    fn values(n: usize, salt: usize) -> Vec<f32> {
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
    fn every_kernel_gives_dot_body_bit_for_bit() {
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
            #[cfg(target_arch = "x86_64")]
            if has_avx512f() {
                let ws: Vec<Vec<f32>> = (0..4).map(|j| values(inner, 20 + j)).collect();
                let wrows: Vec<&[f32]> = ws.iter().map(|w| w.as_slice()).collect();
                let mut buf = vec![0f32; 4 * 4];
                // SAFETY: one thread writes the whole buffer.
                unsafe { tile(&wrows, &rows, Grid::rows_major(&mut buf, 4), &[]) };
                for r in 0..4 {
                    for j in 0..4 {
                        assert_eq!(
                            buf[r * 4 + j],
                            dot_body(rows[r], wrows[j]),
                            "tile ({j}, {r})"
                        );
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn lane_sums_reduce_each_accumulator_in_place() {
        if !has_avx512f() {
            return;
        }
        for n in [1, 5, 16, 24] {
            let lanes: Vec<[f32; 16]> = (0..n)
                .map(|t| std::array::from_fn(|i| ((t * 16 + i) as f32 * 0.71).cos() * 1e3))
                .collect();
            let mut sums = vec![0f32; 32];
            // SAFETY: AVX-512F is available (checked above).
            unsafe {
                let acc: Vec<__m512> = lanes.iter().map(|l| _mm512_loadu_ps(l.as_ptr())).collect();
                lane_sums(&acc, &mut sums);
            }
            for (t, l) in lanes.iter().enumerate() {
                assert_eq!(sums[t], lane_sum(l), "accumulator {t} of {n}");
            }
        }
    }
}
