//! Which target layers form the features a draft head reads (METHOD.md §1). The target side
//! needs this as much as the draft side: verification taps these layers, and ConFu's future
//! vector is read from the same layers at contemplate rows.

/// Target layers whose inputs form EAGLE-3's features: `2`, `L/2`, `L-3` (0-based, in that order,
/// duplicates kept, clamped to the model for very shallow targets).
pub fn feature_layers(num_layers: usize) -> [usize; 3] {
    let clamp = |i: usize| i.min(num_layers.saturating_sub(1));
    [
        clamp(2),
        clamp(num_layers / 2),
        clamp(num_layers.saturating_sub(3)),
    ]
}

/// [`feature_layers`] as forward taps.
pub fn feature_taps(num_layers: usize) -> Vec<crate::Tap> {
    feature_layers(num_layers)
        .map(crate::Tap::LayerInput)
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eagle3_layers_are_taken_literally_and_clamped() {
        assert_eq!(feature_layers(32), [2, 16, 29]);
        assert_eq!(feature_layers(6), [2, 3, 3]);
        assert_eq!(feature_layers(2), [1, 1, 0]);
    }
}
