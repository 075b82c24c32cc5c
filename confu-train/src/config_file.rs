//! Training configuration files, read and validated once: unknown keys are refused (a misspelled
//! `"step"` must not silently run the default 1000 steps), and every value is range-checked with
//! the file and the field named.

use std::path::Path;

use confu_core::{Error, Result};
use serde::de::DeserializeOwned;

/// A value's range violation: the field (dotted, as in the file) and what is wrong.
pub type Invalid = (String, String);

/// Settings that can check their own ranges.
pub trait Validate {
    fn validate(&self) -> std::result::Result<(), Invalid>;
}

/// Read a JSON config file into `T`, refusing unknown keys, then validate it.
pub fn read_config<T: DeserializeOwned + Validate>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let value: T = parse_json(&text).map_err(|msg| Error::Format {
        path: path.to_path_buf(),
        msg,
    })?;
    value.validate().map_err(|(field, msg)| Error::Config {
        path: path.to_path_buf(),
        field,
        msg,
    })?;
    Ok(value)
}

/// `Err` naming `field` unless `ok`.
pub fn check(ok: bool, field: &str, msg: impl Into<String>) -> std::result::Result<(), Invalid> {
    if ok {
        Ok(())
    } else {
        Err((field.to_string(), msg.into()))
    }
}

/// Every size in `sizes` is at least 1.
pub fn positive(sizes: &[(&str, usize)]) -> std::result::Result<(), Invalid> {
    for (field, v) in sizes {
        check(*v >= 1, field, format!("{v} must be >= 1"))?;
    }
    Ok(())
}

/// A finite float within `lo..=hi` (`lo_open`: strictly above `lo`).
pub fn in_range(
    field: &str,
    v: f64,
    lo: f64,
    hi: f64,
    lo_open: bool,
) -> std::result::Result<(), Invalid> {
    let above = if lo_open { v > lo } else { v >= lo };
    let bound = if lo_open { "(" } else { "[" };
    check(
        v.is_finite() && above && v <= hi,
        field,
        format!("{v} must lie in {bound}{lo}, {hi}]"),
    )
}

/// Deserialize JSON text, naming the field at fault (`train.steps: invalid type: …`).
pub fn parse_json<T: DeserializeOwned>(text: &str) -> std::result::Result<T, String> {
    let de = &mut serde_json::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })
}
