//! `confu generate`: decode a prompt and stream the text.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::backend::Backend;
use clap::Args;
use confu::{ConfuHead, DraftMode, Engine, GenerationConfig};
use confu_core::{Error, Ops, Result, SamplingParams};
use confu_draft::{Eagle3Head, PromptLookup, TreeSettings};
use confu_model::{TargetModel, TextStream, Tokenizer};
use confu_moe::ContemplateNodes;

use crate::backend::Job;

/// Arguments of `confu generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json). Default: the
    /// embedded testbed model, drafting with its EAGLE-3 head.
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

/// How to draft (shared by `generate` and `eval`).
#[derive(Debug, Clone, Args)]
pub struct DraftArgs {
    /// Draft folder: an EAGLE-3 head in the official layout, or a ConFu folder (the same plus
    /// `confu.json` and `confu.safetensors`, detected by `confu.json`); enables speculative
    /// decoding. `eval` takes it several times (or a comma list) to compare drafters.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub draft: Vec<PathBuf>,
    /// Drafter: confu or eagle3 (need --draft; a ConFu folder also drafts as plain EAGLE-3), or
    /// lookup (prompt n-gram lookup, no model). Default: confu for a ConFu folder, else eagle3.
    #[arg(long, value_enum, allow_hyphen_values = true)]
    pub draft_kind: Option<DraftKind>,
    /// Dynamic tree: TOTAL_TOKENS,DEPTH,TOP_K.
    #[arg(long, default_value = "30,4,8", value_parser = parse_tree, allow_hyphen_values = true)]
    pub tree: TreeSettings,
    /// ConFu: which tree nodes get a `[con]` row, `all` or `top:M` (the root and the M
    /// best-scoring nodes); overrides the folder's confu.json.
    #[arg(long, value_parser = parse_contemplate_nodes, allow_hyphen_values = true)]
    pub contemplate_nodes: Option<ContemplateNodes>,
    /// Decode with the target alone, even with the embedded model (which drafts by default).
    #[arg(long, conflicts_with_all = ["draft", "draft_kind"])]
    pub vanilla: bool,
}

fn parse_contemplate_nodes(s: &str) -> std::result::Result<ContemplateNodes, String> {
    ContemplateNodes::parse(s).ok_or_else(|| format!("`{s}` is neither `all` nor `top:M`"))
}

/// The target folder to load, and the drafting arguments: those given, or the embedded testbed
/// model with its EAGLE-3 head when `--model` is absent.
pub fn resolve_model(model: &Option<PathBuf>, draft: &DraftArgs) -> Result<(PathBuf, DraftArgs)> {
    match model {
        Some(dir) => Ok((dir.clone(), draft.clone())),
        None => {
            let embedded = crate::embedded::default_model()?;
            let mut draft = draft.clone();
            if !draft.enabled() && !draft.vanilla {
                draft.draft = vec![embedded.draft];
            }
            tracing::info!(
                "using the embedded testbed model in {}",
                embedded.target.display()
            );
            Ok((embedded.target, draft))
        }
    }
}

/// Which drafter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DraftKind {
    Confu,
    Eagle3,
    Lookup,
}

pub fn parse_tree(s: &str) -> std::result::Result<TreeSettings, String> {
    let parts: Vec<&str> = s.split(',').collect();
    let nums: Vec<usize> = parts
        .iter()
        .map(|p| p.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| format!("`{s}`: expected TOTAL,DEPTH,TOPK, e.g. 30,4,8"))?;
    let [total_tokens, depth, top_k] = nums[..] else {
        return Err(format!("`{s}`: expected three numbers TOTAL,DEPTH,TOPK"));
    };
    let t = TreeSettings {
        total_tokens,
        depth,
        top_k,
    };
    t.validate().map_err(|e| e.to_string())?;
    Ok(t)
}

impl DraftArgs {
    /// The drafting mode these arguments select for `target` (one drafter at most).
    pub fn mode<B: Backend>(&self, target: &TargetModel<B>) -> Result<DraftMode<B>> {
        if self.draft.len() > 1 {
            return Err(Error::invalid(
                "draft",
                format!("{} folders", self.draft.len()),
                "generate drafts with one; `confu eval` compares several",
            ));
        }
        Ok(self.modes(target)?.remove(0).1)
    }

    /// Every drafter these arguments select, with a label each: one per `--draft` folder (ConFu
    /// when it has `confu.json`, else EAGLE-3, unless `--draft-kind` says), or prompt lookup.
    pub fn modes<B: Backend>(
        &self,
        target: &TargetModel<B>,
    ) -> Result<Vec<(String, DraftMode<B>)>> {
        if self.draft.is_empty() {
            return match self.draft_kind {
                Some(DraftKind::Lookup) | None => Ok(vec![(
                    "lookup".into(),
                    DraftMode::Lookup(PromptLookup::default()),
                )]),
                Some(kind) => Err(Error::invalid(
                    "draft-kind",
                    format!("{kind:?}").to_lowercase(),
                    "needs --draft DIR",
                )),
            };
        }
        self.draft
            .iter()
            .map(|dir| self.mode_for(dir, target))
            .collect()
    }

    fn mode_for<B: Backend>(
        &self,
        dir: &Path,
        target: &TargetModel<B>,
    ) -> Result<(String, DraftMode<B>)> {
        let is_confu = ConfuHead::<B>::is_confu_folder(dir);
        let kind = self.draft_kind.unwrap_or(if is_confu {
            DraftKind::Confu
        } else {
            DraftKind::Eagle3
        });
        let name = dir
            .file_name()
            .map_or("draft".into(), |n| n.to_string_lossy().to_string());
        let label = format!("{}:{name}", format!("{kind:?}").to_lowercase());
        let mode = match kind {
            DraftKind::Confu if !is_confu => {
                return Err(Error::invalid(
                    "draft-kind",
                    "confu",
                    format!(
                        "{} has no confu.json: it is not a ConFu folder",
                        dir.display()
                    ),
                ))
            }
            DraftKind::Confu => {
                let confu = ConfuHead::load(dir, target)?;
                DraftMode::Confu {
                    confu: match self.contemplate_nodes {
                        Some(nodes) => confu.with_contemplate_nodes(nodes),
                        None => confu,
                    },
                    tree: self.tree,
                }
            }
            DraftKind::Eagle3 => DraftMode::Eagle3 {
                head: Arc::new(Eagle3Head::load(dir, target)?),
                tree: self.tree,
            },
            DraftKind::Lookup => DraftMode::Lookup(PromptLookup::default()),
        };
        Ok((label, mode))
    }

    /// Whether any drafting was asked for.
    pub fn enabled(&self) -> bool {
        !self.draft.is_empty() || self.draft_kind.is_some()
    }
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
        let (dir, draft) = resolve_model(&self.model, &self.draft)?;
        let model = TargetModel::<B>::load(&dir, ops, &device)?;
        let tokenizer = Tokenizer::from_dir(&dir)?;
        let prompt_text = self.prompt_text()?;
        let prompt = tokenizer.encode(&prompt_text)?;
        let engine = if draft.enabled() {
            let mode = draft.mode(&model)?;
            Engine::with_mode(model, mode)?
        } else {
            Engine::new(model)
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
                "[{} prompt tokens, {} generated ({:?}); prefill {:.1} tok/s, decode {:.1} tok/s; tau {:.2} over {} rounds]",
                generation.prompt_ids.len(),
                generation.generated_ids.len(),
                generation.stop_reason,
                t.prefill_tokens_per_s(),
                t.decode_tokens_per_s(),
                generation.tau(),
                generation.rounds.len()
            );
        }
        Ok(())
    }
}
