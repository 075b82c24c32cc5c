//! Acceptance statistics per depth and sibling rank, gathered online from verified trees: how
//! often the target took the child of a given rank (its place among its siblings, best draft
//! score first) at a given depth, given that its parent was accepted. They predict how many drafts
//! any subtree of a drafted tree will have accepted, which is what `--tree auto` weighs against
//! the measured cost of verifying it.
//!
//! Counts decay geometrically each round, so the statistics follow the text being generated (code
//! accepts more than prose) instead of averaging over a whole run; a prior of a few pseudo-trials
//! keeps a rank seen rarely from reading as 0 or 1. The prior decays with the counts, so at a
//! depth that is rarely reached (the second draft of a chain whose first is seldom accepted) it
//! would keep its ratio for ever; a few pseudo-trials that do not decay (`depth_pull`) lean each
//! depth's rate on the one above instead, which is measured far more often.

use crate::tree::DraftTree;

/// Per (depth, rank) hit and trial counts.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptanceStats {
    /// `[depth - 1][rank]`.
    hits: Vec<Vec<f64>>,
    trials: Vec<Vec<f64>>,
    decay: f64,
    /// Pseudo-trials, never decayed, at the rate of the depth above (depth ≥ 2).
    depth_pull: f64,
}

impl AcceptanceStats {
    /// Statistics for children up to `max_depth` deep and `max_rank` siblings, seeded with
    /// `prior(depth, rank)` as `weight` pseudo-trials each; `decay` (in (0, 1]) multiplies every
    /// count once per observed round.
    pub fn new(
        max_depth: usize,
        max_rank: usize,
        prior: impl Fn(usize, usize) -> f64,
        weight: f64,
        decay: f64,
    ) -> Self {
        let table = |f: &dyn Fn(usize, usize) -> f64| -> Vec<Vec<f64>> {
            (1..=max_depth.max(1))
                .map(|d| (0..max_rank.max(1)).map(|r| f(d, r)).collect())
                .collect()
        };
        Self {
            hits: table(&|d, r| weight * prior(d, r).clamp(0.0, 1.0)),
            trials: table(&|_, _| weight),
            decay: decay.clamp(f64::MIN_POSITIVE, 1.0),
            depth_pull: 0.0,
        }
    }

    /// These statistics with `pull` pseudo-trials (≥ 0; 0: none) that never decay at each
    /// depth ≥ 2, each taken at the rate of the same rank one depth above. With few trials of
    /// its own a depth follows the depth above; with many, its own counts.
    pub fn with_depth_pull(mut self, pull: f64) -> Self {
        self.depth_pull = if pull.is_finite() { pull.max(0.0) } else { 0.0 };
        self
    }

    /// Estimated probability that the child of `rank` at `depth` (≥ 1) is accepted once its
    /// parent is; depths and ranks past the table use its last row and column.
    pub fn rate(&self, depth: usize, rank: usize) -> f64 {
        let d = depth.clamp(1, self.hits.len()) - 1;
        let r = rank.min(self.hits[d].len() - 1);
        let (hits, trials) = (self.hits[d][r], self.trials[d][r]);
        if d == 0 || self.depth_pull == 0.0 {
            return hits / trials.max(f64::MIN_POSITIVE);
        }
        let above = self.rate(d, rank);
        (hits + self.depth_pull * above) / (trials + self.depth_pull)
    }

    /// Learn from one verified tree: `path` is the accepted nodes, root first. Every child of an
    /// accepted node was a trial at its depth and rank; the next node on the path was the hit.
    pub fn observe(&mut self, tree: &DraftTree, path: &[usize]) {
        for row in self.hits.iter_mut().chain(self.trials.iter_mut()) {
            row.iter_mut().for_each(|v| *v *= self.decay);
        }
        let children = tree.children();
        for (i, &node) in path.iter().enumerate() {
            let taken = path.get(i + 1);
            for (rank, &c) in children[node].iter().enumerate() {
                let d = tree.depths[c].clamp(1, self.hits.len()) - 1;
                let r = rank.min(self.hits[d].len() - 1);
                self.trials[d][r] += 1.0;
                if taken == Some(&c) {
                    self.hits[d][r] += 1.0;
                }
            }
        }
    }

    /// The probability of reaching each node of `tree` (the root: 1): the product of
    /// `rate(depth, rank)` along its path, ranks among siblings in node order (= draft order).
    /// Their sum over the non-root nodes is the expected number of accepted drafts.
    pub fn reach(&self, tree: &DraftTree) -> Vec<f64> {
        let mut reach = vec![1.0; tree.len()];
        let mut seen = vec![0usize; tree.len()];
        for n in 1..tree.len() {
            if let Some(p) = tree.parents[n] {
                reach[n] = reach[p] * self.rate(tree.depths[n], seen[p]);
                seen[p] += 1;
            }
        }
        reach
    }

    /// Chains whose every draft is of one class (prompt lookup's, where the column is the class of
    /// the match, not a sibling rank): the expected accepted drafts of the chain cut after each
    /// length, `[E_1, …, E_len]`.
    pub fn chain_expected(&self, class: usize, len: usize) -> Vec<f64> {
        let mut reach = 1.0;
        let mut sum = 0.0;
        (1..=len)
            .map(|d| {
                reach *= self.rate(d, class);
                sum += reach;
                sum
            })
            .collect()
    }

    /// Learn from one verified chain of `len` drafts of `class`, its first `accepted` taken.
    pub fn observe_chain(&mut self, class: usize, len: usize, accepted: usize) {
        for row in self.hits.iter_mut().chain(self.trials.iter_mut()) {
            row.iter_mut().for_each(|v| *v *= self.decay);
        }
        for d in 1..=len.min(accepted + 1) {
            let i = d.min(self.hits.len()) - 1;
            let r = class.min(self.hits[i].len() - 1);
            self.trials[i][r] += 1.0;
            if d <= accepted {
                self.hits[i][r] += 1.0;
            }
        }
    }

    /// Expected accepted drafts of `tree` (root and bonus excluded).
    pub fn expected_accepted(&self, tree: &DraftTree) -> f64 {
        self.reach(tree).iter().skip(1).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Root 0 with children 1 (rank 0) and 2 (rank 1); node 1 has child 3.
    fn small_tree() -> DraftTree {
        DraftTree {
            tokens: vec![9, 1, 2, 3],
            parents: vec![None, Some(0), Some(0), Some(1)],
            depths: vec![0, 1, 1, 2],
        }
    }

    #[test]
    fn observed_frequencies_become_the_rates() {
        let mut s = AcceptanceStats::new(3, 4, |_, _| 0.5, 0.0, 1.0);
        let t = small_tree();
        // Three rounds: the path 0-1-3, then 0-2, then 0 alone.
        s.observe(&t, &[0, 1, 3]);
        s.observe(&t, &[0, 2]);
        s.observe(&t, &[0]);
        assert!((s.rate(1, 0) - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.rate(1, 1) - 1.0 / 3.0).abs() < 1e-12);
        // Node 3 was a trial only when node 1 was accepted, and it was taken then.
        assert!((s.rate(2, 0) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_prior_weighs_as_pseudo_trials_and_counts_decay() {
        let mut s = AcceptanceStats::new(2, 2, |_, _| 0.5, 2.0, 0.5);
        let t = small_tree();
        s.observe(&t, &[0, 1]);
        // Rank 0 at depth 1: (0.5 * 1 + 1) hits over (2 * 0.5 + 1) trials.
        assert!((s.rate(1, 0) - 1.5 / 2.0).abs() < 1e-12);
        assert!((s.rate(1, 1) - 0.5 / 2.0).abs() < 1e-12);
    }

    #[test]
    fn chains_learn_per_class_and_depth() {
        let mut s = AcceptanceStats::new(3, 2, |_, _| 0.5, 0.0, 1.0);
        // Class 0: a chain of 3 with 1 accepted (trials at depths 1 and 2), then one of 2 with
        // 2 accepted; class 1: nothing accepted.
        s.observe_chain(0, 3, 1);
        s.observe_chain(0, 2, 2);
        s.observe_chain(1, 3, 0);
        assert_eq!(s.rate(1, 0), 1.0);
        assert_eq!(s.rate(2, 0), 0.5);
        assert_eq!(s.rate(1, 1), 0.0);
        // Depth 3 was never tried, and there is no prior weight: its rate reads 0.
        assert_eq!(s.chain_expected(0, 3), vec![1.0, 1.5, 1.5]);
        let s = AcceptanceStats::new(2, 1, |d, _| [0.8, 0.5][d - 1], 1.0, 1.0);
        // Depths past the table use its last row.
        assert_eq!(
            s.chain_expected(0, 3),
            vec![0.8, 0.8 + 0.4, 0.8 + 0.4 + 0.2]
        );
    }

    #[test]
    fn a_rarely_reached_depth_follows_the_depth_above() {
        // Lookup-like chains of two drafts, the first never accepted: depth 2 is never tried.
        let run = |pull: f64| {
            let mut s = AcceptanceStats::new(2, 1, |_, _| 0.5, 2.0, 0.98).with_depth_pull(pull);
            for _ in 0..300 {
                s.observe_chain(0, 2, 0);
            }
            s
        };
        let (without, with) = (run(0.0), run(1.0));
        assert!(without.rate(1, 0) < 0.01 && with.rate(1, 0) == without.rate(1, 0));
        // Without the pull depth 2 keeps its prior's ratio however long it goes untried.
        assert!((without.rate(2, 0) - 0.5).abs() < 1e-9);
        assert!(with.rate(2, 0) < 0.01, "{}", with.rate(2, 0));
        // Before anything is observed the pull changes nothing: the depth above has the prior.
        let fresh = AcceptanceStats::new(3, 1, |_, _| 0.4, 2.0, 0.98).with_depth_pull(1.0);
        assert!((fresh.rate(3, 0) - 0.4).abs() < 1e-12);
    }

    #[test]
    fn a_well_measured_depth_keeps_its_own_rate() {
        // First draft taken half the time, the second always when tried.
        let mut s = AcceptanceStats::new(2, 1, |_, _| 0.5, 2.0, 0.98).with_depth_pull(1.0);
        for i in 0..400 {
            s.observe_chain(0, 2, if i % 2 == 0 { 2 } else { 0 });
        }
        assert!((s.rate(1, 0) - 0.5).abs() < 0.05, "{}", s.rate(1, 0));
        assert!(s.rate(2, 0) > 0.95, "{}", s.rate(2, 0));
    }

    #[test]
    fn expected_accepted_is_the_sum_of_reach_probabilities() {
        let s = AcceptanceStats::new(2, 2, |d, r| [[0.5, 0.2], [0.4, 0.1]][d - 1][r], 1.0, 1.0);
        let t = small_tree();
        assert_eq!(s.reach(&t), vec![1.0, 0.5, 0.2, 0.5 * 0.4]);
        let all = s.expected_accepted(&t);
        // 0.5 * (1 + 0.4) + 0.2
        assert!((all - 0.9).abs() < 1e-12, "{all}");
        // Without node 1, node 2 is its parent's only child: rank 0.
        let cut = DraftTree {
            tokens: vec![9, 2],
            parents: vec![None, Some(0)],
            depths: vec![0, 1],
        };
        assert!((s.expected_accepted(&cut) - 0.5).abs() < 1e-12);
        assert_eq!(s.expected_accepted(&DraftTree::root_only(9)), 0.0);
    }
}
