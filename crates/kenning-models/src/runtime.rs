use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;

use crate::ModelError;

/// File name of the ONNX Runtime shared library inside the models folder.
pub const ORT_LIBRARY: &str = "libonnxruntime.so.1.31.1";

static ENVIRONMENT: OnceLock<Result<Environment, String>> = OnceLock::new();
static LIBRARY: OnceLock<PathBuf> = OnceLock::new();

/// The models folder: `$KENNING_MODELS` if set, else `./models`.
pub fn default_models_dir() -> PathBuf {
    std::env::var_os("KENNING_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("models"))
}

/// Loads ONNX Runtime from `models_dir` once per process. Later calls with
/// another folder reuse the first library: ONNX Runtime allows one
/// environment per process.
pub fn init(models_dir: &Path) -> Result<(), ModelError> {
    let lib = models_dir.join(ORT_LIBRARY);
    if LIBRARY.get().is_none() && !lib.is_file() {
        return Err(ModelError::MissingFile { path: lib });
    }
    let _ = LIBRARY.set(lib);
    environment().map(|_| ())
}

pub(crate) fn environment() -> Result<&'static Environment, ModelError> {
    let result = ENVIRONMENT.get_or_init(|| {
        let lib = LIBRARY.get().ok_or("ONNX Runtime was not initialised")?;
        ort::init_from(lib)
            .map_err(|e| e.to_string())?
            .with_name("kenning")
            .build()
            .map_err(|e| e.to_string())
    });
    result.as_ref().map_err(|e| ModelError::Runtime(e.clone()))
}

/// Reads a model file, naming the set-up script when it is missing.
pub(crate) fn read_model_file(path: &Path) -> Result<Vec<u8>, ModelError> {
    std::fs::read(path).map_err(|source| file_error(path, source))
}

/// The error for a model file that could not be read: missing (naming the
/// set-up script) or unreadable.
pub(crate) fn file_error(path: &Path, source: std::io::Error) -> ModelError {
    if source.kind() == std::io::ErrorKind::NotFound {
        ModelError::MissingFile {
            path: path.to_owned(),
        }
    } else {
        ModelError::Io {
            path: path.to_owned(),
            source,
        }
    }
}
