//! Turns command-line arguments (files, folders, globs) into image paths.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// File extensions treated as images when walking a folder.
const IMAGE_EXTENSIONS: &[&str] = &["jpg", "jpeg", "png", "webp", "pgm", "ppm"];

/// Expands each argument: a file is taken as is, a folder is walked for
/// images (sorted), anything else is tried as a glob pattern.
pub fn expand(args: &[String]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for arg in args {
        let path = Path::new(arg);
        if path.is_dir() {
            walk(path, &mut out).with_context(|| format!("reading folder {arg}"))?;
        } else if path.exists() {
            out.push(path.to_owned());
        } else if arg.contains(['*', '?', '[']) {
            let mut matched: Vec<PathBuf> = glob::glob(arg)
                .with_context(|| format!("bad pattern {arg}"))?
                .filter_map(Result::ok)
                .filter(|p| p.is_file())
                .collect();
            if matched.is_empty() {
                bail!("no files match {arg}");
            }
            matched.sort();
            out.append(&mut matched);
        } else {
            // Kept so the batch reports it as a failed input, next to the
            // others, instead of aborting the whole run.
            out.push(path.to_owned());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out)?;
        } else if is_image(&p) {
            out.push(p);
        }
    }
    Ok(())
}

fn is_image(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_walked_sorted_and_filtered() {
        let dir = std::env::temp_dir().join(format!("kenning-inputs-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for f in ["b.jpg", "a.PNG", "notes.txt", "sub/c.webp"] {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
        let got = expand(&[dir.display().to_string()]).unwrap();
        let names: Vec<_> = got
            .iter()
            .map(|p| p.strip_prefix(&dir).unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["a.PNG", "b.jpg", "sub/c.webp"]);
        let globbed = expand(&[format!("{}/*.jpg", dir.display())]).unwrap();
        assert_eq!(globbed.len(), 1);
        assert!(expand(&[format!("{}/*.gif", dir.display())]).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
