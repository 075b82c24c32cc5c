//! The distribution a drafted token was drawn from. Speculative sampling accepts a drawn token
//! `x` with probability `min(1, p(x) / q(x))` and, on rejection, continues from
//! `max(0, p − q)`; for that the verifier needs `q` itself, not only the token. Tokens a drafter
//! chose deterministically (EAGLE's top-k, prompt lookup) carry none: for them `q` is a point
//! mass and the rule becomes "accept with `p(x)`, then zero `x`".

/// A draft distribution over target token ids: its non-zero entries, each id once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DrawnFrom {
    entries: Vec<(u32, f32)>,
}

impl DrawnFrom {
    /// From `(target id, probability)` pairs; zero entries are dropped, the rest are scaled to
    /// sum to one. Ids must be distinct (a draft vocabulary maps to distinct target ids).
    pub fn new(entries: impl IntoIterator<Item = (u32, f32)>) -> Self {
        let mut entries: Vec<(u32, f32)> = entries.into_iter().filter(|e| e.1 > 0.0).collect();
        let sum: f64 = entries.iter().map(|e| e.1 as f64).sum();
        if sum > 0.0 {
            for e in &mut entries {
                e.1 = (e.1 as f64 / sum) as f32;
            }
        }
        Self { entries }
    }

    /// `q(token)` (0 outside the support).
    pub fn prob(&self, token: u32) -> f32 {
        self.entries
            .iter()
            .find(|e| e.0 == token)
            .map_or(0.0, |e| e.1)
    }

    /// The non-zero entries.
    pub fn entries(&self) -> &[(u32, f32)] {
        &self.entries
    }

    /// `p ← max(0, p − q)` over a dense target distribution (not renormalised).
    pub fn subtract_from(&self, p: &mut [f32]) {
        for &(id, q) in &self.entries {
            if let Some(v) = p.get_mut(id as usize) {
                *v = (*v - q).max(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_normalised_and_zeros_dropped() {
        let q = DrawnFrom::new([(5, 2.0), (1, 0.0), (9, 6.0)]);
        assert_eq!(q.entries(), &[(5, 0.25), (9, 0.75)]);
        assert_eq!(q.prob(9), 0.75);
        assert_eq!(q.prob(1), 0.0);
        let mut p = vec![0.1, 0.2, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.2];
        q.subtract_from(&mut p);
        assert_eq!(p, vec![0.1, 0.2, 0.0, 0.0, 0.0, 0.25, 0.0, 0.0, 0.0, 0.0]);
    }
}
