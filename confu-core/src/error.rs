//! Errors are values: everything a user can get wrong (paths, shapes, dtypes, configs, sampling
//! parameters, prompts longer than the cache) comes back as an [`Error`] naming the culprit.

use std::path::PathBuf;

/// The one error type of confu.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file exists but its content is not what its format requires (corrupt header, bad JSON).
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    /// A configuration field is missing, has the wrong type or an impossible value.
    #[error("{path}: field `{field}`: {msg}")]
    Config {
        path: PathBuf,
        field: String,
        msg: String,
    },
    /// A weight tensor is missing or contradicts the configuration.
    #[error("{path}: tensor `{name}`: {msg}")]
    Tensor {
        path: PathBuf,
        name: String,
        msg: String,
    },
    /// The checkpoint's architecture is not one confu implements.
    #[error("{path}: unsupported architecture `{arch}` (supported: {supported})")]
    UnsupportedArchitecture {
        path: PathBuf,
        arch: String,
        supported: String,
    },
    /// A tensor's element type is not one confu can load.
    #[error("{path}: tensor `{name}` has unsupported dtype {dtype} (supported: F32, BF16, F16)")]
    UnsupportedDtype {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    /// A user-supplied parameter is out of its domain.
    #[error("invalid {name} = {value}: {msg}")]
    InvalidArgument {
        name: &'static str,
        value: String,
        msg: String,
    },
    /// A request does not fit the model's position limit or the cache's capacity.
    #[error("{what}: {requested} positions requested but the limit is {limit}")]
    Capacity {
        what: &'static str,
        requested: usize,
        limit: usize,
    },
    /// A mask, shape or index passed between components does not fit.
    #[error("shape mismatch in {what}: {msg}")]
    Shape { what: &'static str, msg: String },
    /// The requested compute device is absent or unusable.
    #[error("device `{device}`: {msg}")]
    Device { device: String, msg: String },
    /// The tokenizer failed to load or to encode/decode.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

/// Result with confu's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(name: &'static str, value: impl ToString, msg: impl Into<String>) -> Self {
        Error::InvalidArgument {
            name,
            value: value.to_string(),
            msg: msg.into(),
        }
    }

    /// Shorthand for [`Error::Shape`].
    pub fn shape(what: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape {
            what,
            msg: msg.into(),
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
