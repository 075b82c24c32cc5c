//! The decode loop, as the four phases of a speculative round (EAGLE's Figure 2–3):
//!
//! ```text
//! prefill ─► loop { propose (a Drafter grows a tree below the pending root)
//!                   score   (one target pass over the RowLayout of that tree)
//!                   accept  (greedy or lossless-sampling walk → path + bonus token)
//!                   update  (compact the target cache to the path; the drafter observes it)
//!                   emit    (stream the accepted tokens, stop at EOS or the budget) }
//! ```
//! Vanilla decoding, prompt lookup and EAGLE-3 are the same loop with different drafters
//! ([`crate::drafting`]); with no drafter the tree is the root alone, which is exactly plain
//! autoregressive decoding.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use burn::tensor::{backend::Backend, Tensor};
use confu_core::{DenseKvCache, DraftTree, Error, KvCache, Result, Sampler, WarmThreads};
use confu_draft::{
    AutoTree, AutoTreeOptions, CostModel, DraftSampling, Eagle3Head, PromptLookup, TreeSettings,
};
use confu_model::{LogitRows, ModelInput, Tap, TargetModel};
use confu_verify::{accept, compact_to_path, score, Acceptance};

use crate::auto_round::SharedAutoTree;
use crate::calibration::{calibrate, CALIBRATION_BUDGET};
use crate::confu_drafter::{ConfuHead, ConfuProposer};
use crate::drafting::{Drafter, Eagle3Proposer, NoDraft, Observation};
use crate::generation::{Generation, GenerationConfig, RoundTrace, StopReason, Timings};

/// Which drafter proposes tokens.
#[derive(Debug, Clone)]
pub enum DraftMode<B: Backend> {
    /// No drafter: plain decoding.
    Vanilla,
    /// n-gram lookup in the context, chain-shaped.
    Lookup(PromptLookup),
    /// An EAGLE-3 head with a dynamic tree.
    Eagle3 {
        head: Arc<Eagle3Head<B>>,
        tree: TreeSettings,
    },
    /// ConFu: the EAGLE-3 head with a future slot, and contemplate rows in verification.
    Confu {
        confu: ConfuHead<B>,
        tree: TreeSettings,
    },
}

/// Generates text with a target model and an optional drafter.
#[derive(Debug, Clone)]
pub struct Engine<B: Backend> {
    target: TargetModel<B>,
    mode: DraftMode<B>,
    /// `--tree auto`: the policy choosing every round's tree, shared by all generations.
    auto: Option<SharedAutoTree>,
    /// Keep the backend's worker threads polling while a generation runs
    /// ([`confu_core::Ops::warm_threads`]).
    warm_threads: bool,
    /// Which drafts the head proposes when the target samples.
    draft_sampling: DraftSampling,
}

/// The state of one sequence between rounds.
struct Sequence<B: Backend> {
    cache: DenseKvCache<B>,
    taps: Vec<Tap>,
    /// Prompt and every accepted token.
    context: Vec<u32>,
    /// The target's pending token after `context` (the next round's root).
    root: u32,
}

impl<B: Backend> Engine<B> {
    /// An engine decoding with `target` alone.
    pub fn new(target: TargetModel<B>) -> Self {
        Self {
            target,
            mode: DraftMode::Vanilla,
            auto: None,
            warm_threads: true,
            draft_sampling: DraftSampling::default(),
        }
    }

    /// An engine drafting with `mode`.
    pub fn with_mode(target: TargetModel<B>, mode: DraftMode<B>) -> Result<Self> {
        if let DraftMode::Eagle3 { tree, .. } | DraftMode::Confu { tree, .. } = &mode {
            tree.validate()?;
        }
        Ok(Self {
            target,
            mode,
            auto: None,
            warm_threads: true,
            draft_sampling: DraftSampling::default(),
        })
    }

    /// Choose every round's tree with `--tree auto` within `options.max` (which replaces the
    /// mode's tree), from costs calibrated now on this device (a few target passes, well under
    /// a second on small models) and the head's acceptance prior (`Eagle3Head::prior`), both
    /// refined by every round. Vanilla and lookup modes are returned unchanged.
    pub fn with_auto_tree(mut self, options: AutoTreeOptions) -> Result<Self> {
        options.max.validate()?;
        let (rows_per_node, prior) = match &mut self.mode {
            DraftMode::Eagle3 { tree, head } => {
                *tree = options.max;
                (1, head.prior.clone())
            }
            DraftMode::Confu { tree, confu } => {
                *tree = options.max;
                (2, confu.head.prior.clone())
            }
            DraftMode::Vanilla | DraftMode::Lookup(_) => return Ok(self),
        };
        // The calibration runs with the taps this mode's drafter reads.
        let taps = self.drafter().taps(self.target.config());
        let start = Instant::now();
        let points = calibrate(
            &self.target,
            rows_per_node * options.max.total_tokens,
            &taps,
            CALIBRATION_BUDGET,
        )?;
        tracing::info!(
            "--tree auto: calibrated in {:.0} ms; verification seconds by rows {points:?}",
            1e3 * start.elapsed().as_secs_f64()
        );
        match prior.source() {
            Some(file) => tracing::info!(
                "--tree auto: acceptance prior from the head's dev evaluation ({}): top-1 by depth {:.2?}",
                file.display(),
                prior.top1()
            ),
            None => tracing::info!("--tree auto: the generic acceptance prior (top-1 {:.2?})", prior.top1()),
        }
        let costs = CostModel::new(points, options.max.depth + 1, options.alpha);
        let policy = AutoTree::new(options, costs).with_acceptance_prior(&prior);
        Ok(self.with_auto_policy(policy))
    }

    /// Choose every round's tree with `policy` as it stands (research use: costs set by hand;
    /// [`Self::with_auto_tree`] measures them). The mode's tree becomes the policy's largest.
    pub fn with_auto_policy(mut self, policy: AutoTree) -> Self {
        if let DraftMode::Eagle3 { tree, .. } | DraftMode::Confu { tree, .. } = &mut self.mode {
            *tree = policy.options().max;
            self.auto = Some(Arc::new(Mutex::new(policy)));
        }
        self
    }

    /// Whether the backend's worker threads keep polling for work while a generation runs
    /// (default: yes). Polling spares each pass the wake-up of parked threads, which grows with
    /// the sequential work before the pass (on a 2-core host a sampled generation decoded 5 %
    /// faster with it, `docs/performance.md`), at the price of cores that stay busy during
    /// generation: turn it off where other processes need those cores (on the CPU backend,
    /// `CONFU_POLL=0` in the environment turns it off for the whole process).
    pub fn with_warm_threads(mut self, on: bool) -> Self {
        self.warm_threads = on;
        self
    }

    /// Which drafts a head proposes when the target samples (temperature > 0): by default
    /// ([`DraftSampling::Draw`]) chains drawn from the head's distribution and verified by
    /// speculative sampling, wherever the tree is a chain (`--tree auto`, and fixed trees of
    /// top-k 1); [`DraftSampling::Top`] keeps EAGLE's top-k rule. Greedy decoding is the same
    /// either way.
    pub fn with_draft_sampling(mut self, sampling: DraftSampling) -> Self {
        self.draft_sampling = sampling;
        self
    }

    /// The `--tree auto` policy, when the engine has one (its cost model and statistics).
    pub fn auto_tree(&self) -> Option<&SharedAutoTree> {
        self.auto.as_ref()
    }

    /// The target model.
    pub fn target(&self) -> &TargetModel<B> {
        &self.target
    }

    /// The drafting mode.
    pub fn mode(&self) -> &DraftMode<B> {
        &self.mode
    }

    /// A fresh drafter for the configured mode.
    pub fn drafter(&self) -> Box<dyn Drafter<B>> {
        match &self.mode {
            DraftMode::Vanilla => Box::new(NoDraft),
            DraftMode::Lookup(l) => Box::new(*l),
            DraftMode::Eagle3 { head, tree } => Box::new(
                Eagle3Proposer::new(head.clone(), self.target.ops().clone(), *tree)
                    .with_auto(self.auto.clone())
                    .with_draft_sampling(self.draft_sampling),
            ),
            DraftMode::Confu { confu, tree } => Box::new(
                ConfuProposer::new(confu.clone(), self.target.ops().clone(), *tree)
                    .with_auto(self.auto.clone())
                    .with_draft_sampling(self.draft_sampling),
            ),
        }
    }

    /// Generate a continuation of `prompt` with the configured drafter. `on_tokens` sees the
    /// tokens of every round as soon as they are final (for streaming).
    pub fn generate(
        &self,
        prompt: &[u32],
        config: &GenerationConfig,
        on_tokens: impl FnMut(&[u32]),
    ) -> Result<Generation> {
        let mut drafter = self.drafter();
        self.generate_with(prompt, config, drafter.as_mut(), on_tokens)
    }

    /// Generate with any drafter (research use: a custom [`Drafter`] plugs in here).
    pub fn generate_with(
        &self,
        prompt: &[u32],
        config: &GenerationConfig,
        drafter: &mut dyn Drafter<B>,
        mut on_tokens: impl FnMut(&[u32]),
    ) -> Result<Generation> {
        config.validate()?;
        let mut sampler = Sampler::new(config.sampling.clone())?;
        // The backend's threads stay ready between passes: the sequential parts of a round
        // (sampling, acceptance, the drafter's choices) would otherwise let them park.
        let warm = match self.warm_threads {
            true => self.target.ops().warm_threads(),
            false => None,
        };
        let mut timings = Timings {
            prefill_tokens: prompt.len(),
            ..Default::default()
        };
        let start = Instant::now();
        let mut seq = self.prefill(prompt, config, drafter, &mut sampler)?;
        timings.prefill_s = start.elapsed().as_secs_f64();

        let c = self.target.config();
        let limit = c.max_position_embeddings;
        let ends = |t: &u32| config.stop_at_eos && c.eos_token_ids.contains(t);
        let mut generated: Vec<u32> = Vec::new();
        let mut rounds: Vec<RoundTrace> = Vec::new();
        let decode_start = Instant::now();
        let stop_reason = loop {
            warm.beat();
            let prefix = seq.cache.len();
            // A pending root that completes the output (or ends it) needs no forward.
            let root = seq.root;
            if !drafter.speculates()
                && (ends(&root) || generated.len() + 1 >= config.max_new_tokens)
            {
                generated.push(root);
                on_tokens(&[root]);
                break if ends(&root) {
                    StopReason::Eos
                } else {
                    StopReason::MaxNewTokens
                };
            }
            let per_node = drafter.rows_per_node();
            if prefix + 1 >= limit || prefix + per_node > seq.cache.capacity() {
                generated.push(root);
                on_tokens(&[root]);
                break StopReason::PositionLimit;
            }
            // Budget: every node's rows must fit the cache, every row's position the limit.
            let room =
                ((seq.cache.capacity() - prefix) / per_node).min(limit - prefix + 1 - per_node);

            let t0 = Instant::now();
            let tree = drafter.propose(&seq.context, root, room)?;
            let t1 = Instant::now();
            warm.beat();
            let (layout, inputs) = drafter.pass(&self.target, &seq.cache, &tree)?;
            let input = match inputs {
                Some(e) => ModelInput::Embeds(e),
                None => ModelInput::Ids(&tree.tokens),
            };
            let scores = score(&self.target, &mut seq.cache, &layout, input, &seq.taps)?;
            check_finite(&scores.logits, &format!("round {}", rounds.len() + 1))?;
            let acceptance = accept(&tree, drafter.drawn(), &scores.logits, &mut sampler);
            let t2 = Instant::now();
            warm.beat();
            let (accepted, head_s) = self.update(
                &mut seq,
                drafter,
                &tree,
                scores.prefix_len,
                &acceptance,
                scores.features,
            )?;
            let t3 = Instant::now();
            rounds.push(RoundTrace {
                tree_size: tree.len(),
                contemplate_rows: layout.rows() - tree.len(),
                future_node: drafter.future_node(),
                accepted_drafts: acceptance.accepted_drafts(),
                tokens: accepted.clone(),
                draft_s: (t1 - t0).as_secs_f64(),
                verify_s: (t2 - t1).as_secs_f64(),
                update_s: (t3 - t2).as_secs_f64(),
                head_s,
                auto: drafter.auto_choice(),
            });
            drafter.round_done(rounds.last().expect("just pushed"));

            // Emit up to the first EOS or the token budget.
            let eos_at = accepted.iter().position(ends);
            let take = eos_at.map_or(accepted.len(), |i| i + 1);
            let take = take.min(config.max_new_tokens - generated.len());
            on_tokens(&accepted[..take]);
            generated.extend(&accepted[..take]);
            if eos_at.is_some_and(|i| i < take) {
                break StopReason::Eos;
            }
            if generated.len() >= config.max_new_tokens {
                break StopReason::MaxNewTokens;
            }
        };
        timings.decode_s = decode_start.elapsed().as_secs_f64();
        timings.decode_tokens = generated.len().saturating_sub(1);
        Ok(Generation {
            prompt_ids: prompt.to_vec(),
            generated_ids: generated,
            stop_reason,
            timings,
            rounds,
        })
    }

    /// Prefill: the prompt's rows in one causal pass; its last row gives the first root token,
    /// and the drafter observes every prompt position paired with the token after it.
    fn prefill(
        &self,
        prompt: &[u32],
        config: &GenerationConfig,
        drafter: &mut dyn Drafter<B>,
        sampler: &mut Sampler,
    ) -> Result<Sequence<B>> {
        if prompt.is_empty() {
            return Err(Error::invalid("prompt", "\"\"", "needs at least one token"));
        }
        let c = self.target.config();
        let limit = c.max_position_embeddings;
        if prompt.len() >= limit {
            return Err(Error::Capacity {
                what: "prompt length (the model's max_position_embeddings)",
                requested: prompt.len() + 1,
                limit,
            });
        }
        // Sizes come from users: saturate instead of wrapping around.
        let capacity = prompt
            .len()
            .saturating_add(config.max_new_tokens)
            .saturating_add(drafter.max_tree())
            .min(limit);
        let mut cache = self.target.new_cache(drafter.reserved(), capacity);
        let taps = drafter.taps(c);
        drafter.reset(capacity);
        drafter.set_sampling(&config.sampling)?;
        drafter.prepare(&mut cache)?;
        let out = self
            .target
            .forward_causal(&mut cache, prompt, LogitRows::Last, &taps)?;
        let logits = confu_core::host_rows(out.logits.expect("requested"));
        check_finite(&logits, "the prefill")?;
        let root = sampler.sample(&logits[0]) as u32;
        let features = (!out.taps.is_empty()).then(|| Tensor::cat(out.taps, 1));
        let next: Vec<u32> = prompt[1..].iter().copied().chain([root]).collect();
        let path: Vec<usize> = (0..prompt.len()).collect();
        drafter.observe(Observation {
            target: &self.target,
            cache: &mut cache,
            features,
            path: &path,
            next: &next,
            prefill: true,
        })?;
        Ok(Sequence {
            cache,
            taps,
            context: prompt.to_vec(),
            root,
        })
    }

    /// Update: keep the accepted path in the target cache, let the drafter observe the accepted
    /// positions, and make the bonus token the next root. Returns the accepted tokens (root first).
    fn update(
        &self,
        seq: &mut Sequence<B>,
        drafter: &mut dyn Drafter<B>,
        tree: &DraftTree,
        prefix: usize,
        acceptance: &Acceptance,
        features: Option<Tensor<B, 2>>,
    ) -> Result<(Vec<u32>, f64)> {
        compact_to_path(&mut seq.cache, prefix, &acceptance.path)?;
        let accepted: Vec<u32> = acceptance.path.iter().map(|&n| tree.tokens[n]).collect();
        let start = Instant::now();
        if drafter.speculates() {
            let next: Vec<u32> = accepted[1..]
                .iter()
                .copied()
                .chain([acceptance.bonus])
                .collect();
            drafter.observe(Observation {
                target: &self.target,
                cache: &mut seq.cache,
                features,
                path: &acceptance.path,
                next: &next,
                prefill: false,
            })?;
        }
        let head_s = start.elapsed().as_secs_f64();
        seq.context.extend(&accepted);
        seq.root = acceptance.bonus;
        Ok((accepted, head_s))
    }
}

/// Non-finite logits (a damaged checkpoint, an overflowing activation) would silently decode
/// garbage: refuse them, naming where they appeared.
fn check_finite(logits: &[Vec<f32>], when: &str) -> Result<()> {
    for (row, l) in logits.iter().enumerate() {
        if let Some(v) = l.iter().find(|v| !v.is_finite()) {
            return Err(Error::invalid(
                "target logits",
                v,
                format!(
                    "non-finite in {when} (row {row}); the model's weights or activations overflow"
                ),
            ));
        }
    }
    Ok(())
}
