//! Writing a head in the official EAGLE-3 layout (`config.json` + `model.safetensors` with the
//! module's tensors under their official names, `d2t` as I64 and `t2d` as BOOL), which
//! [`crate::Eagle3Head::load`] and the official EAGLE code load unchanged.

use std::path::Path;

use burn::tensor::backend::Backend;
use confu_core::{write_atomic, Error, Result};
use confu_model::{named_values, write_safetensors, NamedTensor};

use crate::config::DraftConfig;
use crate::head::Eagle3;

/// Export `net` of shape `c` with its draft vocabulary (`d2t` offsets, `t2d` mask) into `dir`,
/// each file atomically.
pub fn export_official<B: Backend>(
    net: &Eagle3<B>,
    c: &DraftConfig,
    d2t: &[i64],
    t2d: &[bool],
    special: (Option<u32>, Option<u32>),
    dir: &Path,
) -> Result<()> {
    if d2t.len() != c.draft_vocab_size || t2d.len() != c.vocab_size {
        return Err(Error::shape(
            "draft vocabulary",
            format!(
                "d2t {} / t2d {} for draft vocab {} / vocab {}",
                d2t.len(),
                t2d.len(),
                c.draft_vocab_size,
                c.vocab_size
            ),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut tensors: Vec<NamedTensor> = named_values(net, "").into_iter().map(Into::into).collect();
    tensors.push(NamedTensor::i64("d2t", vec![d2t.len()], d2t));
    tensors.push(NamedTensor::bool("t2d", vec![t2d.len()], t2d));
    write_safetensors(&dir.join("model.safetensors"), &tensors, None)?;
    let json = c.to_official_json(special.0, special.1);
    write_atomic(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&json)
            .expect("json")
            .as_bytes(),
    )
}
