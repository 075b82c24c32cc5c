//! The stateful EAGLE-3 drafter: the head, its KV cache over the accepted ("real") positions, and
//! the state after the last real position from which the next tree grows.
//!
//! Draft position `t` pairs the target's features at position `t` with the token at `t + 1`. After
//! each verification the drafter receives the accepted nodes' features paired with the accepted
//! drafts followed by the bonus token; everything written while expanding a tree is dropped.

use std::sync::Arc;
use std::time::Instant;

use confu_core::ToHost;

use burn::tensor::{backend::Backend, Tensor};
use confu_core::{index_tensor, DenseKvCache, DrawnFrom, Error, KvCache, Ops, Result, Visibility};

use confu_moe::SlotGain;

use crate::auto_tree::{AutoChoice, AutoTree, CatchUp, Plan};
use crate::draft_sampling::DraftDraws;
use crate::head::Eagle3Head;
use crate::lookup::LookupMatch;
use crate::tree::{build_picked_tree, log_softmax, top_k, DraftTree, FrontierNode, TreeSettings};

/// EAGLE-3 drafting state for one sequence.
#[derive(Debug)]
pub struct Eagle3Drafter<B: Backend> {
    head: Arc<Eagle3Head<B>>,
    ops: Arc<dyn Ops<B>>,
    cache: DenseKvCache<B>,
    /// Draft state `[1, d]` at the last real position.
    last_hidden: Option<Tensor<B, 2>>,
    /// Log-probabilities (draft vocabulary) after the last real position.
    last_logp: Vec<f32>,
    /// Whether ConFu's future slot (the cache's one reserved slot) is filled.
    slot: bool,
    /// Score (cumulative draft log-probability) of every node of the last tree; root 0.
    scores: Vec<f32>,
    /// Real positions observed but not yet run through the head ([`Self::defer`]).
    pending: Vec<(Tensor<B, 2>, Vec<u32>)>,
    /// Drawing chains from the head's distribution ([`Self::set_draws`]), and the distribution
    /// each node of the last tree was drawn from (empty: every node picked by top-k).
    draws: Option<DraftDraws>,
    drawn: Vec<Option<DrawnFrom>>,
}

impl<B: Backend> Eagle3Drafter<B> {
    /// A drafter with room for `capacity` draft positions (real plus one tree's expansion).
    pub fn new(head: Arc<Eagle3Head<B>>, ops: Arc<dyn Ops<B>>, capacity: usize) -> Self {
        let cache = head.new_cache(ops.clone(), capacity);
        Self::with_cache(head, ops, cache)
    }

    /// A drafter whose cache also holds ConFu's future slot ([`Self::set_future_slot`]).
    pub fn with_future_slot(
        head: Arc<Eagle3Head<B>>,
        ops: Arc<dyn Ops<B>>,
        capacity: usize,
    ) -> Self {
        let cache = head.new_cache_with_reserved(ops.clone(), 1, capacity);
        Self::with_cache(head, ops, cache)
    }

    fn with_cache(head: Arc<Eagle3Head<B>>, ops: Arc<dyn Ops<B>>, cache: DenseKvCache<B>) -> Self {
        Self {
            head,
            ops,
            cache,
            last_hidden: None,
            last_logp: Vec::new(),
            slot: false,
            scores: Vec::new(),
            pending: Vec::new(),
            draws: None,
            drawn: Vec::new(),
        }
    }

    /// Draw chains from the head's distribution ([`DraftDraws`]) where a tree is a chain
    /// (top-k 1, and every `--tree auto` tree), or pick the top-k everywhere (`None`).
    pub fn set_draws(&mut self, draws: Option<DraftDraws>) {
        self.draws = draws;
    }

    /// The distribution each node of the last tree was drawn from (root first; empty when its
    /// nodes were picked by top-k), for the verifier's speculative-sampling rule.
    pub fn drawn(&self) -> &[Option<DrawnFrom>] {
        &self.drawn
    }

    /// Set ConFu's future slot for this round (before [`Self::extend`] with the round's new real
    /// rows): embedding `e_f: [1, d]` and future vector `f: [1, 3d]` at draft `position` (that of
    /// the depth-1 tree rows), its key and value scaled by `gain` when the ConFu parameters have
    /// one. Every later draft query sees it until it is replaced.
    pub fn set_future_slot(
        &mut self,
        e_f: Tensor<B, 2>,
        f: Tensor<B, 2>,
        position: usize,
        gain: Option<&SlotGain<B>>,
    ) -> Result<()> {
        if self.cache.reserved() == 0 {
            return Err(Error::invalid(
                "future slot",
                "none",
                "this drafter was made without one (use with_future_slot)",
            ));
        }
        let ops = self.ops.clone();
        self.head
            .write_future_slot(ops.as_ref(), &mut self.cache, e_f, f, position, gain)?;
        self.slot = true;
        Ok(())
    }

    /// Scores of the nodes of the last drafted tree (cumulative draft log-probabilities; root 0).
    pub fn node_scores(&self) -> &[f32] {
        &self.scores
    }

    /// Visibility of `rows` new rows: `allow` decides the main-region columns (as slots of the
    /// main region); the future slot, when set, is visible to every row.
    fn visibility(&self, rows: usize, allow: impl Fn(usize, &mut dyn FnMut(usize))) -> Visibility {
        let r = self.cache.reserved();
        let mut vis = Visibility::blank(rows, r + self.cache.len() + rows);
        for row in 0..rows {
            if self.slot {
                vis.allow(row, 0);
            }
            allow(row, &mut |col| vis.allow(row, r + col));
        }
        vis
    }

    /// The head.
    pub fn head(&self) -> &Eagle3Head<B> {
        &self.head
    }

    /// Real draft positions so far (deferred ones included).
    pub fn len(&self) -> usize {
        self.cache.len() + self.pending.iter().map(|(_, n)| n.len()).sum::<usize>()
    }

    /// Whether nothing was fed yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Append real positions: target taps `[n, 3d]` paired with the `n` next tokens.
    pub fn extend(&mut self, taps: Tensor<B, 2>, next_tokens: &[u32]) -> Result<()> {
        self.defer(taps, next_tokens);
        self.flush()
    }

    /// Append real positions without running the head yet: rounds that draft nothing (`--tree
    /// auto` choosing plain decoding) cost no head forward; the next [`Self::extend`] or tree
    /// runs every deferred position in one batched forward.
    pub fn defer(&mut self, taps: Tensor<B, 2>, next_tokens: &[u32]) {
        if !next_tokens.is_empty() {
            self.pending.push((taps, next_tokens.to_vec()));
        }
    }

    /// Run the deferred positions through the head.
    fn flush(&mut self) -> Result<()> {
        let (taps, next): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending).into_iter().unzip();
        if taps.is_empty() {
            return Ok(());
        }
        let next: Vec<u32> = next.concat();
        self.run_head(Tensor::cat(taps, 0), &next)
    }

    fn run_head(&mut self, taps: Tensor<B, 2>, next_tokens: &[u32]) -> Result<()> {
        let n = next_tokens.len();
        if n == 0 {
            return Ok(());
        }
        let start = self.cache.len();
        let positions: Vec<usize> = (start..start + n).collect();
        let vis = self.visibility(n, |row, allow| (0..start + row + 1).for_each(&mut *allow));
        let hidden = self.head.states(
            self.ops.as_ref(),
            &mut self.cache,
            taps,
            next_tokens,
            &positions,
            &vis,
        )?;
        // Only the last position drafts: the other rows need their K/V, not their logits.
        let last = hidden.narrow(0, n - 1, 1);
        let logits: Vec<f32> = self
            .head
            .net
            .logits(last.clone(), self.ops.as_ref())
            .to_host();
        self.last_hidden = Some(last);
        self.last_logp = log_softmax(&logits);
        Ok(())
    }

    /// `--tree auto`: the tree `auto` plans within `room` nodes and positions, cut to the nodes
    /// worth verifying (`rows(n)`: verification rows of `n` nodes for the calling drafter), or a
    /// cut of the prompt-lookup `chain`. A round without a head tree runs no head forward.
    pub fn draft_tree_auto(
        &mut self,
        root: u32,
        room: usize,
        auto: &mut AutoTree,
        rows: &dyn Fn(usize) -> usize,
        chain: Option<&LookupMatch>,
    ) -> Result<(DraftTree, AutoChoice)> {
        let deferred = self.pending.iter().map(|(_, n)| n.len()).sum();
        // The head has not run in this sequence: its pass covers the prompt. `room` counts the
        // largest tree beyond the tokens left.
        let catch_up = match self.cache.is_empty() {
            true => CatchUp::first(
                deferred,
                room.saturating_sub(auto.options().max.total_tokens),
            ),
            false => CatchUp::deferred(deferred),
        };
        let settings = match (auto.plan(room, rows, catch_up, chain), chain) {
            (Plan::Tree(settings), _) => settings,
            (Plan::Lookup { drafts }, Some(chain)) => {
                let (cut, choice) = auto.lookup_choice(chain, drafts);
                self.scores = vec![0.0; cut.len()];
                self.drawn.clear();
                return Ok((cut, choice));
            }
            _ => {
                self.scores = vec![0.0];
                self.drawn.clear();
                return Ok((DraftTree::root_only(root), auto.plain_choice()));
            }
        };
        // Drawn drafts are verified as chains (`draft_sampling.rs`).
        let settings = match self.draws {
            Some(_) => TreeSettings {
                top_k: 1,
                ..settings
            },
            None => settings,
        };
        let start = Instant::now();
        self.flush()?;
        let catch_up_s = start.elapsed().as_secs_f64();
        if deferred > 0 {
            auto.observe_catch_up(deferred, catch_up_s);
        }
        let tree = self.draft_tree(root, settings)?;
        let (cut, scores, choice) = auto.choose(&tree, &self.scores, settings.depth + 1, rows);
        // A chain is cut to a prefix, and by depth alone: the kept nodes keep their indices.
        self.drawn.truncate(cut.len());
        self.scores = scores;
        Ok((
            cut,
            AutoChoice {
                catch_up_s,
                ..choice
            },
        ))
    }

    /// Grow a tree below `root` (the token the target chose after the accepted prefix).
    pub fn draft_tree(&mut self, root: u32, settings: TreeSettings) -> Result<DraftTree> {
        self.flush()?;
        let Some(last_hidden) = self.last_hidden.clone() else {
            return Err(Error::invalid(
                "drafter state",
                "empty",
                "extend() must run before draft_tree()",
            ));
        };
        let real = self.cache.len();
        let k = settings.top_k.min(self.last_logp.len());
        // The expansion steps need depth * k more slots; a smaller budget drafts shallower.
        let room = self.cache.capacity() - real;
        let depth = settings.depth.min(room / k.max(1));
        let settings = TreeSettings { depth, ..settings };
        let head = self.head.clone();
        let ops = self.ops.clone();
        let (reserved, slot) = (self.cache.reserved(), self.slot);
        let cache = &mut self.cache;
        let mut draws = self.draws.as_mut().filter(|_| settings.top_k == 1);
        let mut drawn = vec![None];
        let vocab = &head.vocab;
        let pick = |logp: &[f32], k: usize| match draws.as_mut() {
            Some(d) => {
                let (x, q) = d.draw(logp, |i| vocab.target_id(i));
                drawn.push(Some(q));
                vec![x]
            }
            None => top_k(logp, k),
        };
        // Per frontier slot: the state its children read, and the cache slots of its ancestors.
        let mut states: Option<Tensor<B, 2>> = None;
        let mut ancestors: Vec<Vec<usize>> = Vec::new();
        let tree = build_picked_tree(
            root,
            &self.last_logp,
            settings,
            |i| vocab.target_id(i),
            pick,
            |step, frontier: &[FrontierNode]| {
                let n = frontier.len();
                let device = last_hidden.device();
                let (hidden, anc): (Tensor<B, 2>, Vec<Vec<usize>>) = match (&states, step) {
                    (Some(prev), s) if s > 0 => {
                        let slots: Vec<usize> = frontier
                            .iter()
                            .map(|f| f.parent_slot.expect("deeper node"))
                            .collect();
                        let idx = index_tensor::<B>(&slots, &device);
                        let anc = frontier
                            .iter()
                            .map(|f| {
                                let p = f.parent_slot.expect("deeper node");
                                let mut a = ancestors[p].clone();
                                a.push(real + (s - 1) * n + p);
                                a
                            })
                            .collect();
                        (prev.clone().select(0, idx), anc)
                    }
                    _ => (last_hidden.clone().repeat_dim(0, n), vec![Vec::new(); n]),
                };
                let first_slot = cache.len();
                // Main-region slot `c` is column `reserved + c`; the future slot is column 0.
                let mut vis = Visibility::blank(n, reserved + first_slot + n);
                for (r, a) in anc.iter().enumerate() {
                    if slot {
                        vis.allow(r, 0);
                    }
                    vis.allow_range(r, reserved..reserved + real);
                    for &c in a {
                        vis.allow(r, reserved + c);
                    }
                    vis.allow(r, reserved + first_slot + r);
                }
                let tokens: Vec<u32> = frontier.iter().map(|f| f.token).collect();
                let positions = vec![real + step; n];
                let out = head.forward(ops.as_ref(), cache, hidden, &tokens, &positions, &vis)?;
                states = Some(out.hidden);
                ancestors = anc;
                let v = head.config.draft_vocab_size;
                let flat: Vec<f32> = out.logits.to_host();
                Ok(flat.chunks(v).map(log_softmax).collect())
            },
        );
        // Expansion entries are never kept.
        self.cache.truncate(real)?;
        let (tree, scores) = tree?;
        // A drawn chain keeps a prefix of its levels: node `i` is the `i`-th draw.
        drawn.truncate(tree.len());
        if drawn.len() > 1 {
            debug_assert!((1..tree.len()).all(|i| tree.parents[i] == Some(i - 1)));
        }
        self.drawn = if drawn.len() > 1 { drawn } else { Vec::new() };
        self.scores = scores;
        Ok(tree)
    }
}
