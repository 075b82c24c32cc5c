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
    /// Pretrain a Llama-architecture target from scratch and export it in the HF layout.
    Lm(LmArgs),
    /// Train an EAGLE-3 head for a frozen target (training-time test), official layout.
    Eagle3(crate::train_head::Eagle3Args),
    /// Train ConFu (soft prompt, contemplate and future MoEs, and the head) from an EAGLE-3
    /// head, through the frozen target; writes a ConFu draft folder.
    Confu(crate::train_head::ConfuArgs),
}

/// Arguments of `confu train tokenizer`.
#[derive(Debug, Args)]
pub struct TokenizerArgs {
    /// Corpus folder: its `train/*.txt` (or its own `*.txt`).
    #[arg(long, allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub corpus: PathBuf,
    /// Vocabulary size, special tokens and the 256 byte symbols included.
    #[arg(long, default_value_t = 4096, allow_hyphen_values = true)]
    pub vocab_size: usize,
    /// Minimum occurrences of a merge.
    #[arg(long, default_value_t = 2, allow_hyphen_values = true)]
    pub min_frequency: u64,
    /// Output folder (tokenizer.json is written there).
    #[arg(long, allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub out: PathBuf,
    /// Replace what OUT holds (an earlier tokenizer, or a folder `confu train` did not write).
    #[arg(long)]
    pub force: bool,
}

pub fn run(cmd: TrainCommand) -> Result<()> {
    match cmd {
        TrainCommand::Tokenizer(a) => {
            let files = corpus_files(&a.corpus)?;
            crate::out_paths::claim_output_dir(&a.out, "tokenizer", false, a.force, &[&a.corpus])?;
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
        TrainCommand::Lm(a) => run_lm(a),
        TrainCommand::Eagle3(a) => crate::train_head::run_eagle3(a),
        TrainCommand::Confu(a) => crate::train_head::run_confu(a),
    }
}

/// Arguments of `confu train lm`.
#[derive(Debug, Args)]
pub struct LmArgs {
    /// Corpus folder with `train/*.txt` (and `dev/*.txt` for the evaluation).
    #[arg(long, allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub corpus: PathBuf,
    /// Folder holding the tokenizer.json to use.
    #[arg(long, allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub tokenizer: PathBuf,
    /// JSON file: {"model": {hidden_size, intermediate_size, num_hidden_layers,
    /// num_attention_heads, num_key_value_heads, max_position_embeddings}, "train": {...}}.
    #[arg(long, allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub config: PathBuf,
    /// Output folder: the exported model, checkpoints, log.json, loss.png.
    #[arg(long, allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub out: PathBuf,
    /// Continue from the checkpoint in OUT.
    #[arg(long)]
    pub resume: bool,
    /// Replace what OUT holds (an earlier run, or a folder `confu train` did not write).
    #[arg(long)]
    pub force: bool,
    /// Stop after this many tokens of training data (for quick runs).
    #[arg(long, allow_hyphen_values = true)]
    pub max_train_tokens: Option<usize>,
}

pub fn run_lm(a: LmArgs) -> Result<()> {
    use confu_train::pretrain::{
        evaluate_dev, pack_corpus, pretrain, tokenize_file, LmTrainConfig,
    };

    let cfg = LmTrainConfig::from_file(&a.config)?;
    crate::out_paths::claim_output_dir(
        &a.out,
        "lm",
        a.resume,
        a.force,
        &[&a.corpus, &a.tokenizer, &a.config],
    )?;
    let tokenizer = confu_model::Tokenizer::from_dir(&a.tokenizer)?;
    let model_config = cfg.model_config(&tokenizer);
    let t = &cfg.train;
    let files = corpus_files(&a.corpus)?;
    eprintln!("tokenizing {} training files...", files.len());
    let data = pack_corpus(&tokenizer, &files, t.seq_len, a.max_train_tokens)?;
    eprintln!(
        "{} tokens -> {} sequences of {}; model {:.2} M parameters",
        data.tokens.len(),
        data.len(),
        t.seq_len + 1,
        model_config.num_parameters() as f64 / 1e6
    );
    let device = Default::default();
    let mut progress = crate::progress::StepProgress::new(t.steps, t.batch_size * t.seq_len);
    let (model, mut log) = pretrain::<backend_cpu::Cpu>(
        &model_config,
        t,
        &data,
        &a.out,
        a.resume,
        &device,
        |step, loss, lr| progress.update(step, Some(loss), Some(lr)),
    )?;
    progress.finish();

    let dev_dir = a.corpus.join("dev");
    if let Ok(dev_files) = corpus_files(&dev_dir) {
        for f in dev_files {
            let cat = f
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default();
            let toks = tokenize_file(&tokenizer, &f, Some(t.dev_tokens))?;
            let r = evaluate_dev(&model, &model_config, &cat, &toks, t.seq_len, &device);
            eprintln!(
                "dev {:<10} loss {:.3} top-1 {:.1}% ({} tokens)",
                r.category,
                r.loss,
                100.0 * r.top1,
                r.tokens
            );
            log.dev.push(r);
        }
    }
    model.export(&model_config, &a.out)?;
    std::fs::copy(
        a.tokenizer.join("tokenizer.json"),
        a.out.join("tokenizer.json"),
    )
    .map_err(|e| confu_core::Error::io(a.out.join("tokenizer.json"), e))?;
    confu_core::write_atomic(
        &a.out.join("log.json"),
        serde_json::to_string_pretty(&log).expect("json").as_bytes(),
    )?;
    crate::plot::plot_loss(&log.steps, &a.out.join("loss.png"))?;
    eprintln!(
        "wrote {} (model, tokenizer, log.json, loss.png)",
        a.out.display()
    );
    Ok(())
}
