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

impl PromptLookup {
    /// Draft a chain below `root`, where `context` ends with `root`.
    pub fn draft(&self, context: &[u32], root: u32, budget: usize) -> DraftTree {
        let mut tree = DraftTree::root_only(root);
        let want = self.num_draft.min(budget.saturating_sub(1));
        if want == 0 {
            return tree;
        }
        for n in (self.min_ngram.max(1)..=self.max_ngram).rev() {
            if context.len() <= n {
                continue;
            }
            let suffix = &context[context.len() - n..];
            // Most recent earlier occurrence whose continuation exists.
            let found = (0..context.len() - n)
                .rev()
                .find(|&s| &context[s..s + n] == suffix);
            if let Some(s) = found {
                let cont = &context[s + n..];
                for (i, &t) in cont.iter().take(want).enumerate() {
                    tree.tokens.push(t);
                    tree.parents.push(Some(i));
                    tree.depths.push(i + 1);
                }
                break;
            }
        }
        tree
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
    fn no_match_gives_the_root_alone() {
        let t = PromptLookup::default().draft(&[1, 2, 3], 3, 8);
        assert_eq!(t.len(), 1);
    }
}
