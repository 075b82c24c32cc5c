//! The target side of ConFu (METHOD.md §4, `fixtures/confu/README.md`): the soft prompt run once
//! into the cache's reserved region, the `[con]` row of the prefill, the verification layout with
//! one `[con]` row per covered tree node, and the choice of `f` after acceptance.
//!
//! Node rows never see soft-prompt or `[con]` rows (the `Visibility` builders guarantee it), so
//! node logits — and acceptance — are those of plain EAGLE-3 verification.

use std::sync::Arc;

use burn::tensor::{backend::Backend, Tensor};
use confu_core::{kv_cache::Region, DenseKvCache, DraftTree, KvCache, Ops, Result, Visibility};
use confu_model::{ForwardRequest, LogitRows, ModelInput, Tap, TargetModel};
use confu_moe::{ConfuOptions, ConfuParams, ContemplateNodes, RouteDecision};

use crate::row_layout::{RowKind, RowLayout};

/// One soft-prompt K/V pair per target layer.
type ReservedKv<B> = Vec<(Tensor<B, 3>, Tensor<B, 3>)>;

/// ConFu's target side for one loaded target and parameter set.
#[derive(Debug, Clone)]
pub struct Contemplator<B: Backend> {
    pub options: ConfuOptions,
    pub params: Arc<ConfuParams<B>>,
    /// The soft prompt's K/V, computed once per loaded model and installed into every cache.
    soft_prompt: ReservedKv<B>,
}

/// What the prefill's `[con]` row gave.
#[derive(Debug)]
pub struct PrefillFuture<B: Backend> {
    /// The `[con]` input embedding `[1, d]`.
    pub embedding: Tensor<B, 2>,
    pub route: RouteDecision,
    /// `f` for round 1, `[1, 3d]` (`[1, d]` with `future_layers = last_layer`).
    pub f: Tensor<B, 2>,
}

impl<B: Backend> Contemplator<B> {
    /// Run the soft prompt through the frozen `target` once.
    pub fn new(
        target: &TargetModel<B>,
        options: ConfuOptions,
        params: Arc<ConfuParams<B>>,
    ) -> Result<Self> {
        let s = options.soft_prompt_len;
        let mut cache = target.new_cache(s, 0);
        let positions: Vec<usize> = (0..s).collect();
        target.forward(
            &mut cache,
            ForwardRequest {
                input: ModelInput::Embeds(params.soft_prompt.val()),
                positions: &positions,
                visibility: &Visibility::soft_prompt(s, 0),
                logits: LogitRows::None,
                taps: &[],
                region: Region::Reserved,
            },
        )?;
        Ok(Self {
            soft_prompt: cache.reserved_entries(),
            options,
            params,
        })
    }

    /// Reserved target-cache slots needed (the soft prompt's rows).
    pub fn reserved(&self) -> usize {
        self.options.soft_prompt_len
    }

    /// Put the soft prompt's K/V into a fresh cache with [`Self::reserved`] reserved slots.
    pub fn install(&self, cache: &mut DenseKvCache<B>) -> Result<()> {
        cache.install_reserved(&self.soft_prompt)
    }

    /// The round's `[con]` embedding, routed on the anchor's 3d feature `[1, 3d]`.
    pub fn embedding(
        &self,
        anchor_feature: Tensor<B, 2>,
        ops: &dyn Ops<B>,
    ) -> (Tensor<B, 2>, RouteDecision) {
        let o = &self.options;
        let (e, mut d) =
            self.params
                .contemplate
                .route(anchor_feature, o.top_k_expert, o.renormalize, ops);
        (e, d.remove(0))
    }

    /// The taps that form `f` at a `[con]` row (`future_layers`).
    pub fn future_taps(&self, num_layers: usize) -> Vec<Tap> {
        self.options.future_taps(num_layers)
    }

    /// Position of a `[con]` attached to a row at `position`.
    pub fn con_position(&self, position: usize) -> usize {
        self.options.con_position(position)
    }

    /// Prefill step (b): one `[con]` row attached to the last of the `n` cached prompt rows
    /// (whose feature is `anchor_feature`), seeing the soft prompt, the prompt and itself. Its
    /// K/V are dropped again; its feature is `f` for round 1.
    pub fn prefill_future(
        &self,
        target: &TargetModel<B>,
        cache: &mut DenseKvCache<B>,
        anchor_feature: Tensor<B, 2>,
    ) -> Result<PrefillFuture<B>> {
        let n = cache.len();
        let (embedding, route) = self.embedding(anchor_feature, target.ops().as_ref());
        let s = self.reserved();
        let visibility = Visibility::anchor_rows(cache.reserved(), s, n, &[n - 1])?;
        let out = target.forward(
            cache,
            ForwardRequest {
                input: ModelInput::Embeds(embedding.clone()),
                positions: &[self.con_position(n - 1)],
                visibility: &visibility,
                logits: LogitRows::None,
                taps: &self.future_taps(target.config().num_hidden_layers),
                region: Region::Main,
            },
        )?;
        cache.truncate(n)?;
        Ok(PrefillFuture {
            embedding,
            route,
            f: Tensor::cat(out.taps, 1),
        })
    }

    /// The nodes that get a `[con]` row: all, or the root and the `M` best-scoring others
    /// (`scores` per node), in node order.
    pub fn covered_nodes(&self, tree: &DraftTree, scores: &[f32]) -> Vec<usize> {
        covered_nodes(tree, scores, self.options.contemplate_nodes)
    }

    /// The verification pass: the tree's node rows (as EAGLE-3), then one `[con]` row per
    /// `covered` node at [`Self::con_position`] of its node, seeing the soft prompt, what its node
    /// sees, its node and itself. Logits for node rows; features for every row.
    pub fn layout(
        &self,
        cache: &DenseKvCache<B>,
        tree: &DraftTree,
        covered: &[usize],
    ) -> Result<RowLayout> {
        let mut layout = RowLayout::tree(cache.reserved(), cache.len(), tree)?;
        let t = tree.len();
        layout.visibility =
            layout
                .visibility
                .with_contemplate_rows(cache.reserved(), self.reserved(), covered)?;
        for &node in covered {
            layout.kinds.push(RowKind::Extra(node));
            let p = layout.positions[node];
            layout.positions.push(self.con_position(p));
        }
        layout.logit_rows = (0..t).collect();
        layout.feature_rows = (0..t + covered.len()).collect();
        Ok(layout)
    }

    /// The pass's input rows: the nodes' token embeddings, then `embedding` once per `[con]` row.
    pub fn inputs(
        &self,
        target: &TargetModel<B>,
        tree: &DraftTree,
        embedding: Tensor<B, 2>,
        con_rows: usize,
    ) -> Result<Tensor<B, 2>> {
        let nodes = target.embed(&tree.tokens)?;
        Ok(Tensor::cat(
            vec![nodes, embedding.repeat_dim(0, con_rows)],
            0,
        ))
    }
}

/// Root plus the `M` best-scoring other nodes (ties: the earlier node), or every node.
pub fn covered_nodes(tree: &DraftTree, scores: &[f32], rule: ContemplateNodes) -> Vec<usize> {
    match rule {
        ContemplateNodes::All => (0..tree.len()).collect(),
        ContemplateNodes::Top(m) => {
            let mut others: Vec<usize> = (1..tree.len()).collect();
            let score = |i: usize| scores.get(i).copied().unwrap_or(f32::NEG_INFINITY);
            others.sort_by(|&a, &b| score(b).total_cmp(&score(a)).then(a.cmp(&b)));
            others.truncate(m);
            let mut nodes = vec![0];
            nodes.extend(others);
            nodes.sort_unstable();
            nodes
        }
    }
}

/// The `[con]` row whose feature is `f` after accepting up to node `q`: that of `q`, else of its
/// nearest covered ancestor (the root always is). Returns the index into `covered`.
pub fn future_source(tree: &DraftTree, covered: &[usize], q: usize) -> usize {
    let mut node = Some(q);
    while let Some(n) = node {
        if let Ok(i) = covered.binary_search(&n) {
            return i;
        }
        node = tree.parents[n];
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> DraftTree {
        // 0 root; 1, 2 children of 0; 3 child of 1; 4 child of 3.
        DraftTree {
            tokens: vec![5, 6, 7, 8, 9],
            parents: vec![None, Some(0), Some(0), Some(1), Some(3)],
            depths: vec![0, 1, 1, 2, 3],
        }
    }

    #[test]
    fn top_m_keeps_the_root_and_the_best_scores() {
        let scores = [0.0, -0.5, -0.2, -0.9, -1.5];
        assert_eq!(
            covered_nodes(&tree(), &scores, ContemplateNodes::All),
            vec![0, 1, 2, 3, 4]
        );
        assert_eq!(
            covered_nodes(&tree(), &scores, ContemplateNodes::Top(2)),
            vec![0, 1, 2]
        );
        assert_eq!(
            covered_nodes(&tree(), &scores, ContemplateNodes::Top(0)),
            vec![0]
        );
    }

    #[test]
    fn f_comes_from_the_nearest_covered_ancestor() {
        let covered = [0, 1, 2];
        assert_eq!(future_source(&tree(), &covered, 4), 1); // 4 -> 3 -> 1
        assert_eq!(future_source(&tree(), &covered, 2), 2);
        assert_eq!(future_source(&tree(), &[0], 4), 0);
    }
}
