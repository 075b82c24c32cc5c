//! `confu check`: the reference checks that ship with confu, run on the chosen device, one line
//! per check with what it measured. It is how a user (or we, on a machine without a Rust
//! toolchain) tells in a minute whether a device setup computes what the references computed:
//! Hugging Face parity of every `hf/` fixture, the official EAGLE-3 `eagenerate` runs, the ConFu
//! reference runs, and greedy speculative decoding equal to vanilla greedy on the embedded model
//! (or `--model`/`--draft`).

use std::path::PathBuf;
use std::sync::Arc;

use burn::tensor::backend::Backend;
use clap::Args;
use confu::check::{fixture_checks, greedy_equality, CheckLine};
use confu_core::{Error, Ops, Result};
use confu_model::{TargetModel, Tokenizer};

use crate::backend::Job;
use crate::draft_args::{resolve_model, DraftArgs, EmbeddedDrafts};

/// Prompts of the greedy-equality check: one per kind of text the testbed knows.
const PROMPTS: [&str; 4] = [
    "The history of the river town began when",
    "def merge_sorted(a, b):\n    \"\"\"Merge two sorted lists.\"\"\"\n",
    "fn parse_header(bytes: &[u8]) -> Result<Header, Error> {\n",
    "Q: What is the boiling point of water at sea level?\nA:",
];

/// Arguments of `confu check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Compute device: cpu, wgpu[:N], cuda[:N].
    #[arg(long, default_value = "cpu", allow_hyphen_values = true)]
    pub device: String,
    /// Fixture root: a folder holding `hf/`, `eagle3/` and/or `confu/` fixture folders (the
    /// repository's `../shared/fixtures`); repeat or comma-separate for several. Default: the
    /// fixtures beside the source tree this binary was built from, and `$CONFU_EXTRA_FIXTURES`.
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub fixtures: Vec<PathBuf>,
    /// Target of the greedy-equality check. Default: the embedded testbed model and its draft;
    /// `--vanilla` skips that check.
    #[arg(long, allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub model: Option<PathBuf>,
    /// Tokens generated per prompt in the greedy-equality check.
    #[arg(long, default_value_t = 48, allow_hyphen_values = true)]
    pub max_new_tokens: usize,
    #[command(flatten)]
    pub draft: DraftArgs,
}

impl Job for CheckArgs {
    type Output = ();

    fn run<B: Backend>(self, ops: Arc<dyn Ops<B>>, device: B::Device) -> Result<()> {
        println!("confu check on {} ({:?})", self.device, device);
        let explicit = !self.fixtures.is_empty();
        let roots = if explicit {
            self.fixtures.clone()
        } else {
            confu::reference::fixture_roots()
        };
        if let Some(missing) = roots.iter().find(|r| explicit && !r.is_dir()) {
            return Err(Error::invalid(
                "fixtures",
                missing.display().to_string(),
                "not a folder",
            ));
        }
        let mut lines = fixture_checks(&roots, ops.clone(), &device, |l| println!("{l}"));
        if lines.is_empty() {
            let msg = format!(
                "no fixture folders under {roots:?}; pass --fixtures DIR (the repository's \
                 ../shared/fixtures) to run the reference checks"
            );
            if explicit {
                return Err(Error::invalid("fixtures", format!("{roots:?}"), msg));
            }
            println!("note   {msg}");
        }

        if self.draft.vanilla {
            // Nothing drafts, so there is no speculative output to hold against vanilla.
            return summarize(&lines, &self.device);
        }
        let (model_dir, draft) =
            resolve_model(&self.model, &self.draft, EmbeddedDrafts::Eagle3AndConfu)?;
        let target = TargetModel::<B>::load(&model_dir, ops, &device)?;
        let tokenizer = Tokenizer::from_dir(&model_dir)?;
        let prompts = PROMPTS
            .iter()
            .map(|p| tokenizer.encode(p))
            .collect::<Result<Vec<_>>>()?;
        for (label, mode) in draft.modes(&target)? {
            let name = format!("greedy {label} == vanilla");
            let line = greedy_equality(&name, &target, mode, &prompts, self.max_new_tokens);
            println!("{line}");
            lines.push(line);
        }
        summarize(&lines, &self.device)
    }
}

fn summarize(lines: &[CheckLine], device: &str) -> Result<()> {
    let failed = lines.iter().filter(|l| !l.passed).count();
    if failed == 0 {
        println!("all {} checks passed on {device}", lines.len());
        Ok(())
    } else {
        Err(Error::Device {
            device: device.into(),
            msg: format!("{failed} of {} checks failed", lines.len()),
        })
    }
}
