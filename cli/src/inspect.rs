//! `confu inspect`: what a checkpoint folder holds, without loading the weights.

use std::path::PathBuf;

use clap::Args;
use confu_core::Result;
use confu_model::{ModelConfig, Tokenizer, WeightFiles};

/// Arguments of `confu inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Hugging Face checkpoint folder.
    #[arg(long, allow_hyphen_values = true, value_parser = crate::non_empty_path)]
    pub model: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InspectArgs) -> Result<()> {
    let config = ModelConfig::from_file(&args.model.join("config.json"))?;
    let files = WeightFiles::open(&args.model)?;
    let dtypes = files.dtype_summary();
    let tokenizer = Tokenizer::from_dir(&args.model).ok();
    let params = config.num_parameters();
    if args.json {
        let v = serde_json::json!({
            "config": config,
            "parameters": params,
            "dtypes": dtypes,
            "tokenizer_vocab_size": tokenizer.as_ref().map(|t| t.vocab_size()),
        });
        crate::outln!("{v}");
        return Ok(());
    }
    let c = &config;
    crate::outln!("model folder      {}", args.model.display());
    crate::outln!("architecture      {:?}", c.architecture);
    crate::outln!("layers            {}", c.num_hidden_layers);
    crate::outln!("hidden size       {}", c.hidden_size);
    crate::outln!("intermediate size {}", c.intermediate_size);
    crate::outln!(
        "attention heads   {} query, {} key/value (head_dim {})",
        c.num_attention_heads,
        c.num_key_value_heads,
        c.head_dim
    );
    crate::outln!("vocabulary        {}", c.vocab_size);
    crate::outln!("max positions     {}", c.max_position_embeddings);
    crate::outln!(
        "rope              theta {} scaling {:?}",
        c.rope.theta,
        c.rope.scaling
    );
    crate::outln!("tied embeddings   {}", c.tie_word_embeddings);
    crate::outln!(
        "parameters        {} ({:.1} M; {:.1} MB as f32 in memory)",
        params,
        params as f64 / 1e6,
        params as f64 * 4.0 / 1e6
    );
    let dt: Vec<String> = dtypes.iter().map(|(d, n)| format!("{d} x{n}")).collect();
    crate::outln!(
        "stored dtypes     {} (declared: {})",
        dt.join(", "),
        c.declared_dtype.as_deref().unwrap_or("-")
    );
    match tokenizer {
        Some(t) => crate::outln!(
            "tokenizer         {} entries, bos {:?}, eos {:?}",
            t.vocab_size(),
            c.bos_token_id,
            c.eos_token_ids
        ),
        None => crate::outln!("tokenizer         none (no readable tokenizer.json)"),
    }
    Ok(())
}
