//! The decode loop. For now the vanilla mode: one target forward per token through the KV cache.
//! Speculative modes extend this same loop with a drafter and a verifier.

use std::time::Instant;

use burn::tensor::backend::Backend;
use confu_core::{DenseKvCache, Error, Result, Sampler};
use confu_model::{LogitRows, TargetModel};

use crate::generation::{Generation, GenerationConfig, StopReason, Timings};

/// Generates text with a target model.
#[derive(Debug, Clone)]
pub struct Engine<B: Backend> {
    target: TargetModel<B>,
}

impl<B: Backend> Engine<B> {
    /// An engine decoding with `target` alone.
    pub fn new(target: TargetModel<B>) -> Self {
        Self { target }
    }

    /// The target model.
    pub fn target(&self) -> &TargetModel<B> {
        &self.target
    }

    /// Generate a continuation of `prompt`. `on_tokens` sees every new token as soon as it exists
    /// (for streaming).
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
        // The last generated token is never fed back, so n + max_new - 1 slots suffice.
        let room = limit - prompt.len();
        let max_new = config.max_new_tokens.min(room);
        let mut cache = self.target.new_cache(0, prompt.len() + max_new);
        let mut sampler = Sampler::new(config.sampling.clone())?;
        let mut timings = Timings {
            prefill_tokens: prompt.len(),
            ..Default::default()
        };

        let start = Instant::now();
        let mut logits = self.step(&mut cache, prompt)?;
        let mut token = sampler.sample(&logits) as u32;
        timings.prefill_s = start.elapsed().as_secs_f64();
        on_tokens(&[token]);
        let mut generated = vec![token];

        let start = Instant::now();
        let stop_reason = loop {
            if config.stop_at_eos && c.eos_token_ids.contains(&token) {
                break StopReason::Eos;
            }
            if generated.len() >= config.max_new_tokens {
                break StopReason::MaxNewTokens;
            }
            if generated.len() >= max_new {
                break StopReason::PositionLimit;
            }
            logits = self.step(&mut cache, &[token])?;
            token = sampler.sample(&logits) as u32;
            generated.push(token);
            on_tokens(&[token]);
        };
        timings.decode_s = start.elapsed().as_secs_f64();
        timings.decode_tokens = generated.len() - 1;
        Ok(Generation {
            prompt_ids: prompt.to_vec(),
            generated_ids: generated,
            stop_reason,
            timings,
        })
    }

    /// Append causal rows and return the last row's logits on the host.
    fn step(&self, cache: &mut DenseKvCache<B>, ids: &[u32]) -> Result<Vec<f32>> {
        let out = self
            .target
            .forward_causal(cache, ids, LogitRows::Last, &[])?;
        let logits = out.logits.expect("logits were requested");
        Ok(logits
            .into_data()
            .convert::<f32>()
            .to_vec()
            .expect("f32 logits"))
    }
}
