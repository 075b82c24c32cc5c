//! Register tiles of weight rows x input rows for the GEMV ([`crate::gemv`]), with the widest
//! vectors the CPU has: AVX-512 (one 16-lane register per output) or AVX2 (two 8-lane registers
//! per output, lanes 0..8 and 8..16). Either way each output's accumulators hold exactly the 16
//! lanes of [`dot_body`] and are summed by its tree, so every output is bit-identical to
//! `dot_body` and to every other kernel, whatever rows share the tile.
//!
//! A tile exists to reuse loads: a weight piece feeds every input row of the tile and an input
//! piece every weight row, and the independent accumulators hide the multiply-add latency (one
//! row against one weight row has only one or two dependency chains, a quarter of what two FMA
//! units need).

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

#[cfg(all(test, target_arch = "x86_64"))]
use crate::exact_dot::lane_sum;
#[allow(unused_imports)]
use crate::exact_dot::{dot_body, Grid};
#[cfg(target_arch = "x86_64")]
use crate::exact_dot::{has_avx2_fma, lane_sum_avx2, tail_dot};
use crate::weight_elem::WeightElem;

/// Output `(j, r)` of `out` = `dot_body(xs[r], ws[j])` for up to four weight rows and four input
/// rows (`ahead`: the next tile's weight rows, prefetched while these are read). Only where
/// [`has_tiles`] says the CPU can.
///
/// # Safety
/// [`has_tiles`] holds for `W`, and as for [`Grid::set`], for every output of the tile.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn tile<W: WeightElem>(ws: &[&[W]], xs: &[&[f32]], out: Grid, ahead: &[W]) {
    assert!(
        (1..=4).contains(&ws.len()) && (1..=4).contains(&xs.len()),
        "tiles are at most 4 x 4"
    );
    if has_avx512f() {
        macro_rules! go {
            ($($j:literal, $r:literal);*) => {
                match (ws.len(), xs.len()) {
                    // SAFETY: the CPU supports AVX-512F (checked above).
                    $(($j, $r) => unsafe { tile_avx512::<W, $j, $r>(ws, xs, out, ahead) },)*
                    _ => unreachable!("tiles are at most 4 x 4"),
                }
            };
        }
        go!(1,1; 1,2; 1,3; 1,4; 2,1; 2,2; 2,3; 2,4; 3,1; 3,2; 3,3; 3,4; 4,1; 4,2; 4,3; 4,4)
    } else {
        // AVX2 has 16 registers, two per output: passes of 4 x 1, 2 x 2 or 2 x 3 outputs (at
        // most 12 accumulators; a 2 x 3 pass reads its input rows from memory in the
        // multiply-adds), four input rows as two 2 x 2 passes. The weight rows stay in L1
        // between passes.
        let (rows_per, outs_per) = match xs.len() {
            1 => (1, 4),
            3 => (3, 2),
            _ => (2, 2),
        };
        let mut first = true;
        for (q, rows) in xs.chunks(rows_per).enumerate() {
            for (p, group) in ws.chunks(outs_per).enumerate() {
                let ahead = if first { ahead } else { &ahead[..0] };
                first = false;
                let out = out.at(p * outs_per, q * rows_per);
                macro_rules! go {
                    ($($j:literal, $r:literal);*) => {
                        match (group.len(), rows.len()) {
                            // SAFETY: the CPU supports AVX2, FMA and F16C (`has_tiles`).
                            $(($j, $r) => unsafe { tile_avx2::<W, $j, $r>(group, rows, out, ahead) },)*
                            _ => unreachable!("AVX2 passes are at most 4 x 1, 2 x 2 or 2 x 3"),
                        }
                    };
                }
                go!(1,1; 2,1; 3,1; 4,1; 1,2; 2,2; 1,3; 2,3)
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) unsafe fn tile<W: WeightElem>(_: &[&[W]], _: &[&[f32]], _: Grid, _: &[W]) {
    unreachable!("register tiles exist only on x86-64")
}

/// Whether [`tile`] runs on this CPU for weights of type `W`.
pub(crate) fn has_tiles<W: WeightElem>() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        W::simd_ok() && (has_avx512f() || has_avx2_fma())
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// [`tile`] for `J` weight rows and `R` input rows with AVX2: lanes 0..8 and 8..16 of output
/// `(j, r)` live in `lo[j][r]` and `hi[j][r]`, each lane seeing exactly the fused multiply-adds
/// of `dot_body`'s accumulator.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn tile_avx2<W: WeightElem, const J: usize, const R: usize>(
    ws: &[&[W]],
    xs: &[&[f32]],
    out: Grid,
    ahead: &[W],
) {
    const L: usize = 16;
    let n = ws[0].len();
    assert!(ws.iter().all(|w| w.len() == n) && xs.iter().all(|x| x.len() == n));
    let body = n - n % L;
    let mut lo = [[_mm256_setzero_ps(); R]; J];
    let mut hi = [[_mm256_setzero_ps(); R]; J];
    let mut i = 0;
    while i < body {
        for j in 0..J {
            if j * n + i < ahead.len() {
                // A hint only: the address stays inside `ahead`.
                _mm_prefetch::<_MM_HINT_T0>(ahead.as_ptr().add(j * n + i) as *const i8);
            }
        }
        // SAFETY: i + 16 <= body <= n, and every row has n elements (asserted above).
        let w0: [__m256; J] = std::array::from_fn(|j| W::load8(ws[j].as_ptr().add(i)));
        let w1: [__m256; J] = std::array::from_fn(|j| W::load8(ws[j].as_ptr().add(i + 8)));
        for r in 0..R {
            let x = xs[r].as_ptr().add(i);
            let (x0, x1) = (_mm256_loadu_ps(x), _mm256_loadu_ps(x.add(8)));
            for j in 0..J {
                lo[j][r] = _mm256_fmadd_ps(x0, w0[j], lo[j][r]);
                hi[j][r] = _mm256_fmadd_ps(x1, w1[j], hi[j][r]);
            }
        }
        i += L;
    }
    for j in 0..J {
        for r in 0..R {
            let sum = lane_sum_avx2(lo[j][r], hi[j][r]);
            out.set(j, r, sum + tail_dot(&xs[r][body..], &ws[j][body..]));
        }
    }
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

/// [`crate::exact_dot::lane_sum`] of one vector: halves added, then quarters, pairs, and the last two lanes.
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

/// The lane sums ([`crate::exact_dot::lane_sum`]) of 16 vectors in one vector: lane `4q + m` holds the sum of
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exact_dot::tests::values;
    use half::bf16;

    /// Every tile shape against `dot_body`, for f32 and bf16 weights, on whichever tile kernel
    /// this CPU runs (AVX-512 or AVX2).
    fn check_tiles<W: WeightElem>(widen: impl Fn(f32) -> W) {
        if !has_tiles::<W>() {
            return;
        }
        // 67: four pieces of 16 and a tail of 3.
        for inner in [16, 67, 256] {
            let xs: Vec<Vec<f32>> = (0..4).map(|r| values(inner, r)).collect();
            let ws: Vec<Vec<W>> = (0..4)
                .map(|j| values(inner, 20 + j).into_iter().map(&widen).collect())
                .collect();
            let rows: Vec<&[f32]> = xs.iter().map(|x| x.as_slice()).collect();
            let wrows: Vec<&[W]> = ws.iter().map(|w| w.as_slice()).collect();
            let ahead: Vec<W> = ws.concat();
            for nj in 1..=4 {
                for nr in 1..=4 {
                    let mut buf = vec![f32::NAN; 4 * 4];
                    // SAFETY: one thread writes the buffer; the CPU can (checked above).
                    unsafe {
                        tile(
                            &wrows[..nj],
                            &rows[..nr],
                            Grid::rows_major(&mut buf, 4),
                            &ahead,
                        )
                    };
                    for r in 0..nr {
                        for j in 0..nj {
                            assert_eq!(
                                buf[r * 4 + j].to_bits(),
                                dot_body(rows[r], wrows[j]).to_bits(),
                                "tile {nj} x {nr}, output ({j}, {r}), inner {inner}"
                            );
                        }
                    }
                    let untouched = (0..16).filter(|&k| k % 4 >= nj || k / 4 >= nr);
                    assert!(
                        untouched.into_iter().all(|k| buf[k].is_nan()),
                        "wrote outside the tile"
                    );
                }
            }
        }
    }

    #[test]
    fn every_tile_gives_dot_body_bit_for_bit() {
        check_tiles::<f32>(|v| v);
        check_tiles::<bf16>(bf16::from_f32);
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
