//! How the tool writes files: only below a root the user chose (refusing when a symbolic link below that root leads
//! elsewhere), and small bookkeeping files whole, so a reader or a crash never sees half of one.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Fails unless `path` (which exists) resolves to a place inside `root` once symbolic links are followed. `root`
/// itself may be a link: where the user puts the directory is their choice.
pub fn ensure_inside(root: &Path, path: &Path, what: &str) -> Result<()> {
    let canonical_root = root
        .canonicalize()
        .with_context(|| format!("cannot resolve `{}`", root.display()))?;
    let canonical = path
        .canonicalize()
        .with_context(|| format!("cannot resolve `{}`", path.display()))?;
    if !canonical.starts_with(&canonical_root) {
        bail!(
            "`{}` leads to `{}`, outside {what} `{}` (a symbolic link?); refusing to write there. Remove the link \
             or choose another directory",
            path.display(),
            canonical.display(),
            root.display()
        );
    }
    Ok(())
}

/// Writes `parts` one after another into a temporary file beside `path`, then renames it into place: readers see the
/// old file or the new one, never a mix, and two writers each leave a whole file. With `durable`, the data reaches
/// the disk before the rename (for what a crash must not lose, such as a training checkpoint).
pub fn write_atomic(path: &Path, parts: &[&[u8]], durable: bool) -> Result<()> {
    let dir = path.parent().expect("a file has a parent directory");
    write_atomic_via(dir, path, parts, durable)
}

/// [`write_atomic`] with the temporary file in `staging` (on the same filesystem as `path`), so a process killed
/// mid-write leaves its leftover there rather than among the finished files.
pub fn write_atomic_via(staging: &Path, path: &Path, parts: &[&[u8]], durable: bool) -> Result<()> {
    let mut builder = tempfile::Builder::new();
    // A temporary file is made private (0600); the file it becomes is an ordinary one, readable as the user's umask
    // allows, like any other file this tool writes.
    #[cfg(unix)]
    builder
        .permissions(<std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o666));
    let mut tmp = builder
        .tempfile_in(staging)
        .with_context(|| format!("cannot write in `{}`", staging.display()))?;
    for part in parts {
        tmp.write_all(part)
            .with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    if durable {
        tmp.as_file().sync_all()?;
    }
    tmp.persist(path)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}

/// `s` with every character other than ASCII letters, digits and those in `allowed` replaced by `_`: a piece of a
/// folder name that holds no separator, whatever a user or a sweep value put in it.
pub fn replace_unsafe(s: &str, allowed: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || allowed.contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `data/openmsx/x.mid`: a source-relative path shown under the source path as the user wrote it.
pub fn display_path(root: &str, rel: &str) -> String {
    if root.is_empty() || root == "." {
        rel.to_string()
    } else {
        format!("{}/{rel}", root.trim_end_matches('/'))
    }
}

/// Whether `path` is a regular file (after links): what may be opened to read. A FIFO or a device in a report or
/// cache folder would block an open or a read forever.
pub fn is_regular(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// `std::fs::read` for files others may have put in place: anything but a regular file is an error, not a hang.
pub fn read_regular(path: &Path) -> std::io::Result<Vec<u8>> {
    if std::fs::metadata(path)?.is_file() {
        std::fs::read(path)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ))
    }
}
