//! Prompt lookup: a drafter without a model. The last `n` tokens of the context are searched for
//! earlier in the context (longest n first); the tokens that followed the most recent match become
//! a chain-shaped draft.

use crate::tree::DraftTree;

/// Prompt-lookup settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PromptLookup {
    /// Longest suffix length tried.
    pub max_ngram: usize,
    /// Shortest suffix length tried.
    pub min_ngram: usize,
    /// Tokens drafted after a match.
    pub num_draft: usize,
}

impl Default for PromptLookup {
    fn default() -> Self {
        Self {
            max_ngram: 3,
            min_ngram: 1,
            num_draft: 8,
        }
    }
}

/// A continuation found by [`PromptLookup::find`]: the chain below the root, and the length of
/// the suffix that matched (longer matches are accepted more often; `--tree auto` keeps their
/// acceptance apart).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupMatch {
    pub chain: DraftTree,
    pub ngram: usize,
}

impl LookupMatch {
    /// Drafted tokens (the root excluded).
    pub fn drafts(&self) -> usize {
        self.chain.len() - 1
    }

    /// The chain's first `drafts` drafts below the root.
    pub fn cut(&self, drafts: usize) -> DraftTree {
        let n = (drafts + 1).min(self.chain.len());
        DraftTree {
            tokens: self.chain.tokens[..n].to_vec(),
            parents: self.chain.parents[..n].to_vec(),
            depths: self.chain.depths[..n].to_vec(),
        }
    }
}

impl PromptLookup {
    /// Draft a chain below `root`, where `context` ends with `root`.
    pub fn draft(&self, context: &[u32], root: u32, budget: usize) -> DraftTree {
        match context.split_last() {
            Some((_, before)) => self.find(before, root, budget),
            None => None,
        }
        .map_or_else(|| DraftTree::root_only(root), |m| m.chain)
    }

    /// The continuation of the latest earlier occurrence of the longest matching suffix of
    /// `context` followed by `root`, as a chain below `root` of at most `budget - 1` drafts;
    /// `None` when no suffix of `min_ngram..=max_ngram` tokens occurs earlier with a
    /// continuation.
    pub fn find(&self, context: &[u32], root: u32, budget: usize) -> Option<LookupMatch> {
        let want = self.num_draft.min(budget.saturating_sub(1));
        let (lo, hi) = (self.min_ngram.max(1), self.max_ngram);
        if want == 0 || hi < lo {
            return None;
        }
        // The text is `context` then `root`, read without copying it.
        let len = context.len() + 1;
        let at = |i: usize| if i < context.len() { context[i] } else { root };
        // One pass over the earlier ends, latest first (`--tree auto` asks every round): the
        // first end matching `hi` tokens wins; otherwise the latest of the longest matches.
        let mut best: Option<(usize, usize)> = None;
        for end in (0..len - 1).rev() {
            let mut n = 0;
            while n < hi && n <= end && at(end - n) == at(len - 1 - n) {
                n += 1;
            }
            if n >= lo && best.is_none_or(|(b, _)| n > b) {
                best = Some((n, end));
                if n == hi {
                    break;
                }
            }
        }
        let (ngram, end) = best?;
        let mut chain = DraftTree::root_only(root);
        for (i, p) in (end + 1..len).take(want).enumerate() {
            chain.tokens.push(at(p));
            chain.parents.push(Some(i));
            chain.depths.push(i + 1);
        }
        Some(LookupMatch { chain, ngram })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_the_continuation_of_the_latest_match() {
        let ctx = [1, 2, 3, 4, 9, 2, 3, 5, 6, 2, 3];
        let t = PromptLookup::default().draft(&ctx, 3, 4);
        // "2 3" last occurred at 5..7, followed by 5, 6, 2.
        assert_eq!(t.tokens, vec![3, 5, 6, 2]);
        assert_eq!(t.parents, vec![None, Some(0), Some(1), Some(2)]);
    }

    #[test]
    fn find_reads_the_root_as_the_last_token() {
        // The text ends "3 2" then the root 3: "3 2 3" and "2 3" never occurred before, "3"
        // last at 6, followed by "2 3".
        let ctx = [1, 2, 5, 4, 3, 7, 3, 2];
        let m = PromptLookup::default().find(&ctx, 3, 3).expect("a match");
        assert_eq!(m.ngram, 1);
        assert_eq!(m.chain.tokens, vec![3, 2, 3]);
        assert_eq!(m.drafts(), 2);
        assert_eq!(m.cut(1).tokens, vec![3, 2]);
        assert_eq!(m.cut(1).depths, vec![0, 1]);
        let m = PromptLookup::default()
            .find(&[5, 6, 7, 5], 6, 8)
            .expect("a match");
        assert_eq!((m.ngram, m.chain.tokens), (2, vec![6, 7, 5, 6]));
        assert!(PromptLookup::default().find(&[5, 6], 7, 8).is_none());
        assert!(
            PromptLookup::default().find(&[5, 5], 5, 1).is_none(),
            "no room"
        );
    }

    /// The definition: for the longest `n` that occurred earlier with a continuation, the
    /// latest occurrence.
    fn by_definition(l: &PromptLookup, text: &[u32], budget: usize) -> Option<(usize, Vec<u32>)> {
        let want = l.num_draft.min(budget.saturating_sub(1));
        if want == 0 {
            return None;
        }
        for n in (l.min_ngram.max(1)..=l.max_ngram).rev() {
            if text.len() <= n {
                continue;
            }
            let suffix = &text[text.len() - n..];
            if let Some(s) = (0..text.len() - n)
                .rev()
                .find(|&s| &text[s..s + n] == suffix)
            {
                return Some((n, text[s + n..].iter().take(want).copied().collect()));
            }
        }
        None
    }

    #[test]
    fn the_one_pass_search_finds_what_the_definition_does() {
        let mut state = 12345u64;
        let mut next = |m: u64| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % m
        };
        for case in 0..3000 {
            let alphabet = 2 + next(5);
            let len = 1 + next(30) as usize;
            let text: Vec<u32> = (0..len).map(|_| next(alphabet) as u32).collect();
            let l = PromptLookup {
                max_ngram: 1 + next(4) as usize,
                min_ngram: next(3) as usize,
                num_draft: 1 + next(6) as usize,
            };
            let budget = next(8) as usize;
            let (root, before) = text.split_last().unwrap();
            let got = l
                .find(before, *root, budget)
                .map(|m| (m.ngram, m.chain.tokens[1..].to_vec()));
            assert_eq!(
                got,
                by_definition(&l, &text, budget),
                "case {case}: {l:?} {text:?}"
            );
        }
    }

    #[test]
    fn no_match_gives_the_root_alone() {
        let t = PromptLookup::default().draft(&[1, 2, 3], 3, 8);
        assert_eq!(t.len(), 1);
    }
}
