//! Writing files so that a reader never sees half of one.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The temporary sibling `write_atomic` writes first: the full name plus `.tmp`, so that
/// `model.safetensors` and `model.json` never share one.
pub fn temporary_sibling(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Write a file so that it is either absent or complete: a temporary sibling, then a rename.
/// The temporary file is removed again when the write fails; a link, folder, FIFO or device at
/// `path` is never replaced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_file() {
            return Err(Error::io(
                path,
                std::io::Error::other("exists and is not a regular file; it is left as it is"),
            ));
        }
    }
    let tmp = temporary_sibling(path);
    if let Err(e) = std::fs::write(&tmp, bytes) {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_whole_files_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("confu-fs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.safetensors");
        write_atomic(&path, b"abc").unwrap();
        write_atomic(&path, b"abcd").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abcd");
        assert!(!temporary_sibling(&path).exists());
        assert_eq!(
            temporary_sibling(&path).file_name().unwrap(),
            "model.safetensors.tmp"
        );
        // A folder that does not exist: an error naming the temporary file, nothing left behind.
        let e = write_atomic(&dir.join("missing/x.json"), b"{}").unwrap_err();
        assert!(e.to_string().contains("x.json.tmp"), "{e}");
        // Never over a folder (or, on unix, a link): it is left as it was.
        let sub = dir.join("sub");
        std::fs::create_dir_all(&sub).unwrap();
        assert!(write_atomic(&sub, b"x").is_err() && sub.is_dir());
        #[cfg(unix)]
        {
            let link = dir.join("link");
            std::os::unix::fs::symlink(&path, &link).unwrap();
            let e = write_atomic(&link, b"x").unwrap_err().to_string();
            assert!(e.contains("not a regular file"), "{e}");
            assert_eq!(std::fs::read(&path).unwrap(), b"abcd");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
