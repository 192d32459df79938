//! Local equivalents of S3 buckets: named directories whose files are read
//! in place. An object name is a relative path inside its bucket; one that
//! would leave the bucket (`..`, an absolute path, a symbolic link on the
//! way) is refused.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use crate::error::{Result, VideoError};

/// The bucket directories the service may read videos from.
#[derive(Debug, Clone, Default)]
pub struct Buckets {
    dirs: BTreeMap<String, PathBuf>,
}

/// Checks a bucket name as S3Bucket's pattern has it (3-255 of `0-9A-Za-z.-_`).
pub fn validate_bucket_name(name: &str) -> Result<()> {
    if (3..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c))
    {
        Ok(())
    } else {
        Err(VideoError::InvalidParameter(format!(
            "bucket name {name:?} must be 3-255 letters, digits, '.', '-' or '_'"
        )))
    }
}

/// File name endings of the containers ffmpeg reads that cameras and
/// recorders write (what [`Buckets::list`] offers; any file may be named
/// in a request).
pub const VIDEO_EXTENSIONS: &[&str] = &[
    "3gp", "avi", "flv", "m2ts", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "mts", "mxf", "ogv",
    "ts", "webm", "wmv",
];

fn named_as_video(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| VIDEO_EXTENSIONS.iter().any(|v| v.eq_ignore_ascii_case(ext)))
}

impl Buckets {
    /// No buckets.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bucket `name` served from directory `dir`, which must exist.
    pub fn add(&mut self, name: &str, dir: &Path) -> Result<()> {
        validate_bucket_name(name)?;
        let canonical = dir.canonicalize().map_err(|e| {
            VideoError::InvalidParameter(format!("bucket {name}: directory {}: {e}", dir.display()))
        })?;
        if !canonical.is_dir() {
            return Err(VideoError::InvalidParameter(format!(
                "bucket {name}: {} is not a directory",
                dir.display()
            )));
        }
        if self.dirs.insert(name.to_owned(), canonical).is_some() {
            return Err(VideoError::InvalidParameter(format!(
                "bucket {name} is given twice"
            )));
        }
        Ok(())
    }

    /// Adds every `NAME=DIR` of a comma-separated list (`KENNING_BUCKETS`).
    pub fn add_list(&mut self, list: &str) -> Result<()> {
        for spec in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (name, dir) = parse_spec(spec)?;
            self.add(&name, &dir)?;
        }
        Ok(())
    }

    /// The bucket names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.dirs.keys().map(String::as_str)
    }

    /// Up to `max` object names of `bucket`, sorted, for a person to pick a
    /// video from: regular files named as videos ([`VIDEO_EXTENSIONS`]),
    /// reached without following a link, hidden entries (uploads in
    /// progress among them) left out.
    pub fn list(&self, bucket: &str, max: usize) -> Result<Vec<String>> {
        let dir = self.dir(bucket)?;
        let mut out = Vec::new();
        // Depth-first over sorted entries, so the first `max` are stable.
        let mut stack = vec![(dir.to_path_buf(), String::new(), 0usize)];
        while let Some((path, prefix, depth)) = stack.pop() {
            let Ok(read) = std::fs::read_dir(&path) else {
                continue;
            };
            let mut entries: Vec<(String, std::fs::FileType)> = read
                .filter_map(|e| {
                    let e = e.ok()?;
                    Some((e.file_name().into_string().ok()?, e.file_type().ok()?))
                })
                .filter(|(n, _)| !n.starts_with('.'))
                .collect();
            entries.sort_by(|a, b| b.0.cmp(&a.0));
            for (name, kind) in entries {
                let object = format!("{prefix}{name}");
                if kind.is_dir() && depth < 16 {
                    stack.push((path.join(&name), format!("{object}/"), depth + 1));
                } else if kind.is_file() && named_as_video(&name) {
                    out.push(object);
                }
            }
            if out.len() >= max {
                break;
            }
        }
        out.sort();
        out.truncate(max);
        Ok(out)
    }

    fn dir(&self, bucket: &str) -> Result<&Path> {
        self.dirs.get(bucket).map(PathBuf::as_path).ok_or_else(|| {
            VideoError::InvalidObject(format!(
                "there is no bucket {bucket:?}; this service has {}",
                if self.dirs.is_empty() {
                    "none (start it with --bucket NAME=DIR)".to_owned()
                } else {
                    self.names().collect::<Vec<_>>().join(", ")
                }
            ))
        })
    }

    /// The file object `name` of `bucket` is, checked to be a regular file
    /// inside the bucket directory reached without following a link.
    pub fn resolve(&self, bucket: &str, name: &str) -> Result<PathBuf> {
        let dir = self.dir(bucket)?;
        let parts = components(name)?;
        let mut path = dir.to_path_buf();
        for (i, part) in parts.iter().enumerate() {
            path.push(part);
            let meta = std::fs::symlink_metadata(&path).map_err(|_| {
                VideoError::InvalidObject(format!(
                    "object {name:?} does not exist in bucket {bucket}"
                ))
            })?;
            if meta.file_type().is_symlink() {
                return Err(VideoError::InvalidObject(format!(
                    "object {name:?} of bucket {bucket} goes through a symbolic link, which is refused"
                )));
            }
            let last = i + 1 == parts.len();
            if last && !meta.is_file() {
                return Err(VideoError::InvalidObject(format!(
                    "object {name:?} of bucket {bucket} is not a file"
                )));
            }
        }
        Ok(path)
    }

    /// The bucket and object name of a file `path` inside a bucket
    /// directory (relative paths are taken from the working directory),
    /// checked as [`Buckets::resolve`] checks names.
    pub fn locate(&self, path: &Path) -> Result<(String, String)> {
        let absolute = std::path::absolute(path)
            .map_err(|e| VideoError::InvalidObject(format!("{}: {e}", path.display())))?;
        for (bucket, dir) in &self.dirs {
            let Ok(rest) = absolute.strip_prefix(dir) else {
                continue;
            };
            let name = rest
                .to_str()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    VideoError::InvalidObject(format!(
                        "{} is not a file name inside bucket {bucket}",
                        path.display()
                    ))
                })?
                .to_owned();
            self.resolve(bucket, &name)?;
            return Ok((bucket.clone(), name));
        }
        Err(VideoError::InvalidObject(format!(
            "{} is not inside a bucket directory ({}); add one with --bucket NAME=DIR",
            path.display(),
            if self.dirs.is_empty() {
                "this service has none".to_owned()
            } else {
                self.dirs
                    .iter()
                    .map(|(n, d)| format!("{n}={}", d.display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )))
    }

    /// Writes the bytes `source` gives as object `name` of `bucket`: into a
    /// temporary file beside it, synced, then renamed over it, so a reader
    /// never sees half a file. With `expected_sha256`, bytes of another hash
    /// are refused and nothing is written. Returns the byte count and
    /// SHA-256 (hex).
    pub fn put(
        &self,
        bucket: &str,
        name: &str,
        max_bytes: u64,
        expected_sha256: Option<&str>,
        mut source: impl FnMut(&mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()>,
    ) -> Result<(u64, String)> {
        use sha2::{Digest, Sha256};
        let dir = self.dir(bucket)?;
        let parts = components(name)?;
        let mut path = dir.to_path_buf();
        for part in &parts[..parts.len() - 1] {
            path.push(part);
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.file_type().is_symlink() || !m.is_dir() => {
                    return Err(VideoError::InvalidObject(format!(
                        "{} inside bucket {bucket} is not a directory",
                        path.display()
                    )))
                }
                Ok(_) => {}
                Err(_) => std::fs::create_dir(&path)
                    .map_err(|e| VideoError::Store(format!("{}: {e}", path.display())))?,
            }
        }
        path.push(parts[parts.len() - 1]);
        if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.is_file()) {
            return Err(VideoError::InvalidObject(format!(
                "object {name:?} of bucket {bucket} exists and is not a file"
            )));
        }
        let tmp = path.with_file_name(format!(
            ".{}.upload-{}",
            parts[parts.len() - 1],
            uuid::Uuid::new_v4().simple()
        ));
        let io = |e: std::io::Error| VideoError::Store(format!("{}: {e}", tmp.display()));
        let mut file = File::create_new(&tmp).map_err(io)?;
        let mut hash = Sha256::new();
        let mut written = 0u64;
        let result = source(&mut |chunk: &[u8]| {
            written += chunk.len() as u64;
            if written > max_bytes {
                return Err(VideoError::TooLarge(format!(
                    "the upload exceeds the {max_bytes}-byte video limit"
                )));
            }
            hash.update(chunk);
            file.write_all(chunk).map_err(io)
        })
        .map(|()| hex::encode(hash.finalize()))
        .and_then(|sha| match expected_sha256 {
            Some(e) if !e.eq_ignore_ascii_case(&sha) => Err(VideoError::InvalidParameter(format!(
                "the body's SHA-256 is {sha}, not the {e} the request declared"
            ))),
            _ => Ok(sha),
        })
        .and_then(|sha| file.sync_all().map_err(io).map(|()| sha))
        .and_then(|sha| std::fs::rename(&tmp, &path).map_err(io).map(|()| sha));
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        let sha = result?;
        if let Ok(d) = File::open(path.parent().unwrap_or(dir)) {
            let _ = d.sync_all();
        }
        Ok((written, sha))
    }
}

/// `NAME=DIR`.
pub fn parse_spec(spec: &str) -> Result<(String, PathBuf)> {
    let (name, dir) = spec
        .split_once('=')
        .ok_or_else(|| VideoError::InvalidParameter(format!("bucket {spec:?} must be NAME=DIR")))?;
    Ok((name.trim().to_owned(), PathBuf::from(dir.trim())))
}

/// The path components of an object name: relative, no `.`, `..` or empty
/// parts, no NUL, 1-1024 bytes (S3ObjectName's length).
fn components(name: &str) -> Result<Vec<&str>> {
    let bad = |why: &str| VideoError::InvalidObject(format!("object name {name:?} {why}"));
    if name.is_empty() || name.len() > 1024 {
        return Err(bad("must be 1-1024 bytes"));
    }
    if name.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    if Path::new(name).is_absolute() || name.starts_with('/') {
        return Err(bad("is an absolute path; give a path inside the bucket"));
    }
    let mut parts = Vec::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str().ok_or_else(|| bad("is not UTF-8"))?),
            Component::ParentDir => return Err(bad("leaves the bucket with '..'")),
            _ => return Err(bad("must be a plain relative path")),
        }
    }
    if name
        .split('/')
        .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(bad("has an empty, '.' or '..' part"));
    }
    if parts.is_empty() {
        return Err(bad("names no file"));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_bucket() {
        let root = tempfile::tempdir().unwrap();
        let bucket = root.path().join("b");
        std::fs::create_dir_all(bucket.join("cams/door")).unwrap();
        std::fs::write(bucket.join("cams/door/a.mp4"), b"x").unwrap();
        std::fs::write(root.path().join("secret.mp4"), b"s").unwrap();
        std::os::unix::fs::symlink(root.path().join("secret.mp4"), bucket.join("link.mp4"))
            .unwrap();
        std::os::unix::fs::symlink(root.path(), bucket.join("up")).unwrap();
        let mut b = Buckets::new();
        b.add("cctv", &bucket).unwrap();
        assert!(b
            .resolve("cctv", "cams/door/a.mp4")
            .unwrap()
            .ends_with("cams/door/a.mp4"));
        for bad in [
            "../secret.mp4",
            "cams/../../secret.mp4",
            "/etc/passwd",
            "link.mp4",
            "up/secret.mp4",
            "cams/door",
            "missing.mp4",
            "",
            "cams//door/a.mp4",
            "./cams/door/a.mp4",
        ] {
            let e = b.resolve("cctv", bad).unwrap_err();
            assert!(matches!(e, VideoError::InvalidObject(_)), "{bad}: {e}");
        }
        assert!(matches!(
            b.resolve("nope", "a.mp4"),
            Err(VideoError::InvalidObject(_))
        ));
        // A path inside the bucket directory names its object; others don't.
        let dir = bucket.canonicalize().unwrap();
        assert_eq!(
            b.locate(&dir.join("cams/door/a.mp4")).unwrap(),
            ("cctv".to_owned(), "cams/door/a.mp4".to_owned())
        );
        for bad in [
            dir.join("link.mp4"),
            dir.join("cams/../../secret.mp4"),
            root.path().join("secret.mp4"),
            dir.clone(),
        ] {
            let e = b.locate(&bad).unwrap_err();
            assert!(matches!(e, VideoError::InvalidObject(_)), "{bad:?}: {e}");
        }
        assert!(b.add("x", &bucket).is_err(), "name too short");
        assert!(b.add("cctv", &bucket).is_err(), "twice");
        // The listing offers exactly what resolves: no links, nothing
        // outside, no hidden files (uploads in progress).
        std::fs::write(bucket.join(".a.mp4.upload-1"), b"x").unwrap();
        std::fs::write(bucket.join("z.MP4"), b"x").unwrap();
        std::fs::write(bucket.join("notes.txt"), b"x").unwrap();
        assert_eq!(b.list("cctv", 10).unwrap(), ["cams/door/a.mp4", "z.MP4"]);
        assert_eq!(b.list("cctv", 1).unwrap().len(), 1);
        for name in b.list("cctv", 10).unwrap() {
            b.resolve("cctv", &name).unwrap();
        }
        assert!(matches!(
            b.list("nope", 10),
            Err(VideoError::InvalidObject(_))
        ));
    }

    #[test]
    fn uploads_are_atomic_and_bounded() {
        let root = tempfile::tempdir().unwrap();
        let mut b = Buckets::new();
        b.add("up-loads", root.path()).unwrap();
        let (n, sha) = b
            .put("up-loads", "day1/clip.mp4", 100, None, |w| {
                w(b"hello ")?;
                w(b"world")
            })
            .unwrap();
        assert_eq!(n, 11);
        assert_eq!(
            sha,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(
            std::fs::read(root.path().join("day1/clip.mp4")).unwrap(),
            b"hello world"
        );
        let e = b
            .put("up-loads", "big.mp4", 4, None, |w| w(b"too big"))
            .unwrap_err();
        assert!(matches!(e, VideoError::TooLarge(_)));
        assert!(!root.path().join("big.mp4").exists());
        let leftovers = std::fs::read_dir(root.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains("upload")
            })
            .count();
        assert_eq!(leftovers, 0, "a failed upload leaves no temporary file");
        assert!(b
            .put("up-loads", "../x.mp4", 100, None, |w| w(b"x"))
            .is_err());
        let e = b
            .put("up-loads", "claimed.mp4", 100, Some(&"0".repeat(64)), |w| {
                w(b"x")
            })
            .unwrap_err();
        assert!(e.to_string().contains("declared"), "{e}");
        assert!(!root.path().join("claimed.mp4").exists());
    }
}
