//! ConFu drafting (METHOD.md §4–5): the EAGLE-3 head with a future slot, and the contemplate rows
//! it asks the target for. Each round: the target's `[con]` row of the last accepted node gives
//! `f`; the future MoE (routed on the head's fused feature of that node) gives `e_f`; the slot
//! `[e_f ; fc(f)]` joins the draft cache before the round's new real rows, so every draft query
//! of the round sees it; the tree grows as in EAGLE-3; verification adds one `[con]` row per
//! covered node, with the contemplate MoE's embedding routed once on the same node.

use std::path::Path;
use std::sync::Arc;

use burn::tensor::{backend::Backend, Tensor};
use confu_core::{DenseKvCache, DraftTree, DrawnFrom, Error, KvCache, Ops, Result, SamplingParams};
use confu_draft::{AutoChoice, DraftSampling, Eagle3Drafter, Eagle3Head, TreeSettings};
use confu_model::{feature_taps, ModelConfig, Tap, TargetModel};
use confu_moe::{ConfuDims, ConfuOptions, ConfuParams, ContemplateNodes};
use confu_verify::{future_source, Contemplator, RowLayout};

use crate::auto_round::{started, AutoRound, SharedAutoTree};
use crate::drafting::{drawn, missing_taps, set_draws, Drafter, Observation, Pass};
use crate::generation::RoundTrace;

/// A loaded ConFu draft folder: the official EAGLE-3 layout plus `confu.json` and
/// `confu.safetensors`.
#[derive(Debug, Clone)]
pub struct ConfuHead<B: Backend> {
    pub head: Arc<Eagle3Head<B>>,
    pub contemplator: Arc<Contemplator<B>>,
}

impl<B: Backend> ConfuHead<B> {
    /// Whether `dir` is a ConFu draft folder (it has `confu.json`).
    pub fn is_confu_folder(dir: &Path) -> bool {
        dir.join("confu.json").is_file()
    }

    /// Load a ConFu draft folder for `target`, checking every shape against the target and the
    /// head (the error names the file, tensor or field), and run the soft prompt once.
    pub fn load(dir: &Path, target: &TargetModel<B>) -> Result<Self> {
        let options = ConfuOptions::from_file(&dir.join("confu.json"))?;
        let head = Eagle3Head::load(dir, target)?;
        let dims = ConfuDims {
            target_hidden: target.config().hidden_size,
            draft_hidden: head.config.hidden_size,
            draft_kv_heads: head.config.shape.kv_heads,
        };
        let params = ConfuParams::load(dir, &options, dims, target.device())?;
        Self::from_parts(target, Arc::new(head), options, params)
    }

    /// The same head with another rule for which tree nodes get a `[con]` row.
    pub fn with_contemplate_nodes(&self, nodes: ContemplateNodes) -> Self {
        let mut contemplator = (*self.contemplator).clone();
        contemplator.options.contemplate_nodes = nodes;
        Self {
            head: self.head.clone(),
            contemplator: Arc::new(contemplator),
        }
    }

    /// Assemble from a head, options and parameters (trained or random).
    pub fn from_parts(
        target: &TargetModel<B>,
        head: Arc<Eagle3Head<B>>,
        options: ConfuOptions,
        params: ConfuParams<B>,
    ) -> Result<Self> {
        options
            .validate()
            .map_err(|(field, msg)| Error::invalid(field, "confu options", msg))?;
        let contemplator = Contemplator::new(target, options, Arc::new(params))?;
        Ok(Self {
            head,
            contemplator: Arc::new(contemplator),
        })
    }
}

/// Row `row` of a pass's features, its first `width` columns (the draft's taps), kept unsliced
/// until needed.
#[derive(Debug, Clone)]
struct Anchor<B: Backend> {
    features: Tensor<B, 2>,
    row: usize,
    width: usize,
}

impl<B: Backend> Anchor<B> {
    fn row(&self) -> Tensor<B, 2> {
        let row = self.features.clone().narrow(0, self.row, 1);
        match self.features.dims()[1] == self.width {
            true => row,
            false => row.narrow(1, 0, self.width),
        }
    }
}

/// The ConFu drafter of one sequence.
#[derive(Debug)]
pub struct ConfuProposer<B: Backend> {
    confu: ConfuHead<B>,
    ops: Arc<dyn Ops<B>>,
    tree: TreeSettings,
    state: Option<Eagle3Drafter<B>>,
    /// The last accepted node's features: the round's `[con]` embedding is routed on them
    /// (when the round has `[con]` rows).
    anchor: Option<Anchor<B>>,
    /// The last tree and its nodes that got a `[con]` row.
    last_tree: Option<DraftTree>,
    covered: Vec<usize>,
    future_node: Option<usize>,
    auto: AutoRound,
    sampling: DraftSampling,
}

impl<B: Backend> ConfuProposer<B> {
    /// A proposer growing trees of `tree` (with `--tree auto`: the largest tree `auto` may
    /// choose; see [`Self::with_auto`]).
    pub fn new(confu: ConfuHead<B>, ops: Arc<dyn Ops<B>>, tree: TreeSettings) -> Self {
        Self {
            confu,
            ops,
            tree,
            state: None,
            anchor: None,
            last_tree: None,
            covered: Vec::new(),
            future_node: None,
            auto: AutoRound::default(),
            sampling: DraftSampling::default(),
        }
    }

    /// Which drafts to propose when the target samples (default: chains drawn from the head).
    pub fn with_draft_sampling(mut self, sampling: DraftSampling) -> Self {
        self.sampling = sampling;
        self
    }

    /// Target rows verifying `n` head-drafted nodes: a node row each, and `[con]` rows for the
    /// covered nodes; a plain round (`n = 1` under `--tree auto`) has neither (nor has a
    /// prompt-lookup chain: one row per node).
    fn verification_rows(&self) -> impl Fn(usize) -> usize {
        let rule = self.confu.contemplator.options.contemplate_nodes;
        move |n: usize| match rule {
            _ if n < 2 => 1,
            ContemplateNodes::All => 2 * n,
            ContemplateNodes::Top(m) => n + 1 + m.min(n - 1),
        }
    }

    /// Choose each round's tree (and with it the `[con]` rows) with `auto`; a round that drafts
    /// nothing adds no `[con]` row, and the draft keeps its last future vector.
    pub fn with_auto(mut self, auto: Option<SharedAutoTree>) -> Self {
        self.auto = AutoRound::new(auto);
        self
    }

    fn state(&mut self) -> Result<&mut Eagle3Drafter<B>> {
        started(&mut self.state)
    }

    /// The last accepted node's features, which a round with `[con]` rows routes on.
    fn anchor(&self) -> Result<&Anchor<B>> {
        self.anchor.as_ref().ok_or_else(|| {
            Error::invalid(
                "ConFu drafter",
                "no accepted node to route the [con] embedding on",
                "observe() must run first",
            )
        })
    }
}

impl<B: Backend> Drafter<B> for ConfuProposer<B> {
    fn max_tree(&self) -> usize {
        2 * self.tree.total_tokens
    }

    fn taps(&self, target: &ModelConfig) -> Vec<Tap> {
        // The draft's features, then — when `f` is formed from other layers — `f`'s taps.
        let mut taps = feature_taps(target.num_hidden_layers);
        let future = self
            .confu
            .contemplator
            .future_taps(target.num_hidden_layers);
        if future != taps {
            taps.extend(future);
        }
        taps
    }

    fn reset(&mut self, capacity: usize) {
        let capacity = capacity.saturating_add(self.tree.expansion_slots());
        let head = self.confu.head.clone();
        self.state = Some(Eagle3Drafter::with_future_slot(
            head,
            self.ops.clone(),
            capacity,
        ));
        (self.anchor, self.last_tree, self.future_node) = (None, None, None);
        self.covered.clear();
    }

    fn reserved(&self) -> usize {
        self.confu.contemplator.reserved()
    }

    fn set_sampling(&mut self, params: &SamplingParams) -> Result<()> {
        set_draws(&mut self.state, self.sampling, params)
    }

    fn drawn(&self) -> &[Option<DrawnFrom>] {
        drawn(&self.state)
    }

    fn prepare(&mut self, cache: &mut DenseKvCache<B>) -> Result<()> {
        self.confu.contemplator.install(cache)
    }

    fn pass(
        &mut self,
        target: &TargetModel<B>,
        cache: &DenseKvCache<B>,
        tree: &DraftTree,
    ) -> Result<Pass<B>> {
        let c = self.confu.contemplator.clone();
        self.anchor()?;
        // Only a head's tree gets `[con]` rows: after a plain round or a prompt-lookup chain the
        // head catches up later, and the slot keeps its last future vector.
        let plain = self.auto.choice().is_some_and(|a| !a.head_tree());
        let covered = match plain {
            true => Vec::new(),
            false => c.covered_nodes(tree, self.state()?.node_scores()),
        };
        (self.covered, self.last_tree) = (covered.clone(), Some(tree.clone()));
        if covered.is_empty() {
            return Ok((RowLayout::tree(cache.reserved(), cache.len(), tree)?, None));
        }
        // Sliced only for a pass with `[con]` rows: plain rounds never route on it.
        let anchor = self.anchor()?.row();
        let layout = c.layout(cache, tree, &covered)?;
        let embedding = c.embedding(anchor, self.ops.as_ref()).0;
        let inputs = c.inputs(target, tree, embedding, covered.len())?;
        Ok((layout, Some(inputs)))
    }

    fn observe(&mut self, obs: Observation<'_, B>) -> Result<()> {
        let all = obs.features.clone().ok_or_else(missing_taps)?;
        // Columns: the draft's 3 feature taps, then `f`'s own taps when they differ.
        let width = 3 * obs.target.config().hidden_size;
        let extra = all.dims()[1] - width;
        let future_columns = |rows: Tensor<B, 2>| match extra {
            0 => rows,
            _ => rows.narrow(1, width, extra),
        };
        let path_features = obs.path_features().ok_or_else(missing_taps)?;
        let path_features = match extra {
            0 => path_features,
            _ => path_features.narrow(1, 0, width),
        };
        let q = *obs
            .path
            .last()
            .ok_or_else(|| Error::invalid("accepted path", "empty", "needs the root"))?;
        let c = self.confu.contemplator.clone();
        let ops = self.ops.clone();
        let defer = self.auto.observe(obs.path, obs.prefill);
        // Sliced only when a round routes on it: the plain rounds of `--tree auto` do not.
        self.anchor = Some(Anchor {
            features: all.clone(),
            row: q,
            width,
        });
        let f = if obs.prefill && !self.auto.expects_drafting(&self.verification_rows()) {
            // `--tree auto` expects plain rounds: no `[con]` pass until a tree is drafted (that
            // round drafts without a future vector, and its `[con]` rows give the next one).
            self.future_node = None;
            self.state()?.defer(path_features, obs.next);
            return Ok(());
        } else if obs.prefill {
            self.future_node = None;
            c.prefill_future(obs.target, obs.cache, self.anchor()?.row())?
                .f
        } else if self.covered.is_empty() {
            // No `[con]` row this round (`--tree auto` decoded plainly): the slot keeps the last
            // future vector, and the head sees these positions with the next tree.
            self.future_node = None;
            self.state()?.defer(path_features, obs.next);
            return Ok(());
        } else {
            let tree = self.last_tree.as_ref().ok_or_else(|| {
                Error::invalid("ConFu drafter", "no tree", "pass() must run first")
            })?;
            let i = future_source(tree, &self.covered, q);
            self.future_node = Some(self.covered[i]);
            future_columns(all.narrow(0, tree.len() + i, 1))
        };
        let o = &c.options;
        let fused = self.confu.head.fuse(ops.as_ref(), self.anchor()?.row());
        let (e_f, _) = c
            .params
            .future
            .route(fused, o.top_k_expert, o.renormalize, ops.as_ref());
        let state = self.state()?;
        let position = state.len() + obs.path.len();
        state.set_future_slot(e_f, f, position, c.params.slot_gain.as_ref())?;
        if defer {
            state.defer(path_features, obs.next);
            return Ok(());
        }
        state.extend(path_features, obs.next)
    }

    fn propose(&mut self, context: &[u32], root: u32, room: usize) -> Result<DraftTree> {
        let rows = self.verification_rows();
        let state = started(&mut self.state)?;
        self.auto
            .draft(state, context, root, room, self.tree, &rows)
    }

    fn auto_choice(&self) -> Option<AutoChoice> {
        self.auto.choice()
    }

    fn round_done(&mut self, trace: &RoundTrace) {
        self.auto.round_done(trace);
    }

    fn rows_per_node(&self) -> usize {
        2
    }

    fn future_node(&self) -> Option<usize> {
        self.future_node
    }
}
