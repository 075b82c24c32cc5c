//! Checkpoints of a training run: the module, the optimizer state and the log, written so that a
//! kill never leaves a half-written checkpoint.

use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::Backend;
use confu_core::{write_atomic, Error, Result};

use crate::trainer::TrainLog;

type Ad<B> = Autodiff<B>;

/// Restore model, optimizer state and log from `ckpt`.
pub fn load_checkpoint<B: Backend, M: AutodiffModule<Ad<B>>, O: Optimizer<M, Ad<B>>>(
    model: M,
    optim: O,
    ckpt: &Path,
    device: &B::Device,
) -> Result<(M, O, TrainLog)> {
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    let state_path = ckpt.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(|e| Error::io(&state_path, e))?;
    let log: TrainLog = serde_json::from_str(&text).map_err(|e| Error::Format {
        path: state_path.clone(),
        msg: e.to_string(),
    })?;
    let model = model
        .load_file(ckpt.join("model"), &recorder, device)
        .map_err(|e| Error::Format {
            path: ckpt.join("model.bin"),
            msg: e.to_string(),
        })?;
    let record = recorder
        .load(ckpt.join("optim"), device)
        .map_err(|e| Error::Format {
            path: ckpt.join("optim.bin"),
            msg: e.to_string(),
        })?;
    Ok((model, optim.load_record(record), log))
}

/// Write model, optimizer state and log to `ckpt` so that a kill never leaves a half-written
/// checkpoint: a complete new one is written beside the old one, then swapped in.
pub fn save_checkpoint<B: Backend, M: AutodiffModule<Ad<B>>, O: Optimizer<M, Ad<B>>>(
    model: &M,
    optim: &O,
    log: &TrainLog,
    ckpt: &Path,
) -> Result<()> {
    let recorder = &BinFileRecorder::<FullPrecisionSettings>::new();
    let tmp = ckpt.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let fail = |p: PathBuf, e: String| Error::Format { path: p, msg: e };
    model
        .clone()
        .save_file(tmp.join("model"), recorder)
        .map_err(|e| fail(tmp.join("model.bin"), e.to_string()))?;
    recorder
        .record(optim.to_record(), tmp.join("optim"))
        .map_err(|e| fail(tmp.join("optim.bin"), e.to_string()))?;
    write_atomic(
        &tmp.join("state.json"),
        serde_json::to_string(log).expect("json").as_bytes(),
    )?;
    let old = ckpt.with_extension("old");
    if ckpt.exists() {
        std::fs::rename(ckpt, &old).map_err(|e| Error::io(ckpt, e))?;
    }
    std::fs::rename(&tmp, ckpt).map_err(|e| Error::io(ckpt, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(())
}
