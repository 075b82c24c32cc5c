//! The decode loop. Vanilla, prompt-lookup and EAGLE-3 decoding are one loop with parts switched
//! on or off: each round a drafter (none, n-gram lookup, or the EAGLE-3 head) proposes a tree below
//! the pending root token, the target verifies it in one forward, the acceptance rule keeps a path
//! plus a bonus token, and the caches are compacted to that path. Without a drafter the tree is the
//! root alone, which is exactly plain autoregressive decoding.

use std::sync::Arc;
use std::time::Instant;

use burn::tensor::{backend::Backend, Int, Tensor, TensorData};
use confu_core::sampling::filtered_probs;
use confu_core::{DraftTree, Error, KvCache, Result, Sampler};
use confu_draft::{feature_layers, Eagle3Drafter, Eagle3Head, PromptLookup, TreeSettings};
use confu_model::{LogitRows, Tap, TargetModel};
use confu_verify::{compact_to_path, greedy_accept, sample_accept, verify_tree, Acceptance};

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
}

/// Generates text with a target model and an optional drafter.
#[derive(Debug, Clone)]
pub struct Engine<B: Backend> {
    target: TargetModel<B>,
    mode: DraftMode<B>,
}

impl<B: Backend> Engine<B> {
    /// An engine decoding with `target` alone.
    pub fn new(target: TargetModel<B>) -> Self {
        Self {
            target,
            mode: DraftMode::Vanilla,
        }
    }

    /// An engine drafting with `mode`.
    pub fn with_mode(target: TargetModel<B>, mode: DraftMode<B>) -> Result<Self> {
        if let DraftMode::Eagle3 { tree, .. } = &mode {
            tree.validate()?;
        }
        Ok(Self { target, mode })
    }

    /// The target model.
    pub fn target(&self) -> &TargetModel<B> {
        &self.target
    }

    /// The drafting mode.
    pub fn mode(&self) -> &DraftMode<B> {
        &self.mode
    }

    /// Generate a continuation of `prompt`. `on_tokens` sees the tokens of every round as soon as
    /// they are final (for streaming).
    pub fn generate(
        &self,
        prompt: &[u32],
        config: &GenerationConfig,
        mut on_tokens: impl FnMut(&[u32]),
    ) -> Result<Generation> {
        config.validate()?;
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
        let max_tree = match &self.mode {
            DraftMode::Vanilla => 1,
            DraftMode::Lookup(l) => l.num_draft + 1,
            DraftMode::Eagle3 { tree, .. } => tree.total_tokens,
        };
        let capacity = (prompt.len() + config.max_new_tokens + max_tree).min(limit);
        let mut cache = self.target.new_cache(0, capacity);
        let mut sampler = Sampler::new(config.sampling.clone())?;
        let taps: Vec<Tap> = match &self.mode {
            DraftMode::Eagle3 { .. } => feature_layers(c.num_hidden_layers)
                .map(Tap::LayerInput)
                .to_vec(),
            _ => vec![],
        };
        let mut drafter = match &self.mode {
            DraftMode::Eagle3 { head, tree } => Some(Eagle3Drafter::new(
                head.clone(),
                self.target.ops().clone(),
                capacity + tree.depth * tree.top_k,
            )),
            _ => None,
        };

        let mut timings = Timings {
            prefill_tokens: prompt.len(),
            ..Default::default()
        };
        let start = Instant::now();
        let out = self
            .target
            .forward_causal(&mut cache, prompt, LogitRows::Last, &taps)?;
        let logits = confu_core::host_rows(out.logits.expect("requested"));
        let mut root = sampler.sample(&logits[0]) as u32;
        if let Some(d) = drafter.as_mut() {
            let next: Vec<u32> = prompt[1..].iter().copied().chain([root]).collect();
            d.extend(Tensor::cat(out.taps, 1), &next)?;
        }
        timings.prefill_s = start.elapsed().as_secs_f64();

        let mut context: Vec<u32> = prompt.to_vec();
        let mut generated: Vec<u32> = Vec::new();
        let mut rounds: Vec<RoundTrace> = Vec::new();
        let decode_start = Instant::now();
        let stop_reason = loop {
            let prefix = cache.len();
            // A pending root that completes the output (or ends it) needs no forward.
            let vanilla = drafter.is_none() && !matches!(self.mode, DraftMode::Lookup(_));
            let ends = config.stop_at_eos && c.eos_token_ids.contains(&root);
            if vanilla && (ends || generated.len() + 1 >= config.max_new_tokens) {
                generated.push(root);
                on_tokens(&[root]);
                break if ends {
                    StopReason::Eos
                } else {
                    StopReason::MaxNewTokens
                };
            }
            if prefix + 1 >= limit || prefix + 1 > cache.capacity() {
                generated.push(root);
                on_tokens(&[root]);
                break StopReason::PositionLimit;
            }
            // Budget: nodes must fit the cache, depths the position limit.
            let room = (cache.capacity() - prefix).min(limit - prefix);
            let t0 = Instant::now();
            let tree = match (&self.mode, drafter.as_mut()) {
                (DraftMode::Eagle3 { tree, .. }, Some(d)) => {
                    let settings = TreeSettings {
                        total_tokens: tree.total_tokens.min(room),
                        depth: tree.depth.min(room.saturating_sub(2)),
                        top_k: tree.top_k,
                    };
                    d.draft_tree(root, settings)?
                }
                (DraftMode::Lookup(l), _) => {
                    context.push(root);
                    let t = l.draft(&context, root, room);
                    context.pop();
                    t
                }
                _ => DraftTree::root_only(root),
            };
            let t1 = Instant::now();
            let verification = verify_tree(&self.target, &mut cache, &tree, &taps)?;
            let acceptance = self.accept(&tree, &verification.logits, &mut sampler);
            let t2 = Instant::now();
            compact_to_path(&mut cache, prefix, &acceptance.path)?;
            let accepted: Vec<u32> = acceptance.path.iter().map(|&n| tree.tokens[n]).collect();
            if let (Some(d), Some(features)) = (drafter.as_mut(), verification.features) {
                let idx: Vec<i64> = acceptance.path.iter().map(|&n| n as i64).collect();
                let idx = Tensor::<B, 1, Int>::from_data(
                    TensorData::new(idx, [acceptance.path.len()]),
                    self.target.device(),
                );
                let next: Vec<u32> = accepted[1..]
                    .iter()
                    .copied()
                    .chain([acceptance.bonus])
                    .collect();
                d.extend(features.select(0, idx), &next)?;
            }
            let t3 = Instant::now();
            rounds.push(RoundTrace {
                tree_size: tree.len(),
                accepted_drafts: acceptance.accepted_drafts(),
                tokens: accepted.clone(),
                draft_s: (t1 - t0).as_secs_f64(),
                verify_s: (t2 - t1).as_secs_f64(),
                update_s: (t3 - t2).as_secs_f64(),
            });
            context.extend(&accepted);
            root = acceptance.bonus;

            // Emit up to the first EOS or the token budget.
            let eos_at = accepted
                .iter()
                .position(|t| config.stop_at_eos && c.eos_token_ids.contains(t));
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

    fn accept(&self, tree: &DraftTree, logits: &[Vec<f32>], sampler: &mut Sampler) -> Acceptance {
        if sampler.params().is_greedy() {
            let argmax: Vec<u32> = logits
                .iter()
                .map(|l| confu_core::sampling::argmax(l) as u32)
                .collect();
            greedy_accept(tree, &argmax)
        } else {
            let params = sampler.params().clone();
            sample_accept(tree, |n| filtered_probs(&logits[n], &params), sampler)
        }
    }
}
