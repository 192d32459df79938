//! Shared helpers: where the data and models are, and one pipeline per
//! process.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use kenning_image::{DecodeLimits, RgbImage};
use kenning_models::{Pipeline, PipelineConfig};

/// ../shared/data for a test, or None once its skip is recorded (a failure
/// under CI): see kenning-testdata.
pub use kenning_testdata::data;

/// The workspace root.
pub fn root() -> PathBuf {
    kenning_testdata::workspace()
}

/// The models folder ($KENNING_MODELS or <root>/models).
pub fn models() -> PathBuf {
    kenning_testdata::models_dir()
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
