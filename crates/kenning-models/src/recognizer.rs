use std::path::{Path, PathBuf};

use kenning_image::RgbImage;
use ort::value::TensorRef;

use crate::calibration::{Calibration, CalibrationTable};
use crate::manifest::{ChannelOrder, Distance, LoadedManifest, Manifest, ModelSource};
use crate::pool::SessionPool;
use crate::runtime::{file_error, read_model_file};
use crate::ModelError;
use kenning_core::quality::QualityBands;

/// An embedding model described by a manifest, on ONNX Runtime.
pub struct Recognizer {
    loaded: LoadedManifest,
    pool: SessionPool,
    /// The most faces one run takes: 1 for a model exported with a batch
    /// of exactly one (SFace), else unbounded.
    max_batch: usize,
}

impl Recognizer {
    /// Loads the manifest's model from `models_dir` (dlib `.dat` files are
    /// converted to ONNX in memory) with a pool of `sessions` sessions.
    pub fn load(
        models_dir: &Path,
        loaded: LoadedManifest,
        sessions: usize,
    ) -> Result<Self, ModelError> {
        let model = onnx_model(models_dir, &loaded.manifest.model)?;
        Self::from_onnx(loaded, model, sessions)
    }

    /// A recogniser running the given ONNX bytes as they are (no conversion)
    /// for the manifest, e.g. to compare a model file with its converted
    /// form.
    pub fn from_onnx(
        loaded: LoadedManifest,
        model: Vec<u8>,
        sessions: usize,
    ) -> Result<Self, ModelError> {
        let fixed_batch = kenning_onnx::inspect(&model)?
            .inputs
            .first()
            .and_then(|i| i.dims.as_ref()?.first().cloned());
        let max_batch = match fixed_batch {
            Some(kenning_onnx::Dim::Fixed(1)) => 1,
            _ => usize::MAX,
        };
        Ok(Self {
            pool: SessionPool::new(model, sessions, 1)?,
            loaded,
            max_batch,
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.loaded.manifest
    }

    /// The global calibration table, when the manifest has one.
    pub fn calibration(&self) -> Option<&CalibrationTable> {
        self.loaded.calibration.as_ref()
    }

    /// The calibration Similarity uses (global or fair, as selected), when
    /// there is one.
    pub fn similarity_calibration(&self) -> Option<Calibration<'_>> {
        self.loaded.similarity_calibration()
    }

    /// The small-face rule applied on top of any calibration, when the
    /// manifest has one.
    pub fn quality_bands(&self) -> Option<&QualityBands> {
        self.loaded.quality_bands.as_ref()
    }

    /// The manifest and calibrations as loaded.
    pub fn loaded(&self) -> &LoadedManifest {
        &self.loaded
    }

    /// Distance between two of this recogniser's embeddings.
    pub fn distance(&self, a: &[f32], b: &[f32]) -> f64 {
        self.loaded.manifest.embedding.distance.precise(a, b)
    }

    /// Embeds aligned face crops (each exactly the input size), in one batch
    /// or, for a model exported with a batch of one, one at a time.
    pub fn embed(&self, crops: &[RgbImage]) -> Result<Vec<Vec<f32>>, ModelError> {
        let mut out = Vec::with_capacity(crops.len());
        for chunk in crops.chunks(self.max_batch) {
            out.extend(self.embed_batch(chunk)?);
        }
        Ok(out)
    }

    /// Embeds crops in one run of the model.
    fn embed_batch(&self, crops: &[RgbImage]) -> Result<Vec<Vec<f32>>, ModelError> {
        let m = &self.loaded.manifest;
        let (w, h) = (m.input.width as usize, m.input.height as usize);
        let plane = w * h;
        let mut tensor = vec![0f32; crops.len() * 3 * plane];
        for (crop, out) in crops.iter().zip(tensor.chunks_exact_mut(3 * plane)) {
            if crop.dimensions() != (m.input.width, m.input.height) {
                return Err(ModelError::BadOutput {
                    model: "aligner",
                    reason: format!("a {:?} crop for a {w}x{h} recogniser", crop.dimensions()),
                });
            }
            let order = match m.input.channel_order {
                ChannelOrder::Rgb => [0, 1, 2],
                ChannelOrder::Bgr => [2, 1, 0],
            };
            for (c, &src) in order.iter().enumerate() {
                let (mean, std) = (m.input.mean[c], m.input.std[c]);
                let dst = &mut out[c * plane..(c + 1) * plane];
                for (d, px) in dst.iter_mut().zip(crop.pixels()) {
                    *d = (f32::from(px.0[src]) - mean) / std;
                }
            }
        }
        let shape = [crops.len(), 3, h, w];
        let size = m.embedding.size;
        let flat = self.pool.with(|session| {
            let outputs = session.run(ort::inputs![TensorRef::from_array_view((
                shape,
                tensor.as_slice()
            ))?])?;
            let (_, value) = outputs.iter().next().ok_or_else(|| ModelError::BadOutput {
                model: "recogniser",
                reason: "no output".into(),
            })?;
            Ok(value.try_extract_tensor::<f32>()?.1.to_vec())
        })?;
        if flat.len() != crops.len() * size {
            return Err(ModelError::BadOutput {
                model: "recogniser",
                reason: format!("{} values for {} faces of {size}", flat.len(), crops.len()),
            });
        }
        Ok(flat
            .chunks_exact(size)
            .map(|v| match m.embedding.distance {
                Distance::Euclidean => v.to_vec(),
                Distance::Cosine => l2_normalised(v),
            })
            .collect())
    }
}

/// The ONNX bytes Kenning runs for a recogniser's weights: a dlib `.dat`
/// converted to ONNX, or an ONNX file in its CPU form: constant-weight
/// `DequantizeLinear` nodes folded into fp32 weights, only its real inputs
/// kept and `PRelu` rewritten into operators ONNX Runtime fuses
/// ([`kenning_onnx::fold_for_cpu`]; a model without them is unchanged but for
/// its `value_info`). The CPU form written at set-up ([`cpu_form_file`]) is
/// read when it is current; otherwise the file is converted here.
pub fn onnx_model(models_dir: &Path, source: &ModelSource) -> Result<Vec<u8>, ModelError> {
    Ok(match source {
        ModelSource::Onnx { file } => {
            let path = models_dir.join(file);
            match converted_at_setup(&path, &models_dir.join(cpu_form_file(file)))? {
                Some(model) => model,
                None => kenning_onnx::fold_for_cpu(&read_model_file(&path)?)?.0,
            }
        }
        ModelSource::DlibDat { file } => {
            let dat = read_model_file(&models_dir.join(file))?;
            kenning_dlib::resnet::to_onnx(&dat)?.model
        }
    })
}

/// The name under which scripts/setup-models.sh writes the CPU form of the
/// ONNX file `file` (`x.onnx` -> `x.cpu.onnx`), beside it.
pub fn cpu_form_file(file: &Path) -> PathBuf {
    file.with_extension("cpu.onnx")
}

/// The CPU form at `converted` when it was written by this converter version
/// from a file of `source`'s size; `None` when it is absent or stale (a
/// missing `source` is an error either way, naming the set-up script).
fn converted_at_setup(source: &Path, converted: &Path) -> Result<Option<Vec<u8>>, ModelError> {
    let size = std::fs::metadata(source)
        .map_err(|e| file_error(source, e))?
        .len();
    let Ok(model) = std::fs::read(converted) else {
        return Ok(None);
    };
    Ok(kenning_onnx::is_cpu_form_of(&model, size)
        .unwrap_or(false)
        .then_some(model))
}

fn l2_normalised(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kenning_onnx::{DataType, Dim, Graph, Model, Node, ValueInfo};

    /// A one-node model whose PRelu the conversion rewrites.
    fn model() -> Vec<u8> {
        let graph = Graph {
            name: "g".into(),
            nodes: vec![Node::new("PRelu", "act", &["x", "slope"], &["y"])],
            initializers: vec![kenning_onnx::Tensor::float("slope", vec![1], vec![0.25])],
            inputs: vec![ValueInfo::new("x", DataType::Float, vec![Dim::Fixed(1)])],
            outputs: vec![ValueInfo::new("y", DataType::Float, vec![Dim::Fixed(1)])],
        };
        Model::new(graph, 21, "test").encode()
    }

    #[test]
    fn the_cpu_form_written_at_setup_is_used_only_when_current() {
        let dir = std::env::temp_dir().join(format!("kenning-cpu-form-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let source = ModelSource::Onnx {
            file: "m.onnx".into(),
        };
        assert_eq!(cpu_form_file(Path::new("m.onnx")), Path::new("m.cpu.onnx"));
        let missing = onnx_model(&dir, &source).unwrap_err();
        assert!(
            matches!(missing, ModelError::MissingFile { .. }),
            "{missing}"
        );
        let raw = model();
        std::fs::write(dir.join("m.onnx"), &raw).unwrap();
        let in_memory = onnx_model(&dir, &source).unwrap();
        assert_eq!(in_memory, kenning_onnx::fold_for_cpu(&raw).unwrap().0);
        // A probe entry the conversion never writes shows which bytes were
        // used.
        let (converted, _) = kenning_onnx::cpu_form(&raw).unwrap();
        let probe = kenning_onnx::with_metadata(&converted, &[("probe", "setup")]).unwrap();
        let used = |file: &[u8]| {
            std::fs::write(dir.join("m.cpu.onnx"), file).unwrap();
            let model = onnx_model(&dir, &source).unwrap();
            kenning_onnx::metadata(&model)
                .unwrap()
                .contains(&("probe".into(), "setup".into()))
        };
        assert!(used(&probe));
        // Another converter version, another source size, or not a model at
        // all: converted again in memory.
        let old = kenning_onnx::with_metadata(&probe, &[(kenning_onnx::CPU_FORM_KEY, "0")]);
        assert!(!used(&old.unwrap()));
        let other =
            kenning_onnx::with_metadata(&probe, &[(kenning_onnx::CPU_FORM_SOURCE_BYTES, "1")]);
        assert!(!used(&other.unwrap()));
        assert!(!used(b"\x08"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
