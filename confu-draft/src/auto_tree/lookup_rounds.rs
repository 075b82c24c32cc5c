//! The prompt-lookup side of [`AutoTree`]: the chain's predicted rate per match class, the
//! choice between verifying a cut of it, probing one draft of it and decoding plainly, and what a
//! verified chain teaches.

use super::{AutoChoice, AutoTree, AutoTreeOptions, Plan, MAX_PROBE_WAIT};
use crate::acceptance_stats::AcceptanceStats;
use crate::lookup::{LookupMatch, PromptLookup};
use crate::tree::DraftTree;

impl AutoTree {
    /// Prompt lookup's acceptance per depth and match class.
    pub fn lookup_stats(&self) -> &AcceptanceStats {
        &self.lookup_stats
    }

    /// The prompt lookup that proposes chains to this policy (`None` when `lookup` is 0).
    pub fn lookup(&self) -> Option<PromptLookup> {
        let num_draft = lookup_drafts(&self.options);
        (num_draft > 0).then(|| PromptLookup {
            num_draft,
            ..PromptLookup::default()
        })
    }

    pub(super) fn lookup_class(&self, ngram: usize) -> usize {
        self.lookup()
            .map_or(0, |l| l.max_ngram.saturating_sub(ngram))
    }

    /// The best predicted rate of verifying the first drafts (up to `drafts`) of a chain after
    /// a match of `class`, with their number.
    pub(super) fn lookup_rate(&self, class: usize, drafts: usize) -> Option<(f64, usize)> {
        self.lookup_stats
            .chain_expected(class, drafts)
            .iter()
            .enumerate()
            .map(|(i, e)| ((1.0 + e) / self.costs.round(0, i + 2), i + 1))
            .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1)))
    }

    /// The round that verifies the first `drafts` drafts of `chain`: the cut chain and the
    /// choice, with its prediction.
    pub fn lookup_choice(&self, chain: &LookupMatch, drafts: usize) -> (DraftTree, AutoChoice) {
        let cut = chain.cut(drafts);
        let class = self.lookup_class(chain.ngram);
        let accepted = self
            .lookup_stats
            .chain_expected(class, cut.len() - 1)
            .last()
            .copied()
            .unwrap_or(0.0);
        let choice = AutoChoice {
            levels: 0,
            nodes: cut.len(),
            rows: cut.len(),
            predicted_tokens: 1.0 + accepted,
            predicted_s: self.costs.round(0, cut.len()),
            catch_up_s: 0.0,
            lookup_ngram: chain.ngram,
        };
        (cut, choice)
    }

    /// A round without a head tree, after a match of `class`: its chain when `lookup` (its best
    /// predicted rate and length) beats `plain`, now and then a one-draft probe of it, plain
    /// otherwise.
    pub(super) fn plan_lookup(
        &mut self,
        class: usize,
        lookup: Option<(f64, usize)>,
        plain: f64,
    ) -> Plan {
        let c = class.min(self.since_lookup.len() - 1);
        match lookup {
            Some((rate, drafts)) if rate > plain => {
                (self.since_lookup[c], self.lookup_wait[c]) = (0, self.options.explore_every);
                Plan::Lookup { drafts }
            }
            // Lookup does not pay now; now and then one draft of it is tried again.
            _ => {
                self.since_lookup[c] += 1;
                if self.options.explore_every > 0 && self.since_lookup[c] >= self.lookup_wait[c] {
                    (self.since_lookup[c], self.lookup_probing) = (0, true);
                    Plan::Lookup { drafts: 1 }
                } else {
                    Plan::Plain
                }
            }
        }
    }

    /// Learn from a verified chain of `drafts` drafts after a match of `ngram` tokens, of which
    /// `accepted` were taken.
    pub(super) fn observe_chain(&mut self, ngram: usize, drafts: usize, accepted: usize) {
        let class = self.lookup_class(ngram);
        self.lookup_stats.observe_chain(class, drafts, accepted);
        if std::mem::take(&mut self.lookup_probing) {
            // Probing again soon is worth it only when what the probe taught makes one draft
            // after such a match pay; an accepted draft now and then (sampling) is not enough.
            let pays = self
                .lookup_rate(class, 1)
                .is_some_and(|(rate, _)| rate > 1.0 / self.costs.round(0, 1));
            let c = class.min(self.lookup_wait.len() - 1);
            self.lookup_wait[c] = match pays {
                true => self.options.explore_every,
                false => (2 * self.lookup_wait[c]).min(MAX_PROBE_WAIT),
            };
        }
    }
}

/// The longest lookup chain `options` allow: `lookup`, within the largest tree.
pub(super) fn lookup_drafts(options: &AutoTreeOptions) -> usize {
    options
        .lookup
        .min(options.max.total_tokens.saturating_sub(1))
}

/// Before anything is measured, a lookup draft is taken half of the time after a match of the
/// longest suffix tried, a third after the next shorter, and so on.
pub(super) fn lookup_prior(_depth: usize, class: usize) -> f64 {
    0.5 / (1 + class) as f64
}
