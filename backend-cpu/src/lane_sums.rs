//! The lane sums of [`crate::exact_dot::lane_sum`]'s tree, in registers: for one AVX2
//! accumulator held as two halves ([`lane_sum_avx2`]), and for AVX-512 accumulators one at a time
//! or sixteen at once ([`lane_sums`]). Summing the lanes in sequence would cost as much as the
//! multiply-adds at a width of 256.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// [`crate::exact_dot::lane_sum`] of an accumulator held as lanes 0..8 (`lo`) and 8..16
/// (`hi`): the halves added (`i + (i + 8)`), then `+ 4`, `+ 2`, `+ 1`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn lane_sum_avx2(lo: __m256, hi: __m256) -> f32 {
    let s8 = _mm256_add_ps(lo, hi);
    let s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps::<1>(s8));
    let s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps::<1>(s2, s2)))
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

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::exact_dot::lane_sum;
    use crate::exact_dot::tests::values;
    use crate::tiles::has_avx512f;

    fn accumulators(n: usize) -> Vec<[f32; 16]> {
        (0..n)
            .map(|t| std::array::from_fn(|i| ((t * 16 + i) as f32 * 0.71).cos() * 1e3))
            .collect()
    }

    #[test]
    fn lane_sums_reduce_each_accumulator_in_place() {
        if !has_avx512f() {
            return;
        }
        for n in [1, 5, 16, 24] {
            let lanes = accumulators(n);
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

    #[test]
    fn the_avx2_lane_sum_is_the_tree() {
        if !crate::exact_dot::has_avx2_fma() {
            return;
        }
        for t in 0..8 {
            let v = values(16, t);
            let acc: [f32; 16] = std::array::from_fn(|i| v[i] * 1e3f32.powi(i as i32 % 3));
            // SAFETY: AVX2 and FMA are available (checked above).
            let got = unsafe {
                lane_sum_avx2(
                    _mm256_loadu_ps(acc.as_ptr()),
                    _mm256_loadu_ps(acc[8..].as_ptr()),
                )
            };
            assert_eq!(got.to_bits(), lane_sum(&acc).to_bits(), "accumulator {t}");
        }
    }
}
