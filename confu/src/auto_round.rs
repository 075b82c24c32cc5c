//! A proposer's side of `--tree auto` ([`confu_draft::AutoTree`]): the policy shared by the
//! proposers of one engine, the tree it chose for the round in flight, and what the round taught
//! it (which drafts were accepted, what each phase cost).

use std::sync::{Arc, Mutex};

use burn::tensor::backend::Backend;
use confu_core::{DraftTree, Error, Result};
use confu_draft::{AutoChoice, AutoTree, Eagle3Drafter, TreeSettings};

use crate::generation::RoundTrace;

/// An [`AutoTree`] shared by the proposers of one engine.
pub type SharedAutoTree = Arc<Mutex<AutoTree>>;

/// A proposer's side of `--tree auto`: the shared policy, and the round it planned.
#[derive(Debug, Default)]
pub(crate) struct AutoRound {
    policy: Option<SharedAutoTree>,
    /// The verified tree and the choice of the round in flight.
    round: Option<(DraftTree, AutoChoice)>,
}

impl AutoRound {
    pub(crate) fn new(policy: Option<SharedAutoTree>) -> Self {
        Self {
            policy,
            round: None,
        }
    }

    fn lock(policy: &SharedAutoTree) -> std::sync::MutexGuard<'_, AutoTree> {
        // The policy is plain numbers; a panic elsewhere cannot leave it inconsistent.
        policy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The round's tree: the policy's choice within `room` (a head tree, a prompt-lookup chain
    /// found in `context`, or the root alone), or without a policy `fixed` within `room`.
    /// `rows(n)` is the verification rows of `n` head-drafted nodes for the calling drafter.
    pub(crate) fn draft<B: Backend>(
        &mut self,
        state: &mut Eagle3Drafter<B>,
        context: &[u32],
        root: u32,
        room: usize,
        fixed: TreeSettings,
        rows: &dyn Fn(usize) -> usize,
    ) -> Result<DraftTree> {
        let Some(policy) = &self.policy else {
            return state.draft_tree(root, fixed.within(room));
        };
        let mut policy = Self::lock(policy);
        let chain = policy
            .lookup()
            .and_then(|lookup| lookup.find(context, root, room));
        let (tree, choice) =
            state.draft_tree_auto(root, room, &mut policy, rows, chain.as_ref())?;
        self.round = Some((tree.clone(), choice));
        Ok(tree)
    }

    /// Learn which drafts were accepted; returns whether the head may see these positions later
    /// (with the next tree): after the prefill and after a round without a head tree (plain, or
    /// a prompt-lookup chain), so that such rounds pay no head forward.
    pub(crate) fn observe(&mut self, path: &[usize], prefill: bool) -> bool {
        match (&self.policy, &self.round, prefill) {
            (Some(_), _, true) => true,
            (Some(policy), Some((tree, choice)), false) => {
                Self::lock(policy).observe_acceptance(choice, tree, path);
                !choice.head_tree()
            }
            _ => false,
        }
    }

    /// Whether the next round is expected to draft (always, without a policy).
    pub(crate) fn expects_drafting(&self, rows: &dyn Fn(usize) -> usize) -> bool {
        self.policy
            .as_ref()
            .is_none_or(|p| Self::lock(p).expects_drafting(rows))
    }

    pub(crate) fn choice(&self) -> Option<AutoChoice> {
        self.round.as_ref().map(|(_, c)| *c)
    }

    pub(crate) fn round_done(&mut self, trace: &RoundTrace) {
        if let (Some(policy), Some((_, choice))) = (&self.policy, self.round.take()) {
            Self::lock(policy).observe_costs(
                &choice,
                trace.draft_s,
                trace.verify_s,
                trace.update_s,
            );
        }
    }
}

/// A proposer's drafter state, once `reset()` made it.
pub(crate) fn started<B: Backend>(
    state: &mut Option<Eagle3Drafter<B>>,
) -> Result<&mut Eagle3Drafter<B>> {
    state
        .as_mut()
        .ok_or_else(|| Error::invalid("drafter state", "empty", "reset() must run first"))
}
