//! The proposing side of a round: a [`Drafter`] proposes a tree below the pending root token and
//! learns from what the target accepted. Vanilla decoding, prompt lookup and EAGLE-3 are three
//! drafters; ConFu and research drafters plug in the same way ([`crate::Engine::generate_with`]).

use std::sync::Arc;

use burn::tensor::{backend::Backend, Tensor};
use confu_core::{DraftTree, Ops, Result};
use confu_draft::{Eagle3Drafter, Eagle3Head, PromptLookup, TreeSettings};
use confu_model::{feature_taps, ModelConfig, Tap};

/// Proposes draft trees and learns from the accepted tokens.
pub trait Drafter<B: Backend> {
    /// Whether it ever proposes more than the root (vanilla decoding does not).
    fn speculates(&self) -> bool {
        true
    }

    /// The most nodes (root included) one proposal may have; sizes the caches.
    fn max_tree(&self) -> usize;

    /// Extra cache slots the drafter's own state needs beyond the target's.
    fn draft_capacity(&self) -> usize {
        0
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

    /// Learn from accepted positions: their tapped `features` (`[n, taps * hidden]`, when taps
    /// were asked for) and the token that follows each (`next`).
    fn observe(&mut self, features: Option<Tensor<B, 2>>, next: &[u32]) -> Result<()>;

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

    fn observe(&mut self, _features: Option<Tensor<B, 2>>, _next: &[u32]) -> Result<()> {
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

    fn observe(&mut self, _features: Option<Tensor<B, 2>>, _next: &[u32]) -> Result<()> {
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
    state: Option<Eagle3Drafter<B>>,
}

impl<B: Backend> Eagle3Proposer<B> {
    pub fn new(head: Arc<Eagle3Head<B>>, ops: Arc<dyn Ops<B>>, tree: TreeSettings) -> Self {
        Self {
            head,
            ops,
            tree,
            state: None,
        }
    }

    fn state(&mut self) -> Result<&mut Eagle3Drafter<B>> {
        self.state.as_mut().ok_or_else(|| {
            confu_core::Error::invalid("drafter state", "empty", "reset() must run first")
        })
    }
}

impl<B: Backend> Drafter<B> for Eagle3Proposer<B> {
    fn max_tree(&self) -> usize {
        self.tree.total_tokens
    }

    fn draft_capacity(&self) -> usize {
        self.tree.depth * self.tree.top_k
    }

    fn taps(&self, target: &ModelConfig) -> Vec<Tap> {
        feature_taps(target.num_hidden_layers)
    }

    fn reset(&mut self, capacity: usize) {
        let capacity = capacity + self.draft_capacity();
        self.state = Some(Eagle3Drafter::new(
            self.head.clone(),
            self.ops.clone(),
            capacity,
        ));
    }

    fn observe(&mut self, features: Option<Tensor<B, 2>>, next: &[u32]) -> Result<()> {
        let features = features.ok_or_else(|| {
            confu_core::Error::invalid(
                "EAGLE-3 drafter",
                "no features",
                "the target taps are required",
            )
        })?;
        self.state()?.extend(features, next)
    }

    fn propose(&mut self, _context: &[u32], root: u32, room: usize) -> Result<DraftTree> {
        let t = self.tree;
        let settings = TreeSettings {
            total_tokens: t.total_tokens.min(room),
            depth: t.depth.min(room.saturating_sub(2)),
            top_k: t.top_k,
        };
        self.state()?.draft_tree(root, settings)
    }
}
