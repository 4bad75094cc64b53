//! Keeping writes inside the cache and reports directories: the tool only ever writes below a root the user chose,
//! and refuses when a symbolic link below that root leads elsewhere.

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
