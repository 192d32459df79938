use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use kenning_core::{FaceDetail, ImageQuality, Landmark, LandmarkType, Point};
use kenning_dlib::{DlibRect, ShapePredictor};
use kenning_image::RgbImage;

use crate::calibration::CalibrationKind;
use crate::detector::{Detection, Detector, DetectorConfig};
use crate::manifest::{Alignment, LandmarkSource, LoadedManifest};
use crate::recognizer::Recognizer;
use crate::{pose, ModelError};

/// File name of dlib's 5-point shape predictor in the models folder.
pub const SHAPE_PREDICTOR_FILE: &str = "shape_predictor_5_face_landmarks.dat";

/// Everything needed to build a [`Pipeline`].
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Folder holding the model files and the ONNX Runtime library.
    pub models_dir: PathBuf,
    /// Detector settings.
    pub detector: DetectorConfig,
    /// The recogniser (defaults to the built-in dlib ResNet).
    pub recogniser: Option<LoadedManifest>,
    /// Sessions per model: how many images can be processed at once.
    pub sessions: usize,
    /// Calibration for Similarity (global or fair); `None`: the manifest's
    /// `similarity_calibration`.
    pub calibration: Option<CalibrationKind>,
}

impl PipelineConfig {
    /// Defaults with models from `models_dir`, one session per core.
    pub fn new(models_dir: impl Into<PathBuf>) -> Self {
        Self {
            models_dir: models_dir.into(),
            detector: DetectorConfig::default(),
            recogniser: None,
            sessions: std::thread::available_parallelism().map_or(1, usize::from),
            calibration: None,
        }
    }
}

/// A detected face with its geometry, quality and (when asked) embedding.
#[derive(Debug, Clone)]
pub struct Face {
    /// The raw detection.
    pub detection: Detection,
    /// Rekognition's FaceDetail for it.
    pub detail: FaceDetail,
    /// The landmarks used to align the face for the recogniser, in pixels
    /// (dlib's five points for the default recogniser).
    pub alignment_points: Vec<Point>,
    /// The embedding, when computed.
    pub embedding: Option<Vec<f32>>,
}

impl Face {
    /// Its size for the small-face rule (kenning_core::quality): the
    /// shorter side of the detector's box in the image's pixels.
    pub fn pixels(&self) -> f32 {
        let b = &self.detection.bbox;
        kenning_core::quality::face_pixels(b.width(), b.height())
    }
}

/// Image in, faces out: detect, measure, align, embed.
///
/// A pipeline is one recogniser with its calibration; pipelines made by
/// [`Pipeline::with_recogniser`] share the detector and dlib's shape
/// predictor with the one they came from.
pub struct Pipeline {
    shared: Arc<Shared>,
    /// Which landmarks the alignment uses (None: the detector's).
    predictor: Option<Arc<ShapePredictor>>,
    recognizer: Recognizer,
}

/// What every recogniser's pipeline of one service has in common.
struct Shared {
    models_dir: PathBuf,
    sessions: usize,
    calibration: Option<CalibrationKind>,
    detector: Detector,
    predictor: OnceLock<Arc<ShapePredictor>>,
}

impl Pipeline {
    /// Loads the detector, the recogniser and, when its alignment needs it,
    /// dlib's shape predictor.
    pub fn load(config: PipelineConfig) -> Result<Self, ModelError> {
        let dir = &config.models_dir;
        crate::runtime::init(dir)?;
        let manifest = match config.recogniser {
            Some(m) => m,
            None => LoadedManifest::default_recogniser()?,
        };
        let detector = Detector::load(dir, config.detector, config.sessions)?;
        let shared = Arc::new(Shared {
            models_dir: config.models_dir.clone(),
            sessions: config.sessions,
            calibration: config.calibration,
            detector,
            predictor: OnceLock::new(),
        });
        Self::build(shared, manifest)
    }

    /// A pipeline for another recogniser that shares this one's detector,
    /// shape predictor, session count and calibration choice.
    pub fn with_recogniser(&self, manifest: LoadedManifest) -> Result<Self, ModelError> {
        Self::build(self.shared.clone(), manifest)
    }

    fn build(shared: Arc<Shared>, manifest: LoadedManifest) -> Result<Self, ModelError> {
        let manifest = match shared.calibration {
            Some(kind) => manifest.select(kind)?,
            None => manifest,
        };
        let needs_predictor = matches!(
            manifest.manifest.alignment,
            Alignment::DlibChip { .. }
                | Alignment::Template {
                    landmarks: LandmarkSource::Dlib,
                    ..
                }
        );
        let predictor = if needs_predictor {
            Some(match shared.predictor.get() {
                Some(p) => p.clone(),
                None => {
                    let p = Arc::new(load_predictor(&shared.models_dir)?);
                    shared.predictor.get_or_init(|| p).clone()
                }
            })
        } else {
            None
        };
        let recognizer = Recognizer::load(&shared.models_dir, manifest, shared.sessions)?;
        Ok(Self {
            shared,
            predictor,
            recognizer,
        })
    }

    /// The detector.
    pub fn detector(&self) -> &Detector {
        &self.shared.detector
    }

    /// The recogniser.
    pub fn recognizer(&self) -> &Recognizer {
        &self.recognizer
    }

    /// Detects faces (largest first) with their FaceDetail; no embeddings.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Face>, ModelError> {
        let (w, h) = image.dimensions();
        Ok(self
            .shared
            .detector
            .detect(image)?
            .into_iter()
            .map(|detection| {
                let detail = face_detail(image, &detection, w, h);
                let alignment_points = self.alignment_points(image, &detection);
                Face {
                    detection,
                    detail,
                    alignment_points,
                    embedding: None,
                }
            })
            .collect())
    }

    /// The points the alignment maps: dlib's five for its chip, the
    /// detector's for a template, or dlib's eyes and nose with the detector's
    /// mouth corners for a template fed from dlib's predictor.
    fn alignment_points(&self, image: &RgbImage, d: &Detection) -> Vec<Point> {
        let Some(p) = &self.predictor else {
            return d.points.to_vec();
        };
        let dlib = p.predict(image, dlib_rect(d));
        match self.recognizer.manifest().alignment {
            Alignment::DlibChip { .. } => dlib.to_vec(),
            Alignment::Template { .. } => {
                // dlib's 5-point order: the image-right eye's two corners,
                // the image-left eye's two corners, then under the nose.
                let mid = |a: Point, b: Point| Point::new((a.x + b.x) / 2.0, (a.y + b.y) / 2.0);
                vec![
                    mid(dlib[2], dlib[3]),
                    mid(dlib[0], dlib[1]),
                    dlib[4],
                    d.points[3],
                    d.points[4],
                ]
            }
        }
    }

    /// Detects faces and embeds them; with `largest_only`, only the largest.
    pub fn analyze(&self, image: &RgbImage, largest_only: bool) -> Result<Vec<Face>, ModelError> {
        let mut faces = self.detect(image)?;
        if largest_only {
            faces.truncate(1);
        }
        self.embed_faces(image, &mut faces)?;
        Ok(faces)
    }

    /// Computes the embedding of each face in one batch.
    pub fn embed_faces(&self, image: &RgbImage, faces: &mut [Face]) -> Result<(), ModelError> {
        let crops: Vec<RgbImage> = faces
            .iter()
            .map(|f| self.align(image, &f.alignment_points))
            .collect();
        for (face, e) in faces.iter_mut().zip(self.recognizer.embed(&crops)?) {
            face.embedding = Some(e);
        }
        Ok(())
    }

    /// The embedding for a face given by a dlib rectangle (the parity path:
    /// same rectangle in, same landmarks and embedding out as dlib). Only for
    /// recognisers aligned by dlib's chip.
    pub fn embed_dlib_rect(
        &self,
        image: &RgbImage,
        rect: DlibRect,
    ) -> Result<([Point; 5], Vec<f32>), ModelError> {
        let predictor = self
            .predictor
            .as_ref()
            .filter(|_| {
                matches!(
                    self.recognizer.manifest().alignment,
                    Alignment::DlibChip { .. }
                )
            })
            .ok_or_else(|| ModelError::Manifest {
                name: self.recognizer.manifest().name.clone(),
                reason: "this recogniser does not use dlib landmarks".into(),
            })?;
        let points = predictor.predict(image, rect);
        Ok((points, self.embed_at(image, &points)?))
    }

    /// The embedding of the face at the given alignment points (five, in
    /// the order of [`Face::alignment_points`]), e.g. landmarks from another
    /// detector.
    pub fn embed_at(&self, image: &RgbImage, points: &[Point]) -> Result<Vec<f32>, ModelError> {
        let crop = self.align(image, points);
        let mut e = self.recognizer.embed(std::slice::from_ref(&crop))?;
        Ok(e.pop().unwrap_or_default())
    }

    /// The face cut out and aligned as the recogniser expects it.
    pub fn align_face(&self, image: &RgbImage, face: &Face) -> RgbImage {
        self.align(image, &face.alignment_points)
    }

    fn align(&self, image: &RgbImage, points: &[Point]) -> RgbImage {
        let m = self.recognizer.manifest();
        match &m.alignment {
            Alignment::DlibChip { padding } => {
                let five: [Point; 5] =
                    std::array::from_fn(|i| points.get(i).copied().unwrap_or_default());
                kenning_dlib::chip::extract(image, &five, m.input.width, *padding)
            }
            Alignment::Template { sampling, .. } => {
                let template = m.alignment.template_points().unwrap_or_default();
                kenning_image::align_with(
                    image,
                    points,
                    &template,
                    m.input.width,
                    m.input.height,
                    sampling.to_image(),
                )
            }
        }
    }
}

fn load_predictor(dir: &Path) -> Result<ShapePredictor, ModelError> {
    let bytes = crate::runtime::read_model_file(&dir.join(SHAPE_PREDICTOR_FILE))?;
    Ok(ShapePredictor::from_bytes(&bytes)?)
}

/// The box dlib's shape predictor expects for a CenterFace detection.
///
/// The predictor was trained on dlib's HOG boxes, which are squarer and sit
/// lower than CenterFace's; the mapping below was fitted by least squares to
/// HOG boxes on development photos, using the detector's eye and mouth
/// points, which are more stable than its box.
pub fn dlib_rect(d: &Detection) -> DlibRect {
    let [el, er, _, ml, mr] = d.points;
    let eye_mid = Point::new((el.x + er.x) / 2.0, (el.y + er.y) / 2.0);
    let mouth_mid = Point::new((ml.x + mr.x) / 2.0, (ml.y + mr.y) / 2.0);
    let eye_dist = ((er.x - el.x).powi(2) + (er.y - el.y).powi(2)).sqrt();
    let eye_mouth = ((mouth_mid.x - eye_mid.x).powi(2) + (mouth_mid.y - eye_mid.y).powi(2)).sqrt();
    let side = BOX_FIT.eye * eye_dist + BOX_FIT.eye_mouth * eye_mouth;
    let cx = (eye_mid.x + mouth_mid.x) / 2.0 + BOX_FIT.shift_x * side;
    let cy = (eye_mid.y + mouth_mid.y) / 2.0 + BOX_FIT.shift_y * side;
    let half = side / 2.0;
    DlibRect {
        left: (cx - half).round() as i64,
        top: (cy - half).round() as i64,
        right: (cx + half).round() as i64,
        bottom: (cy + half).round() as i64,
    }
}

struct BoxFit {
    eye: f64,
    eye_mouth: f64,
    shift_x: f64,
    shift_y: f64,
}

/// Fitted by scripts/dev/fit-box-mapping.py on 670 CelebA faces found by
/// both detectors (box side within 6% median, centre within 3% of the side).
const BOX_FIT: BoxFit = BoxFit {
    eye: 0.6174,
    eye_mouth: 1.6687,
    shift_x: -0.0094,
    shift_y: -0.0134,
};

fn face_detail(image: &RgbImage, d: &Detection, w: u32, h: u32) -> FaceDetail {
    let (fw, fh) = (f64::from(w), f64::from(h));
    let kinds = [
        LandmarkType::EyeLeft,
        LandmarkType::EyeRight,
        LandmarkType::Nose,
        LandmarkType::MouthLeft,
        LandmarkType::MouthRight,
    ];
    let landmarks = kinds
        .iter()
        .zip(d.points)
        .map(|(&kind, p)| Landmark {
            kind,
            x: (p.x / fw) as f32,
            y: (p.y / fh) as f32,
        })
        .collect();
    FaceDetail {
        bounding_box: d.bbox.to_fractions(w, h),
        landmarks,
        pose: pose::estimate(&d.points),
        quality: ImageQuality {
            brightness: kenning_image::brightness(image, &d.bbox),
            sharpness: kenning_image::sharpness(image, &d.bbox),
        },
        confidence: (d.score * 100.0).clamp(0.0, 100.0),
    }
}
