//! What a head tree pays before it drafts: the head's pass over the positions it has not seen
//! (those plain and prompt-lookup rounds deferred, or a sequence's prompt), and how the policy
//! weighs that pass against plain decoding.

use super::AutoTree;

/// The head's pass a tree must run first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatchUp {
    /// Positions the head has not seen.
    pub positions: usize,
    /// For a sequence's first tree, whose pass covers the prompt: the tokens left to generate
    /// (a lower bound). Every later tree of the sequence needs that pass too, so it is weighed
    /// against what trees save over them rather than charged to one round.
    pub first_of: Option<usize>,
}

impl CatchUp {
    /// Nothing to catch up on (the head saw every position).
    pub fn none() -> Self {
        Self::default()
    }

    /// `positions` deferred since the head last ran, charged to the round that drafts.
    pub fn deferred(positions: usize) -> Self {
        Self {
            positions,
            first_of: None,
        }
    }

    /// A sequence's first tree: the head's pass over `positions` (the prompt, and what plain
    /// rounds deferred since), with `remaining` tokens left to generate.
    pub fn first(positions: usize, remaining: usize) -> Self {
        Self {
            positions,
            first_of: Some(remaining),
        }
    }
}

impl AutoTree {
    /// `rate`, the best predicted rate drafting `levels` levels, after the head's `catch_up`.
    /// A deferred catch-up is paid by this round: its tokens come at the round's cost plus the
    /// catch-up's. A sequence's first catch-up is paid once for every later tree: the tree keeps
    /// its rate when drafting at that rate over the tokens left saves more than the pass costs
    /// against decoding them at `plain`, and is charged the whole pass otherwise.
    pub(super) fn after_catch_up(
        &self,
        rate: f64,
        levels: usize,
        rows: &dyn Fn(usize) -> usize,
        catch_up: CatchUp,
        plain: f64,
    ) -> f64 {
        let seconds = self.costs.catch_up(catch_up.positions);
        if let Some(remaining) = catch_up.first_of {
            let saved = remaining as f64 * (1.0 / plain - 1.0 / rate);
            if saved > seconds {
                return rate;
            }
        }
        match self.rate_at(levels, rows) {
            Some((_, n)) if seconds > 0.0 => {
                let cost = self.costs.round(levels, rows(n));
                rate * cost / (cost + seconds)
            }
            _ => rate,
        }
    }
}
