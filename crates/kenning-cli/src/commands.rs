//! The subcommands.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context as _, Result};
use kenning_core::WireError;
use kenning_image::{DecodeLimits, RgbImage};
use kenning_models::{CalibrationTable, LoadedManifest, Pipeline, PipelineConfig};
use serde_json::json;

use crate::{batch, inputs};

/// Settings shared by every subcommand.
pub struct Context {
    pub models: PathBuf,
    pub threads: usize,
    pub working_size: u32,
    pub min_confidence: f32,
    pub manifest: Option<PathBuf>,
}

impl Context {
    fn pipeline(&self) -> Result<Pipeline> {
        let mut config = PipelineConfig::new(&self.models);
        config.sessions = self.threads.max(1);
        config.detector.max_side = self.working_size;
        config.detector.min_score = self.min_confidence / 100.0;
        if let Some(m) = &self.manifest {
            config.recogniser = Some(LoadedManifest::from_file(m).map_err(wire)?);
        }
        Pipeline::load(config).map_err(wire)
    }
}

/// Prefixes a library error with its Rekognition exception name.
fn wire<E: WireError + Send + Sync + 'static>(e: E) -> anyhow::Error {
    anyhow!("{}: {e}", e.code())
}

fn load(path: &Path) -> Result<RgbImage> {
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
        Ok(Some(json!({ "File": p, "FaceDetails": details }).to_string()))
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
    let (s, t) = (s.with_context(|| source.display().to_string())?, t.with_context(|| target.display().to_string())?);
    let result = kenning_models::compare::compare_faces(&pipeline, &s, &t, threshold, 100).map_err(wire)?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(0)
}

/// Arguments of `kenning calibrate`.
#[derive(clap::Args)]
pub struct CalibrateArgs {
    /// Photos of different people (one person per photo unless --identities says otherwise).
    #[arg(required = true)]
    images: Vec<String>,
    /// identities.csv (file,identity): pairs of the same identity are left out.
    #[arg(long)]
    identities: Option<PathBuf>,
    /// Where to write the table (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Step between table points in log10 FMR.
    #[arg(long, default_value_t = 0.05)]
    step: f64,
    /// Description stored in the table's "source" field.
    #[arg(long, default_value = "")]
    source: String,
    /// Leave out pairs closer than this: copies of one photo in the set,
    /// which are not comparisons of different people.
    #[arg(long, default_value_t = 0.0)]
    exclude_below: f32,
}

pub fn calibrate(ctx: &Context, args: &CalibrateArgs) -> Result<i32> {
    let paths = inputs::expand(&args.images)?;
    let identities = match &args.identities {
        Some(csv) => Some(read_identities(csv)?),
        None => None,
    };
    let pipeline = ctx.pipeline()?;
    let recognizer = pipeline.recognizer();
    let embeddings = std::sync::Mutex::new(Vec::new());
    let failed = batch::run(&paths, |p| {
        let face = pipeline.analyze(&load(p)?, true).map_err(wire)?.into_iter().next();
        let e = face.and_then(|f| f.embedding).ok_or_else(|| anyhow!("no face found"))?;
        let id = match &identities {
            Some(map) => map.iter().find(|(f, _)| p.ends_with(f)).map(|(_, id)| id.clone()),
            None => None,
        }
        .unwrap_or_else(|| p.display().to_string());
        embeddings.lock().map_err(|_| anyhow!("poisoned"))?.push((id, e));
        Ok(None)
    });
    let embeddings = embeddings.into_inner().map_err(|_| anyhow!("poisoned"))?;
    let mut distances = Vec::with_capacity(embeddings.len() * embeddings.len() / 2);
    for (i, (id_a, a)) in embeddings.iter().enumerate() {
        for (id_b, b) in &embeddings[i + 1..] {
            let d = recognizer.distance(a, b) as f32;
            if id_a != id_b && d >= args.exclude_below {
                distances.push(d);
            }
        }
    }
    let source = if args.source.is_empty() {
        format!(
            "{} photos, {failed} without a face, {} impostor pairs (pairs closer than {} left out as copies)",
            paths.len(),
            distances.len(),
            args.exclude_below
        )
    } else {
        args.source.clone()
    };
    let table = CalibrationTable::build(&recognizer.manifest().name, &source, &mut distances, args.step).map_err(wire)?;
    std::fs::write(&args.out, table.to_json())
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "kenning: {} impostor pairs from {} faces; FMR 1e-4 at distance {:.4}, 1e-5 at {:.4}",
        table.impostor_pairs,
        embeddings.len(),
        table.distance_for_log_fmr(-4.0),
        table.distance_for_log_fmr(-5.0)
    );
    Ok(0)
}

fn read_identities(path: &Path) -> Result<Vec<(PathBuf, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let (f, id) = l.split_once(',').ok_or_else(|| anyhow!("{}:{}: expected file,identity", path.display(), i + 2))?;
            Ok((PathBuf::from(f.trim()), id.trim().to_owned()))
        })
        .collect()
}

/// `kenning models ...`
#[derive(clap::Subcommand)]
pub enum ModelsCommand {
    /// Write the ONNX files Kenning runs (converted dlib ResNet, size-free CenterFace).
    Export {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn models(ctx: &Context, cmd: ModelsCommand) -> Result<i32> {
    match cmd {
        ModelsCommand::Export { out } => {
            std::fs::create_dir_all(&out)?;
            let read = |f: &str| std::fs::read(ctx.models.join(f)).with_context(|| format!("reading {f}"));
            let resnet = kenning_dlib::resnet::to_onnx(&read("dlib_face_recognition_resnet_model_v1.dat")?)?;
            std::fs::write(out.join("dlib_resnet_v1.onnx"), resnet.model)?;
            let centerface = kenning_onnx::make_dynamic_input(&read(kenning_models::detector::CENTERFACE_FILE)?)?;
            std::fs::write(out.join("centerface_dynamic.onnx"), centerface)?;
            eprintln!("kenning: wrote dlib_resnet_v1.onnx and centerface_dynamic.onnx to {}", out.display());
            Ok(0)
        }
    }
}
