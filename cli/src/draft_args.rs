//! How to draft, shared by `generate`, `eval` and `check`: the draft folders (or the embedded
//! heads), the drafter kind, the tree (`--tree N,D,K` or `--tree auto`) and ConFu's `[con]`
//! nodes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::backend::Backend;
use clap::Args;
use confu::{ConfuHead, DraftMode, Engine};
use confu_core::{Error, Result};
use confu_draft::{AutoTreeOptions, DraftSampling, Eagle3Head, PromptLookup, TreeSettings};
use confu_model::TargetModel;
use confu_moe::ContemplateNodes;

/// How to draft (shared by `generate` and `eval`).
#[derive(Debug, Clone, Args)]
pub struct DraftArgs {
    /// Draft folder: an EAGLE-3 head in the official layout, or a ConFu folder (the same plus
    /// `confu.json` and `confu.safetensors`, detected by `confu.json`); enables speculative
    /// decoding. `eval` takes it several times (or a comma list) to compare drafters.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub draft: Vec<PathBuf>,
    /// Drafter: confu or eagle3 (need --draft, except on the embedded model, which has one head of
    /// each; a ConFu folder also drafts as plain EAGLE-3), or lookup (prompt n-gram lookup, no
    /// model). Default: confu for a ConFu folder, else eagle3.
    #[arg(long, value_enum, allow_hyphen_values = true)]
    pub draft_kind: Option<DraftKind>,
    /// Dynamic tree: TOTAL_TOKENS,DEPTH,TOP_K, or `auto` (each round the tree, down to none,
    /// that maximises expected tokens per second from costs measured on this device and
    /// acceptance measured online; `auto:TOTAL,DEPTH,TOP_K` bounds it, default 64,6,8).
    /// Default: `auto` for `generate` (the fastest decoding this device offers), 30,4,8 for
    /// `eval` and `check` (which compare and check what the drafters accept).
    #[arg(long, value_parser = parse_tree_arg, allow_hyphen_values = true)]
    pub tree: Option<TreeArg>,
    /// With `--tree auto`: the longest prompt-lookup chain (the continuation of the latest
    /// earlier occurrence of the text's last 1–3 tokens) a round may verify instead of a head's
    /// tree, when its measured acceptance pays better; 0: the head's trees only; at most the
    /// largest tree's nodes below the root [default: 8].
    #[arg(long)]
    pub auto_lookup: Option<usize>,
    /// ConFu: which tree nodes get a `[con]` row, `all` or `top:M` (the root and the M
    /// best-scoring nodes); overrides the folder's confu.json.
    #[arg(long, value_parser = parse_contemplate_nodes, allow_hyphen_values = true)]
    pub contemplate_nodes: Option<ContemplateNodes>,
    /// At temperature > 0: `draw` proposes chains drawn from the head's distribution, accepted
    /// by speculative sampling (`min(1, p/q)`), wherever the tree is a chain (`--tree auto`,
    /// and fixed trees of top-k 1); `top` keeps EAGLE's rule (the head's top-k tokens, each
    /// accepted with the target's probability). No effect on greedy decoding [default: draw].
    #[arg(long, value_parser = parse_draft_sampling)]
    pub draft_sampling: Option<DraftSampling>,
    /// Decode with the target alone, even with the embedded model (which drafts by default).
    #[arg(long, conflicts_with_all = ["draft", "draft_kind"])]
    pub vanilla: bool,
}

fn parse_draft_sampling(s: &str) -> std::result::Result<DraftSampling, String> {
    s.parse().map_err(|e: Error| e.to_string())
}

fn parse_contemplate_nodes(s: &str) -> std::result::Result<ContemplateNodes, String> {
    ContemplateNodes::parse(s).ok_or_else(|| format!("`{s}` is neither `all` nor `top:M`"))
}

/// Which embedded heads draft when `--model` is absent and no drafter is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmbeddedDrafts {
    /// The ConFu head (what `generate` drafts with).
    Confu,
    /// The EAGLE-3 control head and the ConFu head, in that order (what `eval` and `check`
    /// compare).
    Eagle3AndConfu,
}

/// The target folder to load, and the drafting arguments: those given, or the embedded testbed
/// model with the heads `defaults` names when `--model` is absent.
pub fn resolve_model(
    model: &Option<PathBuf>,
    draft: &DraftArgs,
    defaults: EmbeddedDrafts,
) -> Result<(PathBuf, DraftArgs)> {
    match model {
        Some(dir) => Ok((dir.clone(), draft.clone())),
        None => {
            let embedded = crate::embedded::default_model()?;
            let mut draft = draft.clone();
            if !draft.enabled() && !draft.vanilla {
                draft.draft = match defaults {
                    EmbeddedDrafts::Confu => vec![embedded.confu],
                    EmbeddedDrafts::Eagle3AndConfu => vec![embedded.eagle3, embedded.confu],
                };
            } else if draft.draft_kind.is_some() && draft.draft.is_empty() {
                // `--draft-kind eagle3|confu` alone names a way to draft the embedded heads.
                match draft.draft_kind {
                    Some(DraftKind::Eagle3) => draft.draft = vec![embedded.eagle3],
                    Some(DraftKind::Confu) => draft.draft = vec![embedded.confu],
                    _ => {}
                }
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

/// `--tree`: a fixed dynamic tree, or `auto` within a largest tree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TreeArg {
    Fixed(TreeSettings),
    Auto(AutoTreeOptions),
}

impl TreeArg {
    /// `auto` within its default largest tree.
    pub fn auto() -> Self {
        TreeArg::Auto(AutoTreeOptions::default())
    }

    /// The fixed tree, or the largest tree `auto` may choose.
    pub fn settings(&self) -> TreeSettings {
        match self {
            TreeArg::Fixed(t) => *t,
            TreeArg::Auto(o) => o.max,
        }
    }
}

pub fn parse_tree_arg(s: &str) -> std::result::Result<TreeArg, String> {
    let auto = |max| {
        TreeArg::Auto(AutoTreeOptions {
            max,
            ..AutoTreeOptions::default()
        })
    };
    match s.trim() {
        "auto" => Ok(auto(AutoTreeOptions::default().max)),
        t => match t.strip_prefix("auto:") {
            Some(max) => parse_tree(max).map(auto),
            None => parse_tree(t).map(TreeArg::Fixed),
        },
    }
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
    /// The drafting mode these arguments select for `target` (one drafter at most), with its label.
    pub fn mode<B: Backend>(&self, target: &TargetModel<B>) -> Result<(String, DraftMode<B>)> {
        if self.draft.len() > 1 {
            return Err(Error::invalid(
                "draft",
                format!("{} folders", self.draft.len()),
                "generate drafts with one; `confu eval` compares several",
            ));
        }
        Ok(self.modes(target)?.remove(0))
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
                    tree: self.tree().settings(),
                }
            }
            DraftKind::Eagle3 => DraftMode::Eagle3 {
                head: Arc::new(Eagle3Head::load(dir, target)?),
                tree: self.tree().settings(),
            },
            DraftKind::Lookup => DraftMode::Lookup(PromptLookup::default()),
        };
        Ok((label, mode))
    }

    /// One engine per drafter these arguments select (see [`Self::modes`]), each with its own
    /// `--tree auto` policy when asked for.
    pub fn engines<B: Backend>(&self, target: &TargetModel<B>) -> Result<Vec<(String, Engine<B>)>> {
        self.modes(target)?
            .into_iter()
            .map(|(name, mode)| Ok((name, self.engine_for(target, mode)?)))
            .collect()
    }

    /// The engine of one drafting mode, with `--tree auto` applied.
    pub fn engine_for<B: Backend>(
        &self,
        target: &TargetModel<B>,
        mode: DraftMode<B>,
    ) -> Result<Engine<B>> {
        if let (Some(n), TreeArg::Fixed(_)) = (self.auto_lookup, self.tree()) {
            return Err(Error::invalid(
                "auto-lookup",
                n.to_string(),
                "applies to --tree auto only",
            ));
        }
        let engine = Engine::with_mode(target.clone(), mode)?
            .with_draft_sampling(self.draft_sampling.unwrap_or_default());
        match self.tree() {
            TreeArg::Auto(options) => engine.with_auto_tree(options),
            TreeArg::Fixed(_) => Ok(engine),
        }
    }

    /// The tree asked for, or the EAGLE-3 paper's 30,4,8 when none was (`eval`, `check`; see
    /// [`Self::default_tree`]), with `--auto-lookup` applied to `auto`.
    pub fn tree(&self) -> TreeArg {
        match self.tree.unwrap_or(TreeArg::Fixed(TreeSettings::default())) {
            TreeArg::Auto(options) => TreeArg::Auto(AutoTreeOptions {
                lookup: self.auto_lookup.unwrap_or(options.lookup),
                ..options
            }),
            fixed => fixed,
        }
    }

    /// These arguments with `tree` as the tree when `--tree` was not given.
    pub fn default_tree(mut self, tree: TreeArg) -> Self {
        self.tree.get_or_insert(tree);
        self
    }

    /// Whether any drafting was asked for.
    pub fn enabled(&self) -> bool {
        !self.draft.is_empty() || self.draft_kind.is_some()
    }
}
