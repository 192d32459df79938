//! The subcommands.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use kenning_core::WireError;
use kenning_image::{DecodeLimits, RgbImage};
use kenning_models::{LoadedManifest, Pipeline, PipelineConfig};
use serde_json::json;

use crate::{batch, inputs};

/// Settings shared by every subcommand.
pub struct Context {
    /// The models folder given with `--models` or `KENNING_MODELS`, if any
    /// (see [`Context::models_dir`]).
    pub models: Option<PathBuf>,
    pub threads: usize,
    pub working_size: u32,
    pub min_confidence: f32,
    pub manifest: Option<PathBuf>,
    /// A built-in recogniser chosen by name (--recogniser).
    pub recogniser: Option<String>,
}

impl Context {
    /// The models folder: the one given, else the first installed one
    /// (crate::model_dirs).
    pub(crate) fn models_dir(&self) -> Result<PathBuf> {
        crate::model_dirs::resolve(self.models.as_deref())
    }

    pub(crate) fn pipeline(&self) -> Result<Pipeline> {
        self.pipeline_with_sessions(self.threads.max(1))
    }

    /// The pipeline with `sessions` ONNX sessions per model.
    pub(crate) fn pipeline_with_sessions(&self, sessions: usize) -> Result<Pipeline> {
        let mut config = PipelineConfig::new(self.models_dir()?);
        config.sessions = sessions.max(1);
        config.detector.max_side = self.working_size;
        config.detector.min_score = self.min_confidence / 100.0;
        if let Some(m) = &self.manifest {
            config.recogniser = Some(LoadedManifest::from_file(m).map_err(wire)?);
        } else if let Some(name) = &self.recogniser {
            config.recogniser = Some(LoadedManifest::builtin(name).map_err(wire)?);
        }
        // KENNING_CALIBRATION=global|fair overrides the manifest's choice of
        // calibration for Similarity.
        if let Ok(kind) = std::env::var("KENNING_CALIBRATION") {
            config.calibration = Some(kind.parse().map_err(|e: String| anyhow!(e))?);
        }
        Pipeline::load(config).map_err(wire)
    }
}

/// Prefixes a library error with its Rekognition exception name.
pub(crate) fn wire<E: WireError + Send + Sync + 'static>(e: E) -> anyhow::Error {
    anyhow!("{}: {e}", e.code())
}

pub(crate) fn load(path: &Path) -> Result<RgbImage> {
    kenning_image::decode_file(path, &DecodeLimits::default()).map_err(wire)
}

fn exit_code(failed: usize) -> i32 {
    i32::from(failed > 0)
}

pub fn detect(ctx: &Context, images: &[String]) -> Result<i32> {
    let paths = inputs::expand(images)?;
    let pipeline = ctx.pipeline()?;
    let failed = batch::run(&paths, |p| {
        let faces = pipeline.detect(&load(p)?).map_err(wire)?;
        let details: Vec<_> = faces.into_iter().map(|f| f.detail).collect();
        Ok(Some(
            json!({ "File": p, "FaceDetails": details }).to_string(),
        ))
    });
    Ok(exit_code(failed))
}

pub fn embed(ctx: &Context, images: &[String], largest: bool) -> Result<i32> {
    let paths = inputs::expand(images)?;
    let pipeline = ctx.pipeline()?;
    let failed = batch::run(&paths, |p| {
        let faces = pipeline.analyze(&load(p)?, largest).map_err(wire)?;
        let faces: Vec<_> = faces
            .into_iter()
            .map(|f| {
                json!({
                    "BoundingBox": f.detail.bounding_box,
                    "Confidence": f.detail.confidence,
                    "Landmarks": f.detail.landmarks,
                    "Embedding": f.embedding,
                })
            })
            .collect();
        Ok(Some(json!({ "File": p, "Faces": faces }).to_string()))
    });
    Ok(exit_code(failed))
}

pub fn compare(ctx: &Context, source: &Path, target: &Path, threshold: f64) -> Result<i32> {
    if !(0.0..=100.0).contains(&threshold) {
        bail!("InvalidParameterException: --threshold must be between 0 and 100");
    }
    let pipeline = ctx.pipeline()?;
    let (s, t) = rayon::join(|| load(source), || load(target));
    let (s, t) = (
        s.with_context(|| source.display().to_string())?,
        t.with_context(|| target.display().to_string())?,
    );
    let result =
        kenning_models::compare::compare_faces(&pipeline, &s, &t, threshold, 100).map_err(wire)?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(0)
}

/// `kenning models ...`
#[derive(clap::Subcommand)]
pub enum ModelsCommand {
    /// Print the models folder this command line would use (found from any
    /// working directory: next to the executable, the per-user data
    /// directory, ./models; --models or KENNING_MODELS override).
    Path,
    /// Write the ONNX files Kenning runs (converted dlib ResNet, SFace with
    /// its weights dequantized, size-free CenterFace).
    Export {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn models(ctx: &Context, cmd: ModelsCommand) -> Result<i32> {
    match cmd {
        ModelsCommand::Path => {
            println!("{}", ctx.models_dir()?.display());
            Ok(0)
        }
        ModelsCommand::Export { out } => {
            let models = ctx.models_dir()?;
            std::fs::create_dir_all(&out)?;
            let read =
                |f: &str| std::fs::read(models.join(f)).with_context(|| format!("reading {f}"));
            let resnet =
                kenning_dlib::resnet::to_onnx(&read("dlib_face_recognition_resnet_model_v1.dat")?)?;
            std::fs::write(out.join("dlib_resnet_v1.onnx"), resnet.model)?;
            let sface = kenning_models::LoadedManifest::builtin(
                kenning_models::manifest::SFACE_2021DEC.name,
            )
            .map_err(wire)?;
            let sface = kenning_models::recognizer::onnx_model(&models, &sface.manifest.model)
                .map_err(wire)?;
            std::fs::write(out.join("sface_2021dec.onnx"), sface)?;
            let centerface = kenning_onnx::make_dynamic_input(&read(
                kenning_models::detector::CENTERFACE_FILE,
            )?)?;
            std::fs::write(out.join("centerface_dynamic.onnx"), centerface)?;
            eprintln!(
                "kenning: wrote dlib_resnet_v1.onnx, sface_2021dec.onnx and centerface_dynamic.onnx to {}",
                out.display()
            );
            Ok(0)
        }
    }
}
