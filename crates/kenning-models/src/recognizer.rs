use std::path::Path;

use kenning_image::RgbImage;
use ort::value::TensorRef;

use crate::calibration::{Calibration, CalibrationTable};
use crate::manifest::{ChannelOrder, Distance, LoadedManifest, Manifest, ModelSource};
use crate::pool::SessionPool;
use crate::runtime::read_model_file;
use crate::ModelError;

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
/// converted to ONNX, or an ONNX file with its constant-weight
/// `DequantizeLinear` nodes folded into fp32 weights, only its real inputs
/// kept and `PRelu` rewritten into operators ONNX Runtime fuses
/// ([`kenning_onnx::fold_for_cpu`]; a model without them is unchanged but for
/// its `value_info`).
pub fn onnx_model(models_dir: &Path, source: &ModelSource) -> Result<Vec<u8>, ModelError> {
    Ok(match source {
        ModelSource::Onnx { file } => {
            kenning_onnx::fold_for_cpu(&read_model_file(&models_dir.join(file))?)?.0
        }
        ModelSource::DlibDat { file } => {
            let dat = read_model_file(&models_dir.join(file))?;
            kenning_dlib::resnet::to_onnx(&dat)?.model
        }
    })
}

fn l2_normalised(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}
