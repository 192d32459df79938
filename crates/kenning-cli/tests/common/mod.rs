//! Shared helpers: where the data and models are, and one pipeline per
//! process.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use kenning_image::{DecodeLimits, RgbImage};
use kenning_models::{Pipeline, PipelineConfig};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// ../shared/data, or None (with a message) when this clone has none.
pub fn data(test: &str) -> Option<PathBuf> {
    let dir = root().join("../shared/data");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping {test}: ../shared/data is not present beside this clone");
        None
    }
}

/// The models folder ($KENNING_MODELS or <root>/models).
pub fn models() -> PathBuf {
    std::env::var_os("KENNING_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models"))
}

/// The default pipeline, loaded once.
pub fn pipeline() -> &'static Arc<Pipeline> {
    static PIPELINE: OnceLock<Arc<Pipeline>> = OnceLock::new();
    PIPELINE.get_or_init(|| {
        let pipeline = Pipeline::load(PipelineConfig::new(models())).unwrap_or_else(|e| {
            panic!("loading the default models failed ({e}); run scripts/setup-models.sh")
        });
        Arc::new(pipeline)
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
