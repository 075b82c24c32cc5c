//! The near-tie rule of greedy comparisons: a greedy speculative run must equal vanilla greedy
//! decoding, except after a step where the target's top-2 logit gap is below [`NEAR_TIE`] —
//! verifying many rows may round differently from decoding one, and a tie may then break the
//! other way. Every greedy-equality test applies this one rule.

use burn::tensor::backend::Backend;
use confu_core::ToHost;
use confu_model::{LogitRows, TargetModel};

use crate::Generation;

/// Largest top-2 logit gap at which a divergence is tolerated.
pub const NEAR_TIE: f32 = 1e-4;

/// The gap between the target's two largest logits after `seq`.
pub fn top2_gap<B: Backend>(model: &TargetModel<B>, seq: &[u32]) -> confu_core::Result<f32> {
    let mut cache = model.new_cache(0, seq.len());
    let out = model.forward_causal(&mut cache, seq, LogitRows::Last, &[])?;
    let mut l: Vec<f32> = out.logits.expect("requested").to_host();
    l.sort_by(|a, b| b.total_cmp(a));
    Ok(l[0] - l[1])
}

/// `Ok(None)` when `got` equals `want`; `Ok(Some((step, gap)))` when they diverge at a near tie;
/// an error naming the step and the gap otherwise.
pub fn check_greedy<B: Backend>(
    target: &TargetModel<B>,
    prompt: &[u32],
    want: &Generation,
    got: &Generation,
) -> Result<Option<(usize, f32)>, String> {
    if got.generated_ids == want.generated_ids {
        return Ok(None);
    }
    let i = got
        .generated_ids
        .iter()
        .zip(&want.generated_ids)
        .position(|(a, b)| a != b)
        .unwrap_or(want.generated_ids.len().min(got.generated_ids.len()));
    let seq: Vec<u32> = prompt
        .iter()
        .chain(&want.generated_ids[..i])
        .copied()
        .collect();
    let gap = top2_gap(target, &seq).map_err(|e| e.to_string())?;
    if gap < NEAR_TIE {
        Ok(Some((i, gap)))
    } else {
        Err(format!(
            "prompt of {} tokens: output differs from vanilla at step {i} where the top-2 gap is {gap:.3e}\n got  {:?}\n want {:?}",
            prompt.len(),
            got.generated_ids,
            want.generated_ids
        ))
    }
}
