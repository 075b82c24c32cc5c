//! Standard output that never panics: `println!` aborts the process on a closed pipe
//! (`confu inspect | head -c 1`) or a full disk. Every line goes through [`write_out`] instead,
//! which turns a failed write into an error naming standard output; `main` ends quietly with
//! success when the reader has gone away (a closed pipe) and reports every other failure.

use std::io::Write;

use confu_core::{Error, Result};

/// Write `text` to standard output and flush it.
pub fn write_out(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("standard output", e))
}

/// Whether `e` says that the reader of standard output has gone away.
pub fn is_closed_pipe(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
}

/// `println!` that returns an error instead of panicking (use inside functions returning
/// `confu_core::Result`).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::write_out(&format!("{}\n", format_args!($($arg)*)))?
    };
}
