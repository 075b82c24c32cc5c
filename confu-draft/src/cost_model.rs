//! What a speculative round costs on this device with this model: verification seconds against
//! the number of target rows (tree nodes plus ConFu's `[con]` rows), drafting seconds against the
//! number of levels of nodes below the root (one expansion step per level after the first), and
//! the update after acceptance. Seeded by a calibration at load (a few target passes of chosen
//! sizes) and refined online from every round's measured phases, with an
//! exponential moving average so that one slow round (a page fault, another process) moves it
//! only a little.
//!
//! Verification is a curve over row counts times a scale: a one-row pass (every plain round)
//! moves the scale, and with it every row count; a multi-row pass moves its own point of the
//! curve. The cost of a pass drifts with the context (attention) and the machine's load, and
//! plain rounds measure one row count only: were only that point updated, a one-row pass grown
//! slower with the context would make the stale multi-row points look cheap by comparison, and
//! the policy would start drafting trees that do not pay (measured: it did, on the testbed's
//! Rust prompts). While trees are drafted the multi-row points absorb the drift and the one-row
//! estimate lags: plain decoding then looks a little cheaper than it is, an error in the safe
//! direction that the next plain round corrects.

/// Seconds per phase, as measured.
#[derive(Debug, Clone, PartialEq)]
pub struct CostModel {
    /// `(rows, seconds)` of one verification pass, rows ascending, before [`Self::scale`];
    /// never empty.
    verify: Vec<(usize, f64)>,
    /// The drift of one-row passes since calibration, shared by every row count.
    scale: f64,
    /// Drafting-phase seconds by number of levels (`[levels - 1]`; one draft forward each, the
    /// first timed with the update), once measured.
    draft: Vec<Option<f64>>,
    /// Update seconds after a round that verified a head's tree (the head then observes the
    /// accepted positions), and after any other round (plain, or a prompt-lookup chain: the
    /// cache compaction alone).
    update_spec: Option<f64>,
    update_plain: Option<f64>,
    /// Seconds per position of the head's catch-up over positions deferred by plain rounds.
    catch_up: Option<f64>,
    /// Weight of a new measurement in the moving averages (0: the model stays as built).
    alpha: f64,
}

/// The share of a one-row verification that one draft expansion step is assumed to cost until a
/// round measures it (an EAGLE-3 head is one decoder layer and an `lm_head`). A tree of `L`
/// levels takes `L - 1` steps: the first level comes with the head's pass in the update.
const DRAFT_STEP_PRIOR: f64 = 0.25;
/// The share of a one-row verification that the update after a speculative round is assumed to
/// cost until measured.
const UPDATE_PRIOR: f64 = 0.2;
/// The share of a one-row verification that the head's batched catch-up is assumed to cost per
/// deferred position until measured (one head layer over many rows at a time).
const CATCH_UP_PRIOR: f64 = 0.05;

impl CostModel {
    /// A model from calibration points `(rows, seconds)` (any order), for trees of up to
    /// `max_forwards` draft forwards; `alpha` in [0, 1] weighs each later measurement (0 keeps
    /// the model as built, for costs set by hand).
    pub fn new(mut verify: Vec<(usize, f64)>, max_forwards: usize, alpha: f64) -> Self {
        verify.retain(|&(r, s)| r > 0 && s.is_finite() && s > 0.0);
        verify.sort_by_key(|&(r, _)| r);
        verify.dedup_by_key(|&mut (r, _)| r);
        if verify.is_empty() {
            // Nothing measured: unit costs, so that only ratios matter until rounds are timed.
            verify.push((1, 1.0));
        }
        Self {
            verify,
            scale: 1.0,
            draft: vec![None; max_forwards.max(1)],
            update_spec: None,
            update_plain: None,
            catch_up: None,
            alpha: 0.0,
        }
        .with_alpha(alpha)
    }

    /// The same model, weighing later measurements by `alpha` (0: it stays as it is now).
    pub fn with_alpha(mut self, alpha: f64) -> Self {
        self.alpha = if alpha.is_finite() {
            alpha.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// Seconds of a verification pass of `rows` rows: linear between the measured row counts,
    /// extended along the last segment's slope (or proportionally, with one point) beyond them,
    /// times the shared drift.
    pub fn verify(&self, rows: usize) -> f64 {
        self.scale * self.curve(rows)
    }

    fn curve(&self, rows: usize) -> f64 {
        let rows = rows.max(1) as f64;
        let v = &self.verify;
        let at = |i: usize| (v[i].0 as f64, v[i].1);
        if v.len() == 1 {
            let (r0, s0) = at(0);
            return s0 * (rows / r0).max(1.0);
        }
        let i = v.partition_point(|&(r, _)| (r as f64) < rows);
        let (lo, hi) = match i {
            0 => return at(0).1,
            i if i >= v.len() => (at(v.len() - 2), at(v.len() - 1)),
            i => (at(i - 1), at(i)),
        };
        let slope = ((hi.1 - lo.1) / (hi.0 - lo.0)).max(0.0);
        lo.1 + slope * (rows - lo.0)
    }

    /// Seconds to draft a tree of `levels` levels below the root (0: nothing is drafted). The
    /// first level's distribution comes from the head's pass over the accepted positions, timed
    /// with the update (or the catch-up); each deeper level is one expansion step. So a count
    /// not yet measured is predicted from the nearest measured one per expansion step (a lone
    /// level-1 measurement is the drafting's fixed part, deeper levels adding the prior step),
    /// or from the prior step alone.
    pub fn draft(&self, levels: usize) -> f64 {
        if levels == 0 {
            return 0.0;
        }
        let steps = (levels - 1) as f64;
        let prior_step = DRAFT_STEP_PRIOR * self.verify(1);
        let from = |m: usize, s: f64| match (m, levels) {
            (m, l) if m == l => s,
            (_, 1) => 0.0,
            (1, _) => s + prior_step * steps,
            (m, _) => s * steps / (m - 1) as f64,
        };
        let f = levels.min(self.draft.len());
        if let Some(s) = self.draft[f - 1] {
            return from(f, s);
        }
        let nearest = (1..=self.draft.len())
            .filter_map(|m| self.draft[m - 1].map(|s| (m, s)))
            .min_by_key(|&(m, _)| m.abs_diff(levels));
        match nearest {
            Some((m, s)) => from(m, s),
            None => prior_step * steps,
        }
    }

    /// Seconds of the update after a round (`head_tree`: it verified drafts of the head).
    pub fn update(&self, head_tree: bool) -> f64 {
        if head_tree {
            self.update_spec.unwrap_or(UPDATE_PRIOR * self.verify(1))
        } else {
            self.update_plain.unwrap_or(0.0)
        }
    }

    /// Seconds for the head to catch up on `positions` deferred positions before it drafts.
    pub fn catch_up(&self, positions: usize) -> f64 {
        positions as f64 * self.catch_up.unwrap_or(CATCH_UP_PRIOR * self.verify(1))
    }

    /// Fold in one measured catch-up over `positions` positions.
    pub fn observe_catch_up(&mut self, positions: usize, seconds: f64) {
        let a = self.alpha;
        if a == 0.0 || positions == 0 || !(seconds.is_finite() && seconds >= 0.0) {
            return;
        }
        let per = seconds / positions as f64;
        self.catch_up = Some(self.catch_up.map_or(per, |o| o + a * (per - o)));
    }

    /// Seconds of a whole round: `forwards` draft forwards, a pass of `rows` rows, the update
    /// (`forwards = 0` with more than one row: a chain that cost no draft forward).
    pub fn round(&self, forwards: usize, rows: usize) -> f64 {
        self.draft(forwards) + self.verify(rows) + self.update(forwards > 0 && rows > 1)
    }

    /// Fold in one round's measured phases.
    pub fn observe(
        &mut self,
        forwards: usize,
        rows: usize,
        draft_s: f64,
        verify_s: f64,
        update_s: f64,
    ) {
        let a = self.alpha;
        let ema = |old: Option<f64>, new: f64| Some(old.map_or(new, |o| o + a * (new - o)));
        if a == 0.0 || !(draft_s.is_finite() && verify_s.is_finite() && update_s.is_finite()) {
            return;
        }
        // A shape's first measurement moves its prediction (the prior, or a neighbour scaled)
        // by `alpha` like any later one rather than replacing it: the first drafted rounds of a
        // sequence run on caches the prefill left cold (the testbed's first round measured its
        // update at twice the steady cost), and where drafting is rare (T = 1) one such round
        // would otherwise keep the policy from drafting for hundreds of rounds.
        if forwards > 0 && forwards <= self.draft.len() {
            let prior = self.draft(forwards);
            self.draft[forwards - 1] = ema(self.draft[forwards - 1].or(Some(prior)), draft_s);
        }
        if rows == 1 && verify_s > 0.0 {
            self.scale += a * (verify_s / self.curve(1) - self.scale);
        } else if rows > 1 && verify_s > 0.0 {
            let unscaled = verify_s / self.scale;
            match self.verify.binary_search_by_key(&rows, |&(r, _)| r) {
                Ok(i) => self.verify[i].1 += a * (unscaled - self.verify[i].1),
                Err(i) => self.verify.insert(i, (rows, unscaled)),
            }
        }
        if forwards > 0 && rows > 1 {
            let prior = self.update(true);
            self.update_spec = ema(self.update_spec.or(Some(prior)), update_s);
        } else {
            self.update_plain = ema(self.update_plain, update_s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_interpolates_and_extrapolates() {
        let m = CostModel::new(vec![(4, 3.0), (1, 1.0), (2, 1.5)], 4, 0.5);
        assert_eq!(m.verify(1), 1.0);
        assert_eq!(m.verify(3), 2.25);
        // Past the last point along the last segment's slope (0.75 per row).
        assert_eq!(m.verify(8), 6.0);
        assert_eq!(CostModel::new(vec![(2, 2.0)], 1, 1.0).verify(6), 6.0);
    }

    #[test]
    fn draft_cost_scales_from_the_nearest_measured_count() {
        let mut m = CostModel::new(vec![(1, 1.0)], 6, 0.5);
        assert_eq!(m.draft(0), 0.0);
        assert_eq!(
            m.draft(1),
            0.0,
            "one level: its distribution came with the update"
        );
        // Prior: a quarter of a one-row verification per expansion step.
        assert_eq!(m.draft(4), 0.75);
        // The first measurement moves the prediction by alpha, as later ones do.
        m.observe(4, 10, 2.25, 4.0, 0.5);
        assert_eq!(m.draft(4), 1.5);
        assert_eq!(m.draft(6), 2.5, "per expansion step: 1.5 for 3 steps");
        assert_eq!(m.draft(8), 3.5, "past the table: per step");
        assert_eq!(m.draft(1), 0.0);
        m.observe(4, 10, 3.5, 4.0, 0.5);
        assert_eq!(m.draft(4), 2.5, "moving average with alpha 0.5");
        // A count measured for the first time starts from its neighbour's per-step prediction.
        m.observe(2, 10, 0.5, 4.0, 0.5);
        assert!((m.draft(2) - 0.5 * (2.5 / 3.0 + 0.5)).abs() < 1e-12);
        // A lone level-1 measurement is the fixed part; deeper levels add the prior step.
        let mut m = CostModel::new(vec![(1, 1.0)], 6, 1.0);
        m.observe(1, 2, 0.01, 1.1, 0.2);
        assert_eq!(m.draft(1), 0.01);
        assert!((m.draft(3) - (0.01 + 2.0 * 0.25)).abs() < 1e-12);
    }

    #[test]
    fn one_slow_first_round_moves_the_update_by_alpha() {
        let mut m = CostModel::new(vec![(1, 1.0), (2, 1.1)], 4, 0.1);
        let prior = m.update(true);
        assert_eq!(prior, UPDATE_PRIOR);
        // A cold first round at ten times the prior.
        m.observe(1, 2, 0.1, 1.1, 10.0 * prior);
        assert!((m.update(true) - 1.9 * prior).abs() < 1e-12);
    }

    #[test]
    fn rounds_are_measured_into_the_model() {
        let mut m = CostModel::new(vec![(1, 1.0), (8, 2.0)], 4, 1.0);
        m.observe(2, 4, 0.5, 1.2, 0.3);
        assert_eq!(m.verify(4), 1.2);
        assert_eq!(m.update(true), 0.3);
        assert_eq!(m.update(false), 0.0);
        assert!((m.round(2, 4) - (0.5 + 1.2 + 0.3)).abs() < 1e-12);
        m.observe(0, 1, 0.0, 0.9, 0.01);
        assert!((m.verify(1) - 0.9).abs() < 1e-12);
        assert_eq!(m.update(false), 0.01);
        // A lookup chain (no draft forward, 3 rows): its pass is a point of the curve, and its
        // update (no head forward) counts with the plain rounds'.
        m.observe(0, 3, 0.0, 1.0, 0.02);
        assert!((m.verify(3) / m.verify(1) - 1.0 / 0.9).abs() < 1e-12);
        assert_eq!((m.update(true), m.update(false)), (0.3, 0.02));
        assert!((m.round(0, 3) - (m.verify(3) + 0.02)).abs() < 1e-12);
    }

    #[test]
    fn a_slower_one_row_pass_makes_every_row_count_slower() {
        // Plain rounds measure one row only; the other points move with them.
        let mut m = CostModel::new(vec![(1, 1.0), (2, 1.5), (8, 4.0)], 4, 0.5);
        m.observe(0, 1, 0.0, 2.0, 0.0);
        assert!((m.verify(1) - 1.5).abs() < 1e-12, "{}", m.verify(1));
        assert!((m.verify(2) - 1.5 * 1.5).abs() < 1e-12);
        assert!((m.verify(8) - 1.5 * 4.0).abs() < 1e-12);
        assert!(
            (m.verify(2) / m.verify(1) - 1.5).abs() < 1e-12,
            "the curve's shape is kept"
        );
        // A measured multi-row pass corrects the curve's shape there.
        m.observe(1, 2, 0.1, 3.0 * 1.5 * 1.5, 0.0);
        assert!(m.verify(2) / m.verify(1) > 1.5);
    }

    #[test]
    fn alpha_zero_keeps_the_model_as_built() {
        let mut m = CostModel::new(vec![(1, 1.0), (8, 2.0)], 4, 1.0);
        m.observe(2, 4, 0.5, 1.2, 0.3);
        let frozen = m.clone().with_alpha(0.0);
        let mut after = frozen.clone();
        after.observe(2, 4, 9.0, 9.0, 9.0);
        after.observe(0, 1, 0.0, 9.0, 9.0);
        assert_eq!(after, frozen);
        assert_eq!(after.verify(4), 1.2);
    }
}
