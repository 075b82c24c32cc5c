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
    Eagle3(Eagle3Args),
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
        TrainCommand::Eagle3(a) => run_eagle3(a),
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
    let mut progress = StepProgress::new(t.steps, t.batch_size * t.seq_len);
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

/// Arguments of `confu train eagle3`.
#[derive(Debug, Args)]
pub struct Eagle3Args {
    /// The frozen target (HF layout, with tokenizer.json).
    #[arg(long, allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub target: PathBuf,
    /// Corpus folder with `train/*.txt`.
    #[arg(long, allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub corpus: PathBuf,
    /// Output folder: the head in the official EAGLE-3 layout, checkpoints, log.json, loss.png.
    #[arg(long, allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub out: PathBuf,
    /// Optional JSON file {"train": {...}, "eagle3": {ttt_steps, decay, draft_vocab_size}}.
    #[arg(long, allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub config: Option<PathBuf>,
    /// Continue from the checkpoint in OUT.
    #[arg(long)]
    pub resume: bool,
    /// Replace what OUT holds (an earlier run, or a folder `confu train` did not write).
    #[arg(long)]
    pub force: bool,
    /// Stop after this many tokens of training data.
    #[arg(long, allow_hyphen_values = true)]
    pub max_train_tokens: Option<usize>,
    /// Train on N sequences generated by the target itself from corpus prompts instead of on
    /// the corpus text (settings in the config's "self_distill" section; cached in OUT).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub self_distill: Option<usize>,
}

/// The `--config` file of `confu train eagle3`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Eagle3Config {
    train: confu_train::pretrain::TrainSettings,
    eagle3: confu_train::eagle3_train::Eagle3Settings,
    /// Present: train on the target's own continuations.
    self_distill: Option<confu_train::self_distill::SelfDistill>,
}

impl confu_train::config_file::Validate for Eagle3Config {
    fn validate(&self) -> std::result::Result<(), confu_train::config_file::Invalid> {
        self.train.validate()?;
        self.eagle3.validate()
    }
}

pub fn run_eagle3(a: Eagle3Args) -> Result<()> {
    use confu_train::eagle3_train::{evaluate_eagle3_dev, train_eagle3};
    use confu_train::pretrain::{pack_corpus, tokenize_file};
    use confu_train::self_distill::{self_distilled, SelfDistill, CACHE_FILE};

    let mut cfg: Eagle3Config = match &a.config {
        Some(p) => confu_train::config_file::read_config(p)?,
        None => Eagle3Config::default(),
    };
    let mut inputs: Vec<&std::path::Path> = vec![&a.target, &a.corpus];
    inputs.extend(a.config.as_deref());
    crate::out_paths::claim_output_dir(&a.out, "eagle3", a.resume, a.force, &inputs)?;
    let device = Default::default();
    let target =
        confu_model::TargetModel::<backend_cpu::Cpu>::load(&a.target, backend_cpu::ops(), &device)?;
    let tokenizer = confu_model::Tokenizer::from_dir(&a.target)?;
    let t = &cfg.train;
    if t.seq_len + 1 > target.config().max_position_embeddings {
        return Err(confu_core::Error::invalid(
            "train.seq_len",
            t.seq_len,
            "does not fit the target's max_position_embeddings",
        ));
    }
    let files = corpus_files(&a.corpus)?;
    let mut data = pack_corpus(&tokenizer, &files, t.seq_len, a.max_train_tokens)?;
    eprintln!(
        "{} tokens -> {} sequences of {}",
        data.tokens.len(),
        data.len(),
        t.seq_len + 1
    );
    if let Some(n) = a.self_distill {
        cfg.self_distill
            .get_or_insert_with(SelfDistill::default)
            .sequences = n;
    }
    let t = &cfg.train;
    if let Some(sd) = &cfg.self_distill {
        eprintln!(
            "generating {} sequences with the target (prompt {} tokens, temperature {})...",
            sd.sequences, sd.prompt_tokens, sd.temperature
        );
        let mut progress =
            StepProgress::counting(sd.sequences, t.seq_len + 1 - sd.prompt_tokens, "sequences");
        data = self_distilled(&target, &data, sd, &a.out.join(CACHE_FILE), |done, _| {
            progress.update(done - 1, None, None);
        })?;
        progress.finish();
    }
    let mut progress = StepProgress::new(t.steps, t.batch_size * t.seq_len);
    let trained = train_eagle3(
        &target,
        t,
        &cfg.eagle3,
        &data,
        &a.out,
        a.resume,
        |step, loss, lr| progress.update(step, Some(loss), Some(lr)),
    )?;
    progress.finish();
    let mut trained = trained;
    for f in corpus_files(&a.corpus.join("dev")).unwrap_or_default() {
        let cat = f
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let toks = tokenize_file(&tokenizer, &f, Some(t.dev_tokens))?;
        let r = evaluate_eagle3_dev(&target, &trained, &cfg.eagle3, &cat, &toks, t.seq_len)?;
        let acc: Vec<String> = r
            .per_step
            .iter()
            .map(|s| format!("{:.0}", 100.0 * s.top1))
            .collect();
        eprintln!(
            "dev {:<10} loss {:.3} top-1 {:.1}% (per step: {} %; {} tokens)",
            r.category,
            r.loss,
            100.0 * r.top1,
            acc.join("/"),
            r.tokens
        );
        trained.log.dev.push(r);
    }
    let c = target.config();
    trained.export(c.bos_token_id, c.eos_token_ids.first().copied(), &a.out)?;
    let log = &trained.log;
    confu_core::write_atomic(
        &a.out.join("log.json"),
        serde_json::to_string_pretty(log).expect("json").as_bytes(),
    )?;
    crate::plot::plot_loss(&log.steps, &a.out.join("loss.png"))?;
    eprintln!(
        "wrote {} (EAGLE-3 head, log.json, loss.png)",
        a.out.display()
    );
    Ok(())
}

/// Progress bar of a training run: loss, learning rate, tokens/s, ETA. When stderr is not a
/// terminal (a log file, CI) the bar is hidden, so a plain line is printed every 30 s instead.
struct StepProgress {
    bar: indicatif::ProgressBar,
    started: Instant,
    first: Option<usize>,
    tokens_per_step: f64,
    last_line: Instant,
}

impl StepProgress {
    fn new(steps: usize, tokens_per_step: usize) -> Self {
        Self::counting(steps, tokens_per_step, "steps")
    }

    fn counting(steps: usize, tokens_per_step: usize, unit: &str) -> Self {
        let bar = indicatif::ProgressBar::new(steps as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(&format!(
                "{{bar:30}} {{pos}}/{{len}} {unit} | {{msg}} | {{elapsed}} elapsed, eta {{eta}}"
            ))
            .expect("valid template"),
        );
        Self {
            bar,
            started: Instant::now(),
            first: None,
            tokens_per_step: tokens_per_step as f64,
            last_line: Instant::now(),
        }
    }

    fn update(
        &mut self,
        step: usize,
        loss: Option<f32>,
        lr: Option<f64>,
    ) -> confu_train::pretrain::Control {
        let first = *self.first.get_or_insert(step);
        let elapsed = self.started.elapsed().as_secs_f64();
        let done = (step + 1 - first) as f64;
        let rate = self.tokens_per_step * done / elapsed;
        self.bar.set_position(step as u64 + 1);
        let mut msg = String::new();
        if let Some(l) = loss {
            msg += &format!("loss {l:.3} ");
        }
        if let Some(l) = lr {
            msg += &format!("lr {l:.2e} ");
        }
        msg += &format!("{rate:.0} tok/s");
        let len = self.bar.length().unwrap_or(0);
        if self.bar.is_hidden()
            && (self.last_line.elapsed().as_secs() >= 30 || step as u64 + 1 == len)
        {
            let left = len.saturating_sub(step as u64 + 1) as f64 * elapsed / done;
            eprintln!(
                "{}/{len} | {msg} | {:.0} s elapsed, eta {:.0} s",
                step + 1,
                elapsed,
                left
            );
            self.last_line = Instant::now();
        }
        self.bar.set_message(msg);
        confu_train::pretrain::Control::Continue
    }

    fn finish(&self) {
        self.bar.finish();
    }
}
