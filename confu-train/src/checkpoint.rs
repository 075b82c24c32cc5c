//! Checkpoints of a training run: the module, the optimizer state, the log, a fingerprint of
//! what the run was made from and checksums of the tensor files.
//!
//! Written so that a kill at any instant leaves a resumable checkpoint: a complete new one is
//! written into `checkpoint.tmp` (its `state.json` last), then swapped in through
//! `checkpoint.old`. Loading looks at all three folders and resumes from the newest complete one
//! whose checksums hold; a checkpoint made from another config, tokenizer, target or data is
//! refused with the difference named, and a damaged one is never trained on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::Backend;
use confu_core::{write_atomic, Error, Result};
use serde::{Deserialize, Serialize};

use crate::trainer::TrainLog;

type Ad<B> = Autodiff<B>;

/// What a run was made from, by name (`model`, `train`, `data`, `target`, …): a run resumes only
/// from a checkpoint whose fingerprint agrees on every entry.
pub type Fingerprint = BTreeMap<String, String>;

/// FNV-1a, 64 bits: a stable checksum (the same on every platform and Rust version).
pub fn fnv64(bytes: &[u8]) -> u64 {
    fnv64_of(bytes.iter().copied())
}

/// [`fnv64`] over a byte stream (no buffer needed).
pub fn fnv64_of(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `fnv64` of a value's JSON form, as hex (for fingerprints of settings).
pub fn fingerprint_of(value: &impl Serialize) -> String {
    format!(
        "{:016x}",
        fnv64(serde_json::to_string(value).expect("json").as_bytes())
    )
}

/// A target model's fingerprint: its configuration and a checksum of every weight.
pub fn target_fingerprint<B: Backend>(target: &confu_model::TargetModel<B>) -> String {
    module_fingerprint(target.config(), target.weights())
}

/// A hash of a module's shape description and every parameter's name and values.
pub fn module_fingerprint<B: Backend, M: burn::module::Module<B>>(
    config: &impl Serialize,
    module: &M,
) -> String {
    let mut h = fnv64(serde_json::to_string(config).expect("json").as_bytes());
    for t in confu_model::named_values(module, "") {
        let values = fnv64_of(t.values.iter().flat_map(|v| v.to_le_bytes()));
        h ^= fnv64(t.name.as_bytes()).rotate_left(17) ^ values;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[derive(Debug, Serialize, Deserialize)]
struct State {
    log: TrainLog,
    fingerprint: Fingerprint,
    /// File name → FNV-1a of its bytes.
    checksums: BTreeMap<String, String>,
}

const FILES: [&str; 2] = ["model.bin", "optim.bin"];

fn folders(ckpt: &Path) -> [PathBuf; 3] {
    [
        ckpt.to_path_buf(),
        ckpt.with_extension("old"),
        ckpt.with_extension("tmp"),
    ]
}

/// A folder's state if it holds a complete checkpoint with intact files, else why not.
fn read_complete(dir: &Path) -> std::result::Result<State, String> {
    let path = dir.join("state.json");
    let text =
        std::fs::read_to_string(&path).map_err(|_| "incomplete (no state.json)".to_string())?;
    let state: State =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    for f in FILES {
        let bytes = std::fs::read(dir.join(f)).map_err(|e| format!("{f}: {e}"))?;
        let sum = format!("{:016x}", fnv64(&bytes));
        if state.checksums.get(f) != Some(&sum) {
            return Err(format!(
                "{f} is damaged (checksum {sum} differs from the recorded one)"
            ));
        }
    }
    Ok(state)
}

/// Restore model, optimizer state and log from the newest complete, intact checkpoint among
/// `ckpt`, `ckpt.old` and `ckpt.tmp`, after checking that it was made from `fingerprint`.
pub fn load_checkpoint<B: Backend, M: AutodiffModule<Ad<B>>, O: Optimizer<M, Ad<B>>>(
    model: M,
    optim: O,
    ckpt: &Path,
    fingerprint: &Fingerprint,
    device: &B::Device,
) -> Result<(M, O, TrainLog)> {
    let mut found: Vec<(usize, PathBuf, State)> = Vec::new();
    let mut problems = Vec::new();
    for dir in folders(ckpt).into_iter().filter(|d| d.is_dir()) {
        match read_complete(&dir) {
            Ok(s) => found.push((s.log.steps.last().map_or(0, |l| l.0 + 1), dir, s)),
            Err(why) => problems.push(format!("{}: {why}", dir.display())),
        }
    }
    let Some((_, dir, state)) = found.into_iter().max_by_key(|f| f.0) else {
        let why = if problems.is_empty() {
            "none was written yet".to_string()
        } else {
            problems.join("; ")
        };
        return Err(Error::io(
            ckpt,
            std::io::Error::other(format!("no complete checkpoint to resume from: {why}")),
        ));
    };
    for (name, want) in fingerprint {
        let have = state.fingerprint.get(name);
        if have != Some(want) {
            return Err(Error::Config {
                path: dir.join("state.json"),
                field: name.clone(),
                msg: format!(
                    "the checkpoint was made with a different {name} ({} here, {want} now); resume with the same settings, or start afresh with --force",
                    have.map_or("none", String::as_str)
                ),
            });
        }
    }
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    let model = model
        .load_file(dir.join("model"), &recorder, device)
        .map_err(|e| Error::Format {
            path: dir.join("model.bin"),
            msg: e.to_string(),
        })?;
    let record = recorder
        .load(dir.join("optim"), device)
        .map_err(|e| Error::Format {
            path: dir.join("optim.bin"),
            msg: e.to_string(),
        })?;
    Ok((model, optim.load_record(record), state.log))
}

/// Write model, optimizer state, log and fingerprint to `ckpt` (see the module docs).
pub fn save_checkpoint<B: Backend, M: AutodiffModule<Ad<B>>, O: Optimizer<M, Ad<B>>>(
    model: &M,
    optim: &O,
    log: &TrainLog,
    fingerprint: &Fingerprint,
    ckpt: &Path,
) -> Result<()> {
    save_checkpoint_until::<B, M, O>(model, optim, log, fingerprint, ckpt, usize::MAX)
}

/// [`save_checkpoint`] stopped after `stages` of its 8 file-system steps, as a kill would leave
/// it: the crash tests call this for every stage.
#[doc(hidden)]
pub fn save_checkpoint_until<B: Backend, M: AutodiffModule<Ad<B>>, O: Optimizer<M, Ad<B>>>(
    model: &M,
    optim: &O,
    log: &TrainLog,
    fingerprint: &Fingerprint,
    ckpt: &Path,
    stages: usize,
) -> Result<()> {
    let [_, old, tmp] = folders(ckpt);
    let recorder = &BinFileRecorder::<FullPrecisionSettings>::new();
    let fail = |p: PathBuf, e: String| Error::Format { path: p, msg: e };
    let remove = |d: &Path| -> Result<()> {
        if d.exists() {
            std::fs::remove_dir_all(d).map_err(|e| Error::io(d, e))?;
        }
        Ok(())
    };
    let steps: [&dyn Fn() -> Result<()>; 8] = [
        &|| remove(&tmp),
        &|| {
            std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
            model
                .clone()
                .save_file(tmp.join("model"), recorder)
                .map_err(|e| fail(tmp.join("model.bin"), e.to_string()))
        },
        &|| {
            recorder
                .record(optim.to_record(), tmp.join("optim"))
                .map_err(|e| fail(tmp.join("optim.bin"), e.to_string()))
        },
        &|| {
            let mut checksums = BTreeMap::new();
            for f in FILES {
                let bytes = std::fs::read(tmp.join(f)).map_err(|e| Error::io(tmp.join(f), e))?;
                checksums.insert(f.to_string(), format!("{:016x}", fnv64(&bytes)));
            }
            let state = State {
                log: log.clone(),
                fingerprint: fingerprint.clone(),
                checksums,
            };
            write_atomic(
                &tmp.join("state.json"),
                serde_json::to_string(&state).expect("json").as_bytes(),
            )
        },
        // The new checkpoint is complete: the older spare can go.
        &|| remove(&old),
        &|| {
            if ckpt.exists() {
                std::fs::rename(ckpt, &old).map_err(|e| Error::io(ckpt, e))?;
            }
            Ok(())
        },
        &|| std::fs::rename(&tmp, ckpt).map_err(|e| Error::io(ckpt, e)),
        &|| remove(&old),
    ];
    for step in steps.iter().take(stages) {
        step()?;
    }
    Ok(())
}
