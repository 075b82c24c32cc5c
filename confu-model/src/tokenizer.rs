//! `tokenizer.json` through the `tokenizers` crate, with errors that name the file.

use std::path::{Path, PathBuf};

use confu_core::{Error, Result};

/// A loaded tokenizer.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer({})", self.path.display())
    }
}

impl Tokenizer {
    /// Load `dir/tokenizer.json`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        Self::from_file(&dir.join("tokenizer.json"))
    }

    /// Load a `tokenizer.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        if !path.exists() {
            return Err(Error::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "tokenizer file not found"),
            ));
        }
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        Ok(Self {
            inner,
            path: path.to_path_buf(),
        })
    }

    /// Encode text, adding the special tokens the tokenizer's post-processor adds (e.g. BOS).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::Tokenizer(format!("encoding failed: {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decode ids to text, skipping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| Error::Tokenizer(format!("decoding failed: {e}")))
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token string, if it exists.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Where it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The wrapped `tokenizers` object, for anything not exposed here.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

/// Incremental detokenizer for streaming: yields only text that later tokens cannot change
/// (byte-level BPE may split one character across tokens).
#[derive(Debug, Default)]
pub struct TextStream {
    ids: Vec<u32>,
    emitted: usize,
}

impl TextStream {
    /// Add tokens and return the newly finished text.
    pub fn push(&mut self, tokenizer: &Tokenizer, ids: &[u32]) -> Result<String> {
        self.ids.extend_from_slice(ids);
        let text = tokenizer.decode(&self.ids)?;
        // Hold back a trailing replacement character: it may be half of a multi-byte character.
        let stable = text.trim_end_matches('\u{FFFD}');
        if stable.len() <= self.emitted || !stable.is_char_boundary(self.emitted) {
            return Ok(String::new());
        }
        let out = stable[self.emitted..].to_string();
        self.emitted = stable.len();
        Ok(out)
    }

    /// Whatever is still held back.
    pub fn finish(&mut self, tokenizer: &Tokenizer) -> Result<String> {
        let text = tokenizer.decode(&self.ids)?;
        let out = text.get(self.emitted..).unwrap_or("").to_string();
        self.emitted = text.len();
        Ok(out)
    }
}
