//! Probe photos of searches whose candidates await review.
//!
//! A reviewer must see the probe beside the candidate, so the photo of a
//! search under review is kept, only while at least one of its candidates is
//! still pending: the decision that closes the last one erases it, and
//! [`ProbeStore::sweep`] (at start and at every retention pass) erases any a
//! crash left behind. [`ProbeDir`] keeps them one file per search in
//! `DATA/probes/`; a database backend keeps them in the database, so nodes
//! sharing it see each other's probes.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The folder of probe photos, relative to the data directory.
pub const PROBE_DIR: &str = "probes";

/// Where probe photos under review are kept, by search request id.
pub trait ProbeStore: Send + Sync {
    /// Keeps the probe of search `id`, durably (a candidate is never queued
    /// without its probe kept).
    fn put(&self, id: &str, bytes: &[u8]) -> std::io::Result<()>;
    /// The probe of search `id`, if it is still kept.
    fn get(&self, id: &str) -> std::io::Result<Option<Vec<u8>>>;
    /// Erases the probe of search `id` (nothing if there is none).
    fn erase(&self, id: &str) -> std::io::Result<()>;
    /// Request ids of every probe kept.
    fn ids(&self) -> std::io::Result<Vec<String>>;

    /// Erases every probe whose search has no pending candidate left
    /// (`pending` says whether one does); returns how many it erased.
    fn sweep(&self, pending: &dyn Fn(&str) -> bool) -> std::io::Result<usize> {
        let mut erased = 0;
        for id in self.ids()? {
            if !pending(&id) {
                self.erase(&id)?;
                erased += 1;
            }
        }
        Ok(erased)
    }
}

/// Probe photos on disk, one file per search in `DATA/probes/`.
pub struct ProbeDir {
    dir: PathBuf,
}

/// Request ids come from this service or its CLI (UUIDs), but a file name is
/// only ever built from a checked one.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

impl ProbeDir {
    /// The store in `data_dir`, creating its folder (mode 0700) if needed.
    pub fn open(data_dir: &Path) -> std::io::Result<Self> {
        let dir = data_dir.join(PROBE_DIR);
        if !dir.exists() {
            std::fs::create_dir_all(&dir)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
            }
        }
        Ok(Self { dir })
    }

    fn path(&self, id: &str) -> Option<PathBuf> {
        valid_id(id).then(|| self.dir.join(format!("{id}.img")))
    }
}

impl ProbeStore for ProbeDir {
    /// Keeps the probe of search `id`, durably (a candidate is never queued
    /// without its probe on disk).
    fn put(&self, id: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.path(id).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "invalid request id")
        })?;
        let tmp = self.dir.join(format!("{id}.tmp"));
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &path)?;
        // Best effort: not every file system can sync a directory.
        let _ = File::open(&self.dir).and_then(|d| d.sync_all());
        Ok(())
    }

    /// The probe of search `id`, if it is still kept.
    fn get(&self, id: &str) -> std::io::Result<Option<Vec<u8>>> {
        let Some(path) = self.path(id) else {
            return Ok(None);
        };
        match std::fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Erases the probe of search `id`: its bytes are overwritten with
    /// zeros and synced before the file is removed, so they do not linger in
    /// the file's old blocks on file systems that write in place.
    fn erase(&self, id: &str) -> std::io::Result<()> {
        let Some(path) = self.path(id) else {
            return Ok(());
        };
        erase_file(&path)
    }

    /// Request ids of every probe kept.
    fn ids(&self) -> std::io::Result<Vec<String>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)? {
            let name = e?.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name.strip_suffix(".img") {
                out.push(id.to_owned());
            } else if name.ends_with(".tmp") {
                // A put that crashed before its rename: never acknowledged.
                erase_file(&self.dir.join(&*name))?;
            }
        }
        Ok(out)
    }
}

fn erase_file(path: &Path) -> std::io::Result<()> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    {
        let mut f = OpenOptions::new().write(true).open(path)?;
        let zeros = vec![0u8; 64 << 10];
        let mut left = len;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            f.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        f.sync_all()?;
    }
    std::fs::remove_file(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_erase_and_sweep() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("probes");
        let store = ProbeDir::open(&dir).unwrap();
        let (a, b) = (
            uuid::Uuid::new_v4().to_string(),
            uuid::Uuid::new_v4().to_string(),
        );
        store.put(&a, b"probe a").unwrap();
        store.put(&b, b"probe b").unwrap();
        assert_eq!(store.get(&a).unwrap().as_deref(), Some(&b"probe a"[..]));
        // Ids that could leave the folder are never used as file names.
        assert!(store.put("../x", b"no").is_err());
        assert_eq!(store.get("../x").unwrap(), None);
        // An interrupted put leaves a .tmp that the next listing removes.
        std::fs::write(dir.join(PROBE_DIR).join("dead.tmp"), b"half").unwrap();
        assert_eq!(store.sweep(&|id| id == a).unwrap(), 1);
        assert_eq!(store.get(&b).unwrap(), None);
        assert!(!dir.join(PROBE_DIR).join("dead.tmp").exists());
        store.erase(&a).unwrap();
        assert_eq!(store.get(&a).unwrap(), None);
        assert!(std::fs::read_dir(dir.join(PROBE_DIR))
            .unwrap()
            .next()
            .is_none());
    }
}
