//! Where the CLI finds its models, so that `kenning` works from any working
//! directory once installed: an explicit `--models DIR` or `KENNING_MODELS`
//! wins; otherwise the first of these folders that holds the detector is
//! used:
//!
//! 1. `models/` next to the executable (an unpacked release), then
//!    `../share/kenning/models` beside its `bin/` (a `/usr/local` install);
//! 2. the per-user data directory: `$XDG_DATA_HOME/kenning/models` (default
//!    `~/.local/share/kenning/models`; `~/Library/Application Support` on
//!    macOS, `%APPDATA%` on Windows);
//! 3. `./models` (a source checkout, where scripts/setup-models.sh puts them).

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use kenning_models::detector::CENTERFACE_FILE;

/// The folders searched, in order, when no folder is given explicitly.
pub fn candidates() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    // canonicalize so that a symlink on PATH finds the models beside the
    // real binary, not beside the link.
    if let Some(bin) = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        dirs.push(bin.join("models"));
        if let Some(prefix) = bin.parent() {
            dirs.push(prefix.join("share").join("kenning").join("models"));
        }
    }
    if let Some(data) = dirs::data_dir() {
        dirs.push(data.join("kenning").join("models"));
    }
    dirs.push(PathBuf::from("models"));
    dirs
}

/// Whether `dir` holds a model installation (the detector is always needed).
fn holds_models(dir: &Path) -> bool {
    dir.join(CENTERFACE_FILE).is_file()
}

/// The models folder to use: `explicit` (from `--models` or
/// `KENNING_MODELS`) as given, else the first of [`candidates`] that holds
/// the models. The error names every folder that was tried.
pub fn resolve(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir.to_path_buf());
    }
    let tried = candidates();
    if let Some(dir) = tried.iter().find(|d| holds_models(d)) {
        return Ok(dir.clone());
    }
    let list = tried
        .iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    bail!(
        "no models found (looked for {CENTERFACE_FILE} in {list}): run scripts/setup-models.sh, \
         or pass --models DIR or set KENNING_MODELS to the folder that holds them"
    )
}
