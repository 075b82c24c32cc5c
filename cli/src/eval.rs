//! `confu eval`: vanilla and one or more drafters (`--draft A --draft B`, ConFu, EAGLE-3 or
//! lookup) on the same Spec-Bench-format prompts, in one process: one table, JSON and plot with
//! the drafters side by side.

use std::path::PathBuf;
use std::sync::Arc;

use burn::tensor::backend::Backend;
use clap::Args;
use confu::eval::{check_repeat, compare, read_questions};
use confu::{Engine, GenerationConfig};
use confu_core::{Error, Ops, Result, SamplingParams};
use confu_model::{TargetModel, Tokenizer};
use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::Job;
use crate::draft_args::{resolve_model, DraftArgs, EmbeddedDrafts};

/// Arguments of `confu eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Hugging Face checkpoint folder of the target. Default: the embedded testbed model, comparing
    /// its EAGLE-3 head and its ConFu head with vanilla.
    #[arg(long, allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub model: Option<PathBuf>,
    /// Spec-Bench `question.jsonl` (question_id, category, turns). Default: the embedded copy of
    /// the corpus's `prompts-dev.jsonl` (160 prompts, 4 categories).
    #[arg(long, allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub prompts: Option<PathBuf>,
    #[command(flatten)]
    pub draft: DraftArgs,
    /// Tokens generated per prompt.
    #[arg(long, default_value_t = 64, allow_hyphen_values = true)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 = greedy (and outputs are checked against vanilla).
    #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
    pub temperature: f32,
    /// Seed of the sampling RNG.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub seed: u64,
    /// Run every prompt N times on every engine (rotating their order) and sum the runs: the
    /// timing noise of the speedup shrinks with more repeats; outputs and τ are those of N runs.
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    pub repeat: usize,
    /// Use only the first N questions.
    #[arg(long, allow_hyphen_values = true)]
    pub limit: Option<usize>,
    /// Also write the full report as JSON to this file.
    #[arg(long, allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub json: Option<PathBuf>,
    /// Draw tau per category and the histogram of accepted lengths to this PNG.
    #[arg(long, allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub plot: Option<PathBuf>,
    /// Compute device: cpu, wgpu[:N], cuda[:N].
    #[arg(long, default_value = "cpu", allow_hyphen_values = true)]
    pub device: String,
}

impl Job for EvalArgs {
    type Output = ();

    fn run<B: Backend>(self, ops: Arc<dyn Ops<B>>, device: B::Device) -> Result<()> {
        let config = GenerationConfig {
            max_new_tokens: self.max_new_tokens,
            sampling: SamplingParams {
                temperature: self.temperature,
                top_k: None,
                top_p: None,
                seed: self.seed,
            },
            stop_at_eos: true,
        };
        config.validate()?;
        let prompts = match &self.prompts {
            Some(path) => path.clone(),
            None => crate::embedded::default_model()?.prompts,
        };
        // Output paths are checked before the long work, not after it.
        for path in [&self.json, &self.plot].into_iter().flatten() {
            crate::out_paths::check_output_file(path, &[&prompts])?;
        }
        check_repeat(self.repeat)?;
        if self.limit == Some(0) {
            return Err(Error::invalid(
                "limit",
                0,
                "must be >= 1 (omit it to use every question)",
            ));
        }
        let mut questions = read_questions(&prompts)?;
        if let Some(n) = self.limit {
            questions.truncate(n);
        }
        let (dir, draft) = resolve_model(&self.model, &self.draft, EmbeddedDrafts::Eagle3AndConfu)?;
        if !draft.enabled() {
            return Err(Error::invalid(
                "draft",
                "none",
                "eval compares drafters with vanilla: give --draft DIR (ConFu or EAGLE-3, repeatable) or --draft-kind lookup",
            ));
        }
        let target = TargetModel::<B>::load(&dir, ops, &device)?;
        let tokenizer = Tokenizer::from_dir(&dir)?;
        let drafters = draft.engines(&target)?;
        let vanilla = Engine::new(target);
        let bar = ProgressBar::new(questions.len() as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} prompts, {elapsed} elapsed, eta {eta}",
            )
            .expect("valid template"),
        );
        let report = compare(
            &vanilla,
            &drafters,
            &tokenizer,
            &questions,
            &config,
            self.repeat,
            |_, _| bar.inc(1),
        )?;
        bar.finish_and_clear();
        crate::output::write_out(&report.table())?;
        for d in &report.drafters {
            let hist = d.report.acceptance_histogram();
            crate::outln!("{}: accepted drafts per round (0..): {hist:?}", d.name);
        }
        if let Some(path) = &self.json {
            let text = serde_json::to_string_pretty(&report).expect("serialisable report");
            confu_core::write_atomic(path, text.as_bytes())?;
            eprintln!("wrote {}", path.display());
        }
        if let Some(path) = &self.plot {
            crate::plot::plot_eval(&report, path)?;
            eprintln!("wrote {}", path.display());
        }
        Ok(())
    }
}
