//! `confu generate`: decode a prompt and stream the text.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use burn::tensor::backend::Backend;
use clap::Args;
use confu::{Engine, GenerationConfig, RoundTrace};
use confu_core::{Error, Ops, Result, SamplingParams};
use confu_model::{TargetModel, TextStream, Tokenizer};

use crate::backend::Job;
use crate::draft_args::{resolve_model, DraftArgs, EmbeddedDrafts, TreeArg};

/// Arguments of `confu generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json). Default: the
    /// embedded testbed model, drafting with its ConFu head (`--draft-kind eagle3`: with its
    /// EAGLE-3 head; `--vanilla`: not at all).
    #[arg(long, allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub model: Option<PathBuf>,
    /// The prompt text; `-` reads it from standard input. Text starting with `-` (a Markdown list,
    /// a diff) is taken as the prompt, not as an option.
    #[arg(
        long,
        allow_hyphen_values = true,
        required_unless_present = "prompt_file",
        conflicts_with = "prompt_file"
    )]
    pub prompt: Option<String>,
    /// Read the prompt from this file (UTF-8).
    #[arg(long, allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub prompt_file: Option<PathBuf>,
    /// Maximum number of tokens to generate.
    #[arg(long, default_value_t = 64, allow_hyphen_values = true)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 decodes greedily.
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub temperature: f32,
    /// Keep only the K most likely tokens when sampling.
    #[arg(long, allow_hyphen_values = true)]
    pub top_k: Option<usize>,
    /// Keep the smallest set of tokens whose probability reaches P when sampling.
    #[arg(long, allow_hyphen_values = true)]
    pub top_p: Option<f32>,
    /// Seed of the sampling RNG.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub seed: u64,
    /// Keep generating after an end-of-sequence token.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Compute device: cpu, wgpu[:N], cuda[:N].
    #[arg(long, default_value = "cpu", allow_hyphen_values = true)]
    pub device: String,
    /// Print one JSON object (ids, text, timings) instead of streaming text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub draft: DraftArgs,
}

impl GenerateArgs {
    /// The prompt: `--prompt TEXT`, `--prompt -` (standard input) or `--prompt-file FILE`.
    fn prompt_text(&self) -> Result<String> {
        match (&self.prompt, &self.prompt_file) {
            (Some(p), _) if p == "-" => {
                let mut text = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                    .map_err(|e| Error::io("standard input", e))?;
                Ok(text)
            }
            (Some(p), _) => Ok(p.clone()),
            (None, Some(path)) => std::fs::read_to_string(path).map_err(|e| Error::io(path, e)),
            (None, None) => Err(Error::invalid(
                "prompt",
                "none",
                "give --prompt TEXT, --prompt - or --prompt-file FILE",
            )),
        }
    }

    fn config(&self) -> GenerationConfig {
        GenerationConfig {
            max_new_tokens: self.max_new_tokens,
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                seed: self.seed,
            },
            stop_at_eos: !self.ignore_eos,
        }
    }
}

impl Job for GenerateArgs {
    type Output = ();

    fn run<B: Backend>(self, ops: Arc<dyn Ops<B>>, device: B::Device) -> Result<()> {
        let config = self.config();
        config.validate()?;
        let (dir, draft) = resolve_model(&self.model, &self.draft, EmbeddedDrafts::Confu)?;
        // Generation wants speed: the tree (or none) this device decodes fastest with.
        let draft = draft.default_tree(TreeArg::auto());
        let model = TargetModel::<B>::load(&dir, ops, &device)?;
        let tokenizer = Tokenizer::from_dir(&dir)?;
        let prompt_text = self.prompt_text()?;
        let prompt = tokenizer.encode(&prompt_text)?;
        let (drafter, engine) = if draft.enabled() {
            let (label, mode) = draft.mode(&model)?;
            (label, draft.engine_for(&model, mode)?)
        } else {
            ("vanilla".to_string(), Engine::new(model))
        };
        let mut stream = TextStream::default();
        let mut out = std::io::stdout().lock();
        let json = self.json;
        let mut stream_err = None;
        let generation = engine.generate(&prompt, &config, |ids| {
            if json || stream_err.is_some() {
                return;
            }
            let written = stream.push(&tokenizer, ids).and_then(|text| {
                out.write_all(text.as_bytes())
                    .and_then(|()| out.flush())
                    .map_err(|e| Error::io("standard output", e))
            });
            if let Err(e) = written {
                stream_err = Some(e);
            }
        })?;
        if let Some(e) = stream_err {
            return Err(e);
        }
        let text = tokenizer.decode(&generation.generated_ids)?;
        if json {
            let value = serde_json::json!({
                "prompt": prompt_text,
                "drafter": drafter,
                "prompt_ids": generation.prompt_ids,
                "generated_ids": generation.generated_ids,
                "text": text,
                "stop_reason": generation.stop_reason,
                "timings": generation.timings,
                "prefill_tokens_per_s": generation.timings.prefill_tokens_per_s(),
                "decode_tokens_per_s": generation.timings.decode_tokens_per_s(),
                "tau": generation.tau(),
                "rounds": generation.rounds,
            });
            writeln!(out, "{value}").map_err(|e| Error::io("standard output", e))?;
        } else {
            let rest = stream.finish(&tokenizer)?;
            writeln!(out, "{rest}").map_err(|e| Error::io("standard output", e))?;
            let t = &generation.timings;
            eprintln!(
                "[{drafter}: {} prompt tokens, {} generated ({:?}); prefill {:.1} tok/s, decode {:.1} tok/s; tau {:.2} over {} rounds]",
                generation.prompt_ids.len(),
                generation.generated_ids.len(),
                generation.stop_reason,
                t.prefill_tokens_per_s(),
                t.decode_tokens_per_s(),
                generation.tau(),
                generation.rounds.len()
            );
            if let Some(line) = auto_line(&generation.rounds) {
                eprintln!("[{line}]");
            }
        }
        Ok(())
    }
}

/// `--tree auto`'s choices over a generation, and its predicted against its achieved speed.
fn auto_line(rounds: &[RoundTrace]) -> Option<String> {
    let planned: Vec<_> = rounds
        .iter()
        .filter_map(|r| r.auto.map(|a| (r, a)))
        .collect();
    if planned.is_empty() {
        return None;
    }
    let drafted: Vec<_> = planned.iter().filter(|(_, a)| a.head_tree()).collect();
    let lookup = planned.iter().filter(|(_, a)| a.lookup_ngram > 0).count();
    let tokens: usize = planned.iter().map(|(r, _)| r.tokens.len()).sum();
    let spent: f64 = planned
        .iter()
        .map(|(r, _)| r.draft_s + r.verify_s + r.update_s)
        .sum();
    let predicted: f64 = planned.iter().map(|(_, a)| a.predicted_tokens).sum();
    let predicted_s: f64 = planned.iter().map(|(_, a)| a.predicted_s).sum();
    let mean = |f: fn(&confu_draft::AutoChoice) -> usize| {
        drafted.iter().map(|(_, a)| f(a)).sum::<usize>() as f64 / drafted.len().max(1) as f64
    };
    Some(format!(
        "tree auto: {} of {} rounds drafted by the head (mean {:.1} nodes, {:.1} levels), {} verified a prompt-lookup chain; predicted {:.1} tok/s, achieved {:.1} tok/s",
        drafted.len(),
        planned.len(),
        mean(|a| a.nodes),
        mean(|a| a.levels),
        lookup,
        predicted / predicted_s.max(f64::MIN_POSITIVE),
        tokens as f64 / spent.max(f64::MIN_POSITIVE),
    ))
}
