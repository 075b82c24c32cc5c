//! The proposing side of a round: a [`Drafter`] proposes a tree below the pending root token and
//! learns from what the target accepted. Vanilla decoding, prompt lookup and EAGLE-3 are three
//! drafters; ConFu and research drafters plug in the same way ([`crate::Engine::generate_with`]).

use std::sync::Arc;

use burn::tensor::{backend::Backend, Tensor};
use confu_core::{
    index_tensor, DenseKvCache, DraftTree, DrawnFrom, KvCache, Ops, Result, SamplingParams,
};
use confu_draft::{
    AutoChoice, DraftDraws, DraftSampling, Eagle3Drafter, Eagle3Head, PromptLookup, TreeSettings,
};
use confu_model::{feature_taps, ModelConfig, Tap, TargetModel};
use confu_verify::RowLayout;

use crate::auto_round::{started, AutoRound, SharedAutoTree};
use crate::generation::RoundTrace;

/// What a drafter learns after the prefill or a verification pass.
pub struct Observation<'a, B: Backend> {
    pub target: &'a TargetModel<B>,
    /// The target cache, already compacted to the accepted prefix.
    pub cache: &'a mut DenseKvCache<B>,
    /// Tapped features of the pass's feature rows (`[rows, taps * hidden]`, when taps were asked
    /// for): every prompt row after the prefill, the layout's feature rows after a round.
    pub features: Option<Tensor<B, 2>>,
    /// The accepted rows among them, in order (every prompt row after the prefill).
    pub path: &'a [usize],
    /// The token that follows each accepted row.
    pub next: &'a [u32],
    /// Whether this is the prefill.
    pub prefill: bool,
}

impl<B: Backend> Observation<'_, B> {
    /// The features of the accepted rows, `[path, taps * hidden]`.
    pub fn path_features(&self) -> Option<Tensor<B, 2>> {
        self.features.as_ref().map(|f| {
            // A plain round's path is its one row: no gather.
            let identity = self.path.iter().enumerate().all(|(i, &p)| i == p);
            if identity && f.dims()[0] == self.path.len() {
                return f.clone();
            }
            let device = f.device();
            f.clone().select(0, index_tensor(self.path, &device))
        })
    }
}

/// The verification pass a drafter asks for: its row layout and, when it has extra rows, the
/// input embeddings of every row (`None`: the tree's token ids).
pub type Pass<B> = (RowLayout, Option<Tensor<B, 2>>);

/// Proposes draft trees and learns from the accepted tokens.
pub trait Drafter<B: Backend> {
    /// Whether it ever proposes more than the root (vanilla decoding does not).
    fn speculates(&self) -> bool {
        true
    }

    /// The most rows (nodes, root included, and extra rows) one verification pass may append;
    /// sizes the caches.
    fn max_tree(&self) -> usize;

    /// Target rows per tree node in a verification pass (ConFu: the node and its `[con]`).
    fn rows_per_node(&self) -> usize {
        1
    }

    /// The target taps it needs from every scored row (`[]` for none).
    fn taps(&self, target: &ModelConfig) -> Vec<Tap> {
        let _ = target;
        Vec::new()
    }

    /// Called once per sequence with the target's capacity, before the prefill.
    fn reset(&mut self, capacity: usize) {
        let _ = capacity;
    }

    /// Called once per sequence after [`Self::reset`], with the generation's sampling
    /// parameters: a drafter that draws its drafts from a distribution seeds its draws here.
    fn set_sampling(&mut self, params: &SamplingParams) -> Result<()> {
        let _ = params;
        Ok(())
    }

    /// The distribution each node of the tree just proposed was drawn from, root first (for
    /// the verifier's speculative-sampling rule); empty, or `None` for a node: picked
    /// deterministically.
    fn drawn(&self) -> &[Option<DrawnFrom>] {
        &[]
    }

    /// Reserved slots the target cache needs (ConFu's soft prompt).
    fn reserved(&self) -> usize {
        0
    }

    /// Prepare a fresh target cache before the prefill (ConFu installs the soft prompt).
    fn prepare(&mut self, cache: &mut DenseKvCache<B>) -> Result<()> {
        let _ = cache;
        Ok(())
    }

    /// The verification pass of `tree` (default: EAGLE-3's, one row per node).
    fn pass(
        &mut self,
        target: &TargetModel<B>,
        cache: &DenseKvCache<B>,
        tree: &DraftTree,
    ) -> Result<Pass<B>> {
        let _ = target;
        Ok((RowLayout::tree(cache.reserved(), cache.len(), tree)?, None))
    }

    /// Learn from the prefill or an accepted round.
    fn observe(&mut self, obs: Observation<'_, B>) -> Result<()>;

    /// The node whose `[con]` row gave this round's future vector (ConFu only).
    fn future_node(&self) -> Option<usize> {
        None
    }

    /// What `--tree auto` chose for the round just proposed, with its prediction (`None` for a
    /// fixed tree).
    fn auto_choice(&self) -> Option<AutoChoice> {
        None
    }

    /// The finished round's trace, with its measured phases (after [`Self::observe`]).
    fn round_done(&mut self, trace: &RoundTrace) {
        let _ = trace;
    }

    /// A tree below `root` with at most `room` nodes; `context` is the accepted text.
    fn propose(&mut self, context: &[u32], root: u32, room: usize) -> Result<DraftTree>;
}

/// Plain autoregressive decoding: the tree is the root alone.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoDraft;

impl<B: Backend> Drafter<B> for NoDraft {
    fn speculates(&self) -> bool {
        false
    }

    fn max_tree(&self) -> usize {
        1
    }

    fn observe(&mut self, _obs: Observation<'_, B>) -> Result<()> {
        Ok(())
    }

    fn propose(&mut self, _context: &[u32], root: u32, _room: usize) -> Result<DraftTree> {
        Ok(DraftTree::root_only(root))
    }
}

impl<B: Backend> Drafter<B> for PromptLookup {
    fn max_tree(&self) -> usize {
        self.num_draft + 1
    }

    fn observe(&mut self, _obs: Observation<'_, B>) -> Result<()> {
        Ok(())
    }

    fn propose(&mut self, context: &[u32], root: u32, room: usize) -> Result<DraftTree> {
        let mut with_root = context.to_vec();
        with_root.push(root);
        Ok(self.draft(&with_root, root, room))
    }
}

/// An EAGLE-3 head growing a dynamic tree.
#[derive(Debug)]
pub struct Eagle3Proposer<B: Backend> {
    head: Arc<Eagle3Head<B>>,
    ops: Arc<dyn Ops<B>>,
    tree: TreeSettings,
    sampling: DraftSampling,
    state: Option<Eagle3Drafter<B>>,
    auto: AutoRound,
}

impl<B: Backend> Eagle3Proposer<B> {
    /// A proposer growing trees of `tree` (with `--tree auto`: the largest tree `auto` may
    /// choose; see [`Self::with_auto`]).
    pub fn new(head: Arc<Eagle3Head<B>>, ops: Arc<dyn Ops<B>>, tree: TreeSettings) -> Self {
        Self {
            head,
            ops,
            tree,
            sampling: DraftSampling::default(),
            state: None,
            auto: AutoRound::default(),
        }
    }

    /// Choose each round's tree with `auto` (shared with other proposers of the same engine).
    pub fn with_auto(mut self, auto: Option<SharedAutoTree>) -> Self {
        self.auto = AutoRound::new(auto);
        self
    }

    /// Which drafts to propose when the target samples (default: chains drawn from the head).
    pub fn with_draft_sampling(mut self, sampling: DraftSampling) -> Self {
        self.sampling = sampling;
        self
    }

    fn state(&mut self) -> Result<&mut Eagle3Drafter<B>> {
        started(&mut self.state)
    }
}

impl<B: Backend> Drafter<B> for Eagle3Proposer<B> {
    fn max_tree(&self) -> usize {
        self.tree.total_tokens
    }

    fn taps(&self, target: &ModelConfig) -> Vec<Tap> {
        feature_taps(target.num_hidden_layers)
    }

    fn reset(&mut self, capacity: usize) {
        let capacity = capacity.saturating_add(self.tree.expansion_slots());
        self.state = Some(Eagle3Drafter::new(
            self.head.clone(),
            self.ops.clone(),
            capacity,
        ));
    }

    fn set_sampling(&mut self, params: &SamplingParams) -> Result<()> {
        set_draws(&mut self.state, self.sampling, params)
    }

    fn drawn(&self) -> &[Option<DrawnFrom>] {
        drawn(&self.state)
    }

    fn observe(&mut self, obs: Observation<'_, B>) -> Result<()> {
        let features = obs.path_features().ok_or_else(missing_taps)?;
        let defer = self.auto.observe(obs.path, obs.prefill);
        let state = self.state()?;
        if defer {
            state.defer(features, obs.next);
            return Ok(());
        }
        state.extend(features, obs.next)
    }

    fn propose(&mut self, context: &[u32], root: u32, room: usize) -> Result<DraftTree> {
        let state = started(&mut self.state)?;
        self.auto
            .draft(state, context, root, room, self.tree, &|n| n)
    }

    fn auto_choice(&self) -> Option<AutoChoice> {
        self.auto.choice()
    }

    fn round_done(&mut self, trace: &RoundTrace) {
        self.auto.round_done(trace);
    }
}

/// The error of a feature-reading drafter that got no target taps.
pub(crate) fn missing_taps() -> confu_core::Error {
    confu_core::Error::invalid("drafter", "no features", "the target taps are required")
}

/// A head proposer's [`Drafter::set_sampling`]: its drafter draws under `mode` at `params`.
pub(crate) fn set_draws<B: Backend>(
    state: &mut Option<Eagle3Drafter<B>>,
    mode: DraftSampling,
    params: &SamplingParams,
) -> Result<()> {
    let draws = DraftDraws::new(mode, params)?;
    started(state)?.set_draws(draws);
    Ok(())
}

/// A head proposer's [`Drafter::drawn`].
pub(crate) fn drawn<B: Backend>(state: &Option<Eagle3Drafter<B>>) -> &[Option<DrawnFrom>] {
    state.as_ref().map_or(&[], |s| s.drawn())
}
