//! Training a byte-level BPE tokenizer on a text corpus with the `tokenizers` crate: the layout of
//! Llama-3 / GPT-2 style tokenizers (byte-level pre-tokenizer and decoder, no normaliser), with
//! begin/end-of-text special tokens and a post-processor that prepends the begin token, saved as a
//! `tokenizer.json` that `confu_model::Tokenizer` and Hugging Face `tokenizers` load unchanged.

use std::path::{Path, PathBuf};

use confu_core::{Error, Result};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::{ModelWrapper, TrainerWrapper};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    TokenizerBuilder,
};

/// The begin-of-text token (prepended to every encoding).
pub const BOS: &str = "<|begin_of_text|>";
/// The end-of-text token (the model's EOS).
pub const EOS: &str = "<|end_of_text|>";

/// Tokenizer training settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizerTraining {
    /// Vocabulary size including the special tokens and the 256 byte symbols.
    pub vocab_size: usize,
    /// Merges need at least this many occurrences.
    pub min_frequency: u64,
}

impl Default for TokenizerTraining {
    fn default() -> Self {
        Self {
            vocab_size: 4096,
            min_frequency: 2,
        }
    }
}

/// The `.txt` files of a corpus: `DIR/train/*.txt` when a `train` split exists, else `DIR/*.txt`.
pub fn corpus_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let split = dir.join("train");
    let root = if split.is_dir() {
        split
    } else {
        dir.to_path_buf()
    };
    let entries = std::fs::read_dir(&root).map_err(|e| Error::io(&root, e))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "txt"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::io(
            &root,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no .txt files in the corpus folder",
            ),
        ));
    }
    Ok(files)
}

/// Train on `files` and write `out_dir/tokenizer.json` (atomically). Returns the vocabulary size.
pub fn train_tokenizer(
    files: &[PathBuf],
    settings: &TokenizerTraining,
    out_dir: &Path,
) -> Result<usize> {
    let min_vocab = 256 + 2;
    // Far above any real BPE vocabulary; beyond it the trainer only allocates until it dies.
    let max_vocab = 1 << 20;
    if settings.vocab_size > max_vocab {
        return Err(Error::invalid(
            "vocab-size",
            settings.vocab_size,
            format!("must be at most {max_vocab}"),
        ));
    }
    if settings.vocab_size < min_vocab {
        return Err(Error::invalid(
            "vocab-size",
            settings.vocab_size,
            format!("must be at least {min_vocab} (256 bytes + 2 special tokens)"),
        ));
    }
    let fail = |e: tokenizers::Error| Error::Tokenizer(format!("training failed: {e}"));
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(settings.vocab_size)
        .min_frequency(settings.min_frequency)
        .special_tokens(vec![
            AddedToken::from(BOS, true),
            AddedToken::from(EOS, true),
        ])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    let mut tokenizer = TokenizerBuilder::<
        ModelWrapper,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(BPE::default().into())
    .with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false).into()))
    .with_decoder(Some(ByteLevel::default().into()))
    .build()
    .map_err(fail)?;
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    for f in files {
        if !f.is_file() {
            return Err(Error::io(
                f,
                std::io::Error::new(std::io::ErrorKind::NotFound, "corpus file not found"),
            ));
        }
    }
    tokenizer
        .train_from_files(&mut trainer, names)
        .map_err(fail)?;
    let bos = tokenizer
        .token_to_id(BOS)
        .expect("special tokens are in the vocabulary");
    let template = TemplateProcessing::builder()
        .try_single(format!("{BOS} $A"))
        .and_then(|b| b.try_pair(format!("{BOS} $A $B")))
        .map_err(|e| Error::Tokenizer(format!("post-processor: {e}")))?
        .special_tokens(vec![(BOS, bos)])
        .build()
        .map_err(|e| Error::Tokenizer(format!("post-processor: {e}")))?;
    tokenizer.with_post_processor(Some(template));
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let path = out_dir.join("tokenizer.json");
    let tmp = out_dir.join("tokenizer.json.tmp");
    tokenizer
        .save(&tmp, false)
        .map_err(|e| Error::Tokenizer(format!("{}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    Ok(tokenizer.get_vocab_size(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trains_loads_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let text = "fn main() { println!(\"hello, world\"); }\n".repeat(40)
            + &"def add(a, b):\n    return a + b\n".repeat(40);
        let file = dir.path().join("a.txt");
        std::fs::write(&file, text).unwrap();
        let out = dir.path().join("tok");
        let n = train_tokenizer(
            &[file],
            &TokenizerTraining {
                vocab_size: 300,
                min_frequency: 2,
            },
            &out,
        )
        .unwrap();
        assert!(n <= 300 && n > 258, "vocab {n}");
        let tok = confu_model::Tokenizer::from_dir(&out).unwrap();
        let ids = tok.encode("fn main() { return a + b }").unwrap();
        assert_eq!(ids[0], tok.token_to_id(BOS).unwrap());
        assert_eq!(tok.decode(&ids).unwrap(), "fn main() { return a + b }");
        // Merges were learned: far fewer tokens than bytes.
        assert!(ids.len() < 20, "{ids:?}");
        let e = train_tokenizer(
            &[],
            &TokenizerTraining {
                vocab_size: 10,
                min_frequency: 2,
            },
            &out,
        )
        .unwrap_err();
        assert!(e.to_string().contains("vocab-size"), "{e}");
    }
}
