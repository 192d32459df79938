//! Shared helpers: where the data and models are, and one pipeline per
//! process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::{Arc, OnceLock};

use kenning_image::{DecodeLimits, RgbImage};
use kenning_models::{LoadedManifest, Pipeline, PipelineConfig};

/// ../shared/data for a test, or None once its skip is recorded (a failure
/// under CI): see kenning-testdata.
pub use kenning_testdata::data;

/// A new, empty directory under the system's temporary one, named for
/// `name`, this process and the time (so runs and tests never share one).
/// It is removed, with everything in it, when the guard drops: at the end
/// of the test and also when an assertion panics part-way through.
pub fn temp_dir(name: &str) -> TempDir {
    let dir = temp_path(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Like [`temp_dir`] but not created, for a directory the code under test
/// must create itself; whatever is there is removed when the guard drops.
pub fn temp_path(name: &str) -> TempDir {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    TempDir(std::env::temp_dir().join(format!("kenning-{name}-{}-{nanos}", std::process::id())))
}

/// A child process killed (and reaped) when the guard drops, so a server a
/// test spawned by hand does not outlive a failed assertion.
pub struct KillOnDrop(pub Child);

impl std::ops::Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temporary directory removed on drop (see [`temp_dir`]); derefs to its
/// path.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// The directory's path, owned (for APIs that keep a `PathBuf`).
    pub fn path_buf(&self) -> PathBuf {
        self.0.clone()
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        remove_tree(&self.0);
    }
}

/// Removes `path` and everything under it, first making read-only entries
/// writable (tests leave read-only files and folders behind on purpose),
/// ignoring what is already gone.
pub fn remove_tree(path: &Path) {
    fn writable(p: &Path) {
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            return;
        };
        if meta.file_type().is_symlink() {
            return;
        }
        let mut perms = meta.permissions();
        if perms.readonly() {
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            let _ = std::fs::set_permissions(p, perms);
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(p).into_iter().flatten().flatten() {
                writable(&entry.path());
            }
        }
    }
    writable(path);
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        let _ = std::fs::remove_dir_all(path);
    } else {
        let _ = std::fs::remove_file(path);
    }
}

/// The workspace root.
pub fn root() -> PathBuf {
    kenning_testdata::workspace()
}

/// The test venv's python (boto3, the aws CLI, pytest, ...), which
/// scripts/setup-test-python.sh creates; panics naming the script if absent.
pub fn test_python() -> PathBuf {
    let python = root().join(".cache/venv-test/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup-test-python.sh (scripts/test.sh does)",
        python.display()
    );
    python
}

/// The models folder ($KENNING_MODELS or <root>/models).
pub fn models() -> PathBuf {
    kenning_testdata::models_dir()
}

/// dlib's pipeline (dlib ResNet v1 with its 5-point landmarks), loaded
/// once. The tests written before SFace became the default measure dlib's
/// numbers, so they pin it here.
pub fn pipeline() -> &'static Arc<Pipeline> {
    static PIPELINE: OnceLock<Arc<Pipeline>> = OnceLock::new();
    PIPELINE.get_or_init(|| {
        let mut config = PipelineConfig::new(models());
        config.recogniser = Some(LoadedManifest::builtin("dlib-resnet-v1").unwrap());
        let pipeline = Pipeline::load(config).unwrap_or_else(|e| {
            panic!("loading the models failed ({e}); run scripts/setup-models.sh")
        });
        Arc::new(pipeline)
    })
}

/// The dlib ResNet's manifest: tests whose bounds were measured with that
/// recogniser name it, so they keep it when the default recogniser changes.
pub fn dlib_manifest() -> PathBuf {
    root().join("recognisers/dlib-resnet-v1/manifest.json")
}

/// A pipeline with the dlib ResNet named explicitly: [`pipeline`].
pub fn dlib_pipeline() -> &'static Arc<Pipeline> {
    pipeline()
}

/// The default recogniser's pipeline (SFace), sharing dlib's detector.
pub fn sface() -> &'static Arc<Pipeline> {
    static PIPELINE: OnceLock<Arc<Pipeline>> = OnceLock::new();
    PIPELINE.get_or_init(|| {
        let m = LoadedManifest::default_recogniser().unwrap();
        Arc::new(
            pipeline().with_recogniser(m).unwrap_or_else(|e| {
                panic!("loading SFace failed ({e}); run scripts/setup-models.sh")
            }),
        )
    })
}

/// Decodes an image file with the product's decoder.
pub fn load(path: &Path) -> RgbImage {
    kenning_image::decode_file(path, &DecodeLimits::default())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Path of the built `kenning` binary.
pub fn kenning_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kenning"))
}

/// Runs `kenning ARGS --data DIR` with `env`, clear of the caller's key,
/// case and recogniser variables so only the test's own settings count.
pub fn kenning_data(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(kenning_bin());
    cmd.arg("--models")
        .arg(models())
        .args(args)
        .arg("--data")
        .arg(dir)
        .env_remove("KENNING_KEY_ID")
        .env_remove("KENNING_CASE")
        .env_remove("KENNING_RECOGNISER");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// The JSON a successful command printed (its stderr in the failure).
pub fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A unit vector of `dim` pseudo-random components from `seed` (splitmix64),
/// to stand in for a face's embedding where no photo is needed.
pub fn unit_vector(dim: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    let mut v: Vec<f32> = (0..dim)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// Adds faces with `vectors` to `collection` straight through the store (an
/// import, as a test needs when it has no photos), indexed at `indexed_at_ms`
/// (None: now). Returns their FaceIds. Collections opened before this do
/// not see them: reopen.
pub fn import_faces(
    store: &dyn kenning_store::FaceStore,
    collection: &str,
    vectors: &[Vec<f32>],
    indexed_at_ms: Option<u64>,
) -> Vec<String> {
    let labels: Vec<Option<String>> = (0..vectors.len())
        .map(|i| Some(format!("import-{i}")))
        .collect();
    import_labelled(store, collection, vectors, &labels, indexed_at_ms)
}

/// [`import_faces`] with the given ExternalImageIds (`None`: unlabelled).
pub fn import_labelled(
    store: &dyn kenning_store::FaceStore,
    collection: &str,
    vectors: &[Vec<f32>],
    labels: &[Option<String>],
    indexed_at_ms: Option<u64>,
) -> Vec<String> {
    let model = store.describe_collection(collection).unwrap().face_model;
    let faces = vectors
        .iter()
        .zip(labels)
        .map(|(v, label)| kenning_store::NewFace {
            image_id: kenning_store::Uuid::new_v4(),
            external_image_id: label.clone(),
            bounding_box: kenning_core::BoundingBox::default(),
            confidence: 99.0,
            embedding: v.clone(),
            indexed_at_ms,
            pixels: None,
        })
        .collect();
    store
        .add_faces(collection, &model, faces)
        .unwrap()
        .into_iter()
        .map(|f| f.face_id.to_string())
        .collect()
}

/// Flips a byte inside the stored copy of vector `v` in an index file's
/// bytes: inside a checksummed section, unlike a byte picked blindly, which
/// may fall in the padding between sections.
pub fn corrupt_vector(index_file: &mut [u8], v: &[f32]) {
    let needle: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let at = index_file
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the vector is in the index file");
    index_file[at + needle.len() / 2] ^= 0x5a;
}
