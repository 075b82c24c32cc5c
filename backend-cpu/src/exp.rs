//! The exponential of the softmax and the SiLU gate, in a form a loop vectorises: libm's `expf`
//! is a call per element, which no loop can vectorise. Only `mul_add`, adds, multiplies and
//! integer steps, so every build computes the same bits: in a function compiled with FMA the
//! `mul_add`s are FMA instructions; elsewhere they are exact library calls (slow), which is why
//! the callers run their loops in FMA-enabled copies where the CPU has FMA.

/// `e^x` within 2 ulp of the exact value for `x` in `[-87, 88]`, clamped outside (`e^-87`, which
/// neither a softmax over a maximum of `e^0 = 1` nor a sigmoid can tell from 0; `e^88` beyond).
/// NaN stays NaN.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split so that `n * LN2_HI` is exact (9 significant bits).
    const LN2_HI: f32 = 355.0 / 512.0;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.0, 88.0);
    // Round to nearest even by adding and removing 1.5 * 2^23 (exact for |x * LOG2E| < 2^22):
    // unlike `round_ties_even`, this needs no SSE4.1, so the loop vectorises on every x86-64.
    const SHIFTER: f32 = 12_582_912.0;
    let n = (x * LOG2E + SHIFTER) - SHIFTER;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    // e^r on |r| <= ln2 / 2: Taylor-like minimax coefficients (Cephes' expf).
    let p = 1.987_569_1e-4_f32
        .mul_add(r, 1.398_199_9e-3)
        .mul_add(r, 8.333_452e-3)
        .mul_add(r, 4.166_579_6e-2)
        .mul_add(r, 1.666_666_5e-1)
        .mul_add(r, 0.5);
    let er = (p * r).mul_add(r, r) + 1.0;
    er * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_two_ulp_over_its_range() {
        let mut worst = 0f64;
        for i in 0..=350_000 {
            let x = -87.0 + 175.0 * i as f32 / 350_000.0;
            let exact = (x as f64).exp();
            let ours = exp(x) as f64;
            worst = worst.max(((ours - exact) / exact).abs());
        }
        // One f32 ulp is 2^-23 ≈ 1.19e-7 relative (at most).
        assert!(worst < 2.4e-7, "worst relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1000.0), exp(-87.0));
        assert_eq!(exp(1000.0), exp(88.0));
        assert!(exp(88.0).is_finite());
        assert!(exp(f32::NAN).is_nan());
    }
}
