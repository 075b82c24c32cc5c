//! `confu train`: building the testbed (and users' own heads) from text.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};
use confu_core::Result;
use confu_train::tokenizer::{corpus_files, train_tokenizer, TokenizerTraining};

/// Training commands.
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// Train a byte-level BPE tokenizer (tokenizer.json with begin/end-of-text tokens).
    Tokenizer(TokenizerArgs),
}

/// Arguments of `confu train tokenizer`.
#[derive(Debug, Args)]
pub struct TokenizerArgs {
    /// Corpus folder: its `train/*.txt` (or its own `*.txt`).
    #[arg(long)]
    pub corpus: PathBuf,
    /// Vocabulary size, special tokens and the 256 byte symbols included.
    #[arg(long, default_value_t = 4096)]
    pub vocab_size: usize,
    /// Minimum occurrences of a merge.
    #[arg(long, default_value_t = 2)]
    pub min_frequency: u64,
    /// Output folder (tokenizer.json is written there).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(cmd: TrainCommand) -> Result<()> {
    match cmd {
        TrainCommand::Tokenizer(a) => {
            let files = corpus_files(&a.corpus)?;
            let bytes: u64 = files
                .iter()
                .filter_map(|f| f.metadata().ok())
                .map(|m| m.len())
                .sum();
            eprintln!(
                "training a {}-entry BPE tokenizer on {} files ({:.1} MB)...",
                a.vocab_size,
                files.len(),
                bytes as f64 / 1e6
            );
            let start = Instant::now();
            let settings = TokenizerTraining {
                vocab_size: a.vocab_size,
                min_frequency: a.min_frequency,
            };
            let n = train_tokenizer(&files, &settings, &a.out)?;
            eprintln!(
                "wrote {} ({n} tokens) in {:.1} s",
                a.out.join("tokenizer.json").display(),
                start.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}
