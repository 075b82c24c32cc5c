//! Where commands write, checked before the long work starts: nothing that is not our own earlier
//! output of the same kind is overwritten unless the user asks (`--force`, or `--resume` to
//! continue), no output may be one of the command's inputs, and no file write goes through a
//! link, a FIFO, a device or a folder.

use std::path::{Path, PathBuf};

use confu_core::{write_atomic, Error, Result};

/// The marker a training command leaves in its output folder: `{"kind": "lm"}`.
const MARKER: &str = "confu-output.json";

/// Files that hold a training run's value: its checkpoint and its exports.
const VALUABLE: [&str; 7] = [
    "checkpoint",
    "checkpoint.old",
    "checkpoint.tmp",
    "model.safetensors",
    "tokenizer.json",
    "config.json",
    "self_distill.safetensors",
];

fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn refuse(path: &Path, msg: impl Into<String>) -> Error {
    Error::io(path, std::io::Error::other(msg.into()))
}

/// Claim `out` for a training run of `kind` (`tokenizer`, `lm`, `eagle3`, `confu`) reading `inputs`.
pub fn claim_output_dir(
    out: &Path,
    kind: &str,
    resume: bool,
    force: bool,
    inputs: &[&Path],
) -> Result<()> {
    if let Some(input) = inputs.iter().find(|i| same_path(out, i)) {
        return Err(refuse(
            out,
            format!(
                "is also an input of this command ({}); choose another --out",
                input.display()
            ),
        ));
    }
    if out.exists() {
        if !out.is_dir() {
            return Err(refuse(out, "exists and is not a folder"));
        }
        let marker = std::fs::read_to_string(out.join(MARKER)).ok();
        let ours = marker
            .as_deref()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
            .and_then(|v| v["kind"].as_str().map(str::to_string));
        let has_content = std::fs::read_dir(out)
            .map_err(|e| Error::io(out, e))?
            .next()
            .is_some();
        match ours.as_deref() {
            _ if !has_content => {}
            Some(k) if k == kind => {
                let valuable = VALUABLE.iter().any(|f| out.join(f).exists());
                if valuable && !resume && !force {
                    return Err(refuse(
                        out,
                        format!("already holds a `{kind}` training run; pass --resume to continue it or --force to replace it"),
                    ));
                }
            }
            Some(k) if !force => {
                return Err(refuse(
                    out,
                    format!("holds a `{k}` run, not `{kind}`; choose another --out (or --force)"),
                ))
            }
            None if !force => {
                return Err(refuse(
                    out,
                    "is not empty and was not written by `confu train`; choose another --out (or --force)",
                ))
            }
            _ => {}
        }
    }
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    write_atomic(
        &out.join(MARKER),
        serde_json::json!({ "kind": kind }).to_string().as_bytes(),
    )
}

/// Check, before any work, that `path` can take a new file: its folder exists, and it is either
/// absent or a regular file that is none of `inputs`.
pub fn check_output_file(path: &Path, inputs: &[&Path]) -> Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_file() {
            return Err(refuse(
                path,
                "exists and is not a regular file (a link, folder, FIFO or device); choose another path",
            ));
        }
        if inputs.iter().any(|i| same_path(path, i)) {
            return Err(refuse(
                path,
                "is also an input of this command; choose another path",
            ));
        }
    }
    let parent: PathBuf = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        return Err(refuse(
            path,
            format!("its folder {} does not exist", parent.display()),
        ));
    }
    Ok(())
}
