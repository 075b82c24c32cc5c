//! `--tree auto`: each round, the tree (depth, node count — and with it ConFu's `[con]` rows)
//! that maximises expected tokens per second, from a [`CostModel`] of this device and model and
//! [`AcceptanceStats`] gathered online; plain decoding when no tree pays.
//!
//! A round is planned in two steps. **Before drafting**, the number of levels `L` of nodes below
//! the root (`L` draft forwards, EAGLE's `depth + 1`): for every `L` the policy keeps a moving
//! average of how many drafts the best `n` nodes of depth ≤ `L` would have had accepted
//! (`E[L][n]`), and predicts the round's rate `(1 + E[L][n]) / cost(L, n)`; the best `L` wins, or
//! `L = 0` (plain decoding) when its rate `1 / cost(0, 1)` is higher. **After drafting**, the node
//! count: with the drafting time already spent, `n` maximises
//! `1 + E_n − ρ · (verify(rows(n)) + update)` where `ρ` is the best predicted rate (Dinkelbach's
//! rule: a node is worth its verification time if it returns more tokens than that time would at
//! rate `ρ`), and the tree is cut to its `n` best-scoring nodes — exactly the tree EAGLE-2 builds
//! with `total_tokens = n`.
//!
//! A head tree that follows plain or lookup rounds first runs the head over the positions they
//! deferred: its predicted rate counts that catch-up in its cost, so the policy leaves plain
//! decoding for a tree only when the tree pays for the catch-up too.
//!
//! **Before a level count has been drafted** its `E[L][n]` is the ideal tree's under the
//! acceptance statistics: the `n` nodes most likely to be reached (`ideal.rs`). The statistics
//! start from the head's [`AcceptancePrior`] (its dev evaluation, when its folder records one), so
//! a fresh policy drafts the tree its prior predicts to pay, or decodes plainly when none does,
//! rather than the largest tree; and when the trees it drafts are accepted more than the prior
//! said, the deeper level counts it has not drafted predict more too, and are drafted in turn.
//! The ideal tree is optimistic (real draft scores misrank nodes), so a level count is drafted
//! and measured rather than ruled out unseen. A sequence's first tree also runs the head over the
//! prompt, which every later tree of the sequence needs: charged to one round, a long prompt's
//! pass would keep plain decoding ahead for the whole sequence even where trees pay, so that
//! pass is weighed against what trees save over the tokens left ([`CatchUp`]).
//!
//! `E` of a cut is the sum over its nodes of the probability of reaching them, each the product
//! of `rate(depth, rank)` along its path. Every `explore_every` rounds the policy drafts one level
//! deeper than its best, so that the statistics of the shapes it is not using stay current. While
//! plain decoding wins it probes its best tree every `explore_every` rounds, and doubles that
//! wait (up to [`MAX_PROBE_WAIT`] rounds) each time a probe finds no tree worth verifying; a
//! probe also waits until the plain rounds since the last one took `1 / probe_share` times what
//! it is predicted to cost beyond a plain round (the head's catch-up over the positions they
//! deferred, and the drafting). Where speculation does not pay, probes cost at most that share of
//! the time.
//!
//! **Prompt lookup as a free drafter.** When the accepted text's last tokens occurred earlier
//! ([`PromptLookup::find`]), their continuation is a chain that costs no draft forward. The policy
//! keeps its acceptance per depth and per length of the matched suffix, and a round verifies the
//! chain, cut to its best length, when its predicted rate beats both plain decoding and the best
//! head tree. Like a plain round it runs no head forward (the head catches up when it next
//! drafts) and has no `[con]` rows. While lookup does not pay, a one-draft chain is tried now and
//! then, with the same doubling wait as the head's probes (`lookup = 0` turns lookup off).
//!
//! Plain rounds change nothing the drafted shapes' predictions depend on (only the cost of a
//! one-row pass), so the best drafted rate is cached between drafted rounds: a plain round's
//! plan is a comparison, not a search.

use serde::{Deserialize, Serialize};

use crate::acceptance_prior::AcceptancePrior;
use crate::acceptance_stats::AcceptanceStats;
use crate::cost_model::CostModel;
use crate::lookup::{LookupMatch, PromptLookup};
use crate::tree::{DraftTree, TreeSettings};

mod catch_up;
mod cut;
mod ideal;
mod lookup_rounds;
#[cfg(test)]
mod tests;

pub use catch_up::CatchUp;
use cut::score_order;
pub use cut::top_nodes;
use ideal::ideal_expected;
use lookup_rounds::{lookup_drafts, lookup_prior};

/// The longest run of plain rounds between two probes.
pub const MAX_PROBE_WAIT: usize = 256;

/// Settings of `--tree auto`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AutoTreeOptions {
    /// The largest tree considered (nodes, depth, top-k per expansion).
    pub max: TreeSettings,
    /// Every this many rounds, draft one step deeper than the best depth (0: never explore).
    pub explore_every: usize,
    /// Per-round decay of the acceptance counts.
    pub decay: f64,
    /// Weight of a new measurement in the moving averages (timings and `E[d][n]`).
    pub alpha: f64,
    /// While plain decoding wins, the most of the plain rounds' time that a probe (the head's
    /// catch-up on the deferred positions, and the drafting) may cost.
    pub probe_share: f64,
    /// The longest prompt-lookup chain a round may verify instead of a head's tree (0: the
    /// head's trees only; at most the largest tree's nodes below the root).
    pub lookup: usize,
    /// Pseudo-trials, never decayed, by which each depth's acceptance rate leans on the depth
    /// above ([`AcceptanceStats::with_depth_pull`]): a depth that is rarely reached follows the
    /// measured depth above instead of keeping its prior (0: no pull).
    pub depth_pull: f64,
}

impl Default for AutoTreeOptions {
    fn default() -> Self {
        Self {
            max: TreeSettings {
                total_tokens: 64,
                depth: 6,
                top_k: 8,
            },
            explore_every: 8,
            decay: 0.98,
            alpha: 0.1,
            probe_share: 0.005,
            lookup: 8,
            depth_pull: 1.0,
        }
    }
}

/// What a round does, as [`AutoTree::plan`] decides it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Plan {
    /// Verify the root alone.
    Plain,
    /// Verify the first `drafts` drafts of the prompt-lookup chain.
    Lookup { drafts: usize },
    /// Draft a tree with the head (`depth + 1` draft forwards) and cut it with
    /// [`AutoTree::choose`].
    Tree(TreeSettings),
}

/// What the policy chose for one round, and what it predicted.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AutoChoice {
    /// Levels of nodes drafted below the root = draft forwards (0: plain decoding).
    pub levels: usize,
    /// Nodes verified, root included.
    pub nodes: usize,
    /// Target rows of the verification pass.
    pub rows: usize,
    /// Predicted tokens of the round (the root, the expected accepted drafts).
    pub predicted_tokens: f64,
    /// Predicted seconds of the round.
    pub predicted_s: f64,
    /// Seconds the head spent catching up on positions deferred by plain rounds before drafting
    /// (part of the round's drafting time, left out of the cost model's drafting cost).
    #[serde(default)]
    pub catch_up_s: f64,
    /// A round that verifies a prompt-lookup chain instead of a head's tree: the length of the
    /// suffix that matched (0: not a lookup round).
    #[serde(default)]
    pub lookup_ngram: usize,
}

impl AutoChoice {
    /// Whether the round verifies a tree the head drafted (after it the head observes the
    /// accepted positions; after any other round it catches up on them later).
    pub fn head_tree(&self) -> bool {
        self.levels > 0 && self.nodes > 1
    }
}

/// The online policy of one engine (shared by its sequences, so that what one prompt taught
/// carries to the next).
#[derive(Debug, Clone)]
pub struct AutoTree {
    options: AutoTreeOptions,
    stats: AcceptanceStats,
    costs: CostModel,
    /// `[L - 1][n - 1]`: moving average of expected accepted drafts of the best `n` nodes of
    /// depth ≤ `L`.
    expected: Vec<Vec<Option<f64>>>,
    rounds: usize,
    /// Rounds without a head tree since the last probe, the wait before the next, and whether
    /// the round in flight is a probe.
    since_probe: usize,
    probe_wait: usize,
    probing: bool,
    /// Prompt lookup's acceptance (`[depth - 1][class]`, class = how much shorter than the
    /// longest tried the matched suffix is), and its probes per class: rounds with a match of
    /// that class that did not use it, the wait, and whether the round in flight is a lookup
    /// probe. Per class, because one class paying (a 3-token match) says nothing about another
    /// (a 1-token match, which at T = 1 is rarely accepted).
    lookup_stats: AcceptanceStats,
    since_lookup: Vec<usize>,
    lookup_wait: Vec<usize>,
    lookup_probing: bool,
    /// `[max levels]`: the best drafted rate and its level count, while nothing it depends on
    /// changed.
    best_cache: Vec<Option<Option<(f64, usize)>>>,
}

impl AutoTree {
    /// A policy with `costs` measured for this device and model (for up to `max.depth + 1` draft
    /// forwards), and the generic acceptance prior.
    pub fn new(options: AutoTreeOptions, costs: CostModel) -> Self {
        let m = options.max;
        Self {
            options,
            stats: Self::head_stats(&options, &AcceptancePrior::generic()),
            costs,
            expected: vec![vec![None; m.total_tokens.max(1)]; m.depth + 1],
            rounds: 0,
            since_probe: 0,
            probe_wait: options.explore_every,
            probing: false,
            lookup_stats: AcceptanceStats::new(
                lookup_drafts(&options).max(1),
                PromptLookup::default().max_ngram,
                lookup_prior,
                2.0,
                options.decay,
            )
            .with_depth_pull(options.depth_pull),
            since_lookup: vec![0; PromptLookup::default().max_ngram],
            lookup_wait: vec![options.explore_every; PromptLookup::default().max_ngram],
            lookup_probing: false,
            best_cache: vec![None; m.depth + 2],
        }
    }

    /// This policy with its head's acceptance statistics seeded from `prior` (the head's dev
    /// evaluation: [`AcceptancePrior::for_head_folder`]) instead of the generic prior. Meant for
    /// a fresh policy: the acceptance it has counted so far is dropped.
    pub fn with_acceptance_prior(mut self, prior: &AcceptancePrior) -> Self {
        self.stats = Self::head_stats(&self.options, prior);
        self.best_cache.fill(None);
        self
    }

    /// Fresh statistics of the head's trees: `prior` as two pseudo-trials per depth and rank.
    fn head_stats(options: &AutoTreeOptions, prior: &AcceptancePrior) -> AcceptanceStats {
        let m = options.max;
        AcceptanceStats::new(
            m.depth + 1,
            m.top_k,
            |d, r| prior.rate(d, r),
            2.0,
            options.decay,
        )
        .with_depth_pull(options.depth_pull)
    }

    pub fn options(&self) -> &AutoTreeOptions {
        &self.options
    }

    pub fn costs(&self) -> &CostModel {
        &self.costs
    }

    pub fn stats(&self) -> &AcceptanceStats {
        &self.stats
    }

    /// The best predicted rate (tokens per second) drafting `levels` levels, with the node count
    /// that gives it. Until a tree that deep has been drafted, its expectation is the ideal
    /// tree's under the acceptance statistics ([`ideal_expected`]).
    fn rate_at(&self, levels: usize, rows: &dyn Fn(usize) -> usize) -> Option<(f64, usize)> {
        if levels == 0 {
            return Some((1.0 / self.costs.round(0, 1), 1));
        }
        let e = self.expected.get(levels - 1)?;
        let ideal = match e.iter().all(Option::is_none) {
            true => ideal_expected(&self.stats, levels, self.options.max.top_k, e.len()),
            false => Vec::new(),
        };
        (1..=e.len())
            .filter_map(|n| {
                let accepted = match n {
                    1 => Some(0.0),
                    _ if !ideal.is_empty() => Some(ideal[n - 1]),
                    _ => e[n - 1],
                }?;
                Some(((1.0 + accepted) / self.costs.round(levels, rows(n)), n))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
    }

    /// The level count (from `min` to `max`) with the best predicted rate, and that rate; the
    /// smaller of equals.
    fn best(&self, min: usize, max: usize, rows: &dyn Fn(usize) -> usize) -> Option<(f64, usize)> {
        (min..=max.min(self.expected.len()))
            .filter_map(|l| self.rate_at(l, rows).map(|(r, _)| (r, l)))
            .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
    }

    /// [`Self::best`] over `1..=max` levels, cached until a drafted round changes what it
    /// depends on.
    fn best_drafted(&mut self, max: usize, rows: &dyn Fn(usize) -> usize) -> Option<(f64, usize)> {
        let max = max.min(self.expected.len());
        if let Some(Some(hit)) = self.best_cache.get(max) {
            return *hit;
        }
        let best = self.best(1, max, rows);
        if let Some(slot) = self.best_cache.get_mut(max) {
            *slot = Some(best);
        }
        best
    }

    /// Whether drafting is predicted to beat plain decoding (before any tree is drafted, by the
    /// acceptance prior); `rows(n)` as for [`Self::plan`].
    pub fn expects_drafting(&mut self, rows: &dyn Fn(usize) -> usize) -> bool {
        match self.best_drafted(self.expected.len(), rows) {
            None => true,
            Some((rate, _)) => rate > 1.0 / self.costs.round(0, 1),
        }
    }

    /// What to do this round, within `room` nodes and positions: plain decoding, a cut of the
    /// prompt-lookup `chain` (when the text had one), or a head tree. `rows(n)` is the
    /// verification rows of `n` head-drafted nodes for this drafter; `catch_up` is the head's
    /// pass a tree would have to run first.
    pub fn plan(
        &mut self,
        room: usize,
        rows: &dyn Fn(usize) -> usize,
        catch_up: CatchUp,
        chain: Option<&LookupMatch>,
    ) -> Plan {
        let max = self.options.max.within(room);
        let max_levels = if max.total_tokens < 2 {
            0
        } else {
            max.depth + 1
        };
        self.rounds += 1;
        let explore = self.options.explore_every > 0
            && self.rounds.is_multiple_of(self.options.explore_every);
        let plain = 1.0 / self.costs.round(0, 1);
        let chain = chain.filter(|c| c.drafts() > 0 && room > 1);
        let lookup = chain.and_then(|c| self.lookup_rate(self.lookup_class(c.ngram), c.drafts()));
        let undrafted = lookup.map_or(plain, |(rate, _)| rate.max(plain));
        // The catch-up only lowers a rate, so it is weighed only for a tree that beats the
        // rounds without one before it: a plain streak's plan stays a comparison.
        let best = self
            .best_drafted(max_levels, rows)
            .map(|(rate, l)| match rate > undrafted {
                true => (self.after_catch_up(rate, l, rows, catch_up, plain), l),
                false => (rate, l),
            });
        let levels = match best {
            None => 0,
            _ if max_levels == 0 => 0,
            Some((rate, l)) if rate > undrafted => match explore {
                true => (l + 1).min(max_levels),
                false => l,
            },
            // No head tree is best; now and then the best one is tried again.
            Some((_, l)) => {
                self.since_probe += 1;
                let plain_time = self.since_probe as f64 / plain;
                let probe = self.options.explore_every > 0
                    && self.since_probe >= self.probe_wait
                    && self.options.probe_share * plain_time
                        >= self.costs.catch_up(catch_up.positions) + self.costs.draft(l);
                if probe {
                    (self.since_probe, self.probing) = (0, true);
                }
                if probe {
                    l
                } else {
                    0
                }
            }
        };
        if levels > 0 {
            return Plan::Tree(TreeSettings {
                depth: levels - 1,
                ..max
            });
        }
        match chain {
            Some(c) => self.plan_lookup(self.lookup_class(c.ngram), lookup, plain),
            None => Plan::Plain,
        }
    }

    /// After drafting `tree` with `levels` draft forwards (`scores`: cumulative draft
    /// log-probabilities, root 0): learn `E[L][n]` from it, and choose how many of its best
    /// nodes to verify. Returns the cut tree, its scores and the choice.
    pub fn choose(
        &mut self,
        tree: &DraftTree,
        scores: &[f32],
        levels: usize,
        rows: &dyn Fn(usize) -> usize,
    ) -> (DraftTree, Vec<f32>, AutoChoice) {
        let order = score_order(tree, scores);
        let reach = self.stats.reach(tree);
        let a = self.options.alpha;
        self.best_cache.fill(None);
        for l in 1..=levels.min(self.expected.len()) {
            let mut sum = 0.0;
            let mut n = 1;
            for &node in order.iter().filter(|&&i| tree.depths[i] <= l) {
                sum += reach[node];
                n += 1;
                if let Some(slot) = self.expected[l - 1].get_mut(n - 1) {
                    *slot = Some(slot.map_or(sum, |old| old + a * (sum - old)));
                }
            }
        }
        // The drafting time is spent: a node is worth verifying when it returns more tokens than
        // its verification time would at the best predicted rate.
        let rho = self.best(0, levels, rows).map_or(0.0, |b| b.0);
        let mut best = (1usize, 0.0f64, f64::NEG_INFINITY);
        let mut sum = 0.0;
        for n in 1..=order.len() + 1 {
            if n > 1 {
                sum += reach[order[n - 2]];
            }
            let value = 1.0 + sum - rho * (self.costs.verify(rows(n)) + self.costs.update(n > 1));
            if value > best.2 {
                best = (n, sum, value);
            }
        }
        let (n, accepted, _) = best;
        if std::mem::take(&mut self.probing) {
            self.probe_wait = match n {
                1 => (2 * self.probe_wait).min(MAX_PROBE_WAIT),
                _ => self.options.explore_every,
            };
        }
        let (cut, cut_scores) = top_nodes(tree, scores, &order[..n - 1]);
        let choice = AutoChoice {
            levels,
            nodes: n,
            rows: rows(n),
            predicted_tokens: 1.0 + accepted,
            predicted_s: self.costs.round(levels, rows(n)),
            catch_up_s: 0.0,
            lookup_ngram: 0,
        };
        (cut, cut_scores, choice)
    }

    /// The choice of a round that drafts nothing.
    pub fn plain_choice(&self) -> AutoChoice {
        AutoChoice {
            levels: 0,
            nodes: 1,
            rows: 1,
            predicted_tokens: 1.0,
            predicted_s: self.costs.round(0, 1),
            catch_up_s: 0.0,
            lookup_ngram: 0,
        }
    }

    /// Learn from a verified tree, the round's `choice`, and its accepted path (root first).
    pub fn observe_acceptance(&mut self, choice: &AutoChoice, tree: &DraftTree, path: &[usize]) {
        if tree.len() < 2 {
            return;
        }
        if choice.lookup_ngram == 0 {
            self.stats.observe(tree, path);
            return;
        }
        self.observe_chain(choice.lookup_ngram, tree.len() - 1, path.len() - 1);
    }

    /// Learn from a round's measured phases.
    pub fn observe_costs(
        &mut self,
        choice: &AutoChoice,
        draft_s: f64,
        verify_s: f64,
        update_s: f64,
    ) {
        if choice.levels > 0 {
            self.best_cache.fill(None);
        }
        let draft_s = (draft_s - choice.catch_up_s).max(0.0);
        self.costs
            .observe(choice.levels, choice.rows, draft_s, verify_s, update_s);
    }

    /// Learn from the head's measured catch-up over `positions` deferred positions.
    pub fn observe_catch_up(&mut self, positions: usize, seconds: f64) {
        self.costs.observe_catch_up(positions, seconds);
    }
}
