use std::path::{Path, PathBuf};

use kenning_core::Point;
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::calibration::{
    Calibration, CalibrationKind, CalibrationTable, Equalise, OwnedCalibration,
};
use crate::ModelError;
use kenning_core::fair::FairCalibration;
use kenning_core::quality::QualityBands;

/// Describes an embedding model so Kenning can run it: where its weights are,
/// how to prepare its input, how to align faces for it and how to compare and
/// calibrate its vectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Stable name; collections record it and never mix vectors of two names.
    pub name: String,
    /// Version string reported as FaceModelVersion.
    pub version: String,
    /// The weights.
    pub model: ModelSource,
    /// Input tensor layout and normalisation.
    pub input: InputSpec,
    /// How a face is cut out of the image.
    pub alignment: Alignment,
    /// Embedding size and metric.
    pub embedding: EmbeddingSpec,
    /// Calibration table file, relative to the manifest (absent: Similarity
    /// cannot be reported).
    #[serde(default)]
    pub calibration: Option<PathBuf>,
    /// Fair (per-region) calibration file, relative to the manifest, built
    /// by `kenning calibrate --fair K` (issue 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fair_calibration: Option<PathBuf>,
    /// Which calibration gives Similarity by default: `global` (the table in
    /// `calibration`) or `fair` (needs `fair_calibration`). Absent: global.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub similarity_calibration: Option<CalibrationKind>,
    /// The calibration a collection's policy selects with `Equalise`: a
    /// file relative to the manifest (a global table or a fair
    /// calibration) per choice. A choice not listed falls back as
    /// [`LoadedManifest::calibration_for`] says.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub equalise: BTreeMap<Equalise, PathBuf>,
    /// The small-face rule's file (kenning_core::quality), relative to the
    /// manifest: applied on top of whichever calibration is in force.
    /// Absent: face size does not change Similarity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_bands: Option<PathBuf>,
}

/// Where a recogniser's weights come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ModelSource {
    /// An ONNX file in the models folder (or an absolute path).
    Onnx {
        /// File name or path.
        file: PathBuf,
    },
    /// A dlib ResNet `.dat` file, converted to ONNX when loaded.
    DlibDat {
        /// File name or path.
        file: PathBuf,
    },
}

/// Colour channel order of the input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChannelOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red.
    Bgr,
}

/// The recogniser's input: NCHW float, value = (pixel - mean) / std per
/// channel (in the stated channel order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Input width in pixels.
    pub width: u32,
    /// Input height in pixels.
    pub height: u32,
    /// Channel order.
    pub channel_order: ChannelOrder,
    /// Per-channel mean, in the tensor's channel order.
    pub mean: [f32; 3],
    /// Per-channel divisor, in the tensor's channel order.
    pub std: [f32; 3],
}

/// How faces are aligned for the recogniser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Alignment {
    /// dlib's own chip: 5-point shape predictor landmarks, then dlib's chip
    /// geometry with the given padding (exactly as dlib computes it).
    DlibChip {
        /// Padding around the face, as a fraction of the face size.
        padding: f64,
    },
    /// A similarity transform taking five points (eye centres image-left
    /// then image-right, nose, mouth corners image-left then image-right)
    /// onto these template points, in input pixels (e.g. the ArcFace 112x112
    /// template), sampled bilinearly as OpenCV's `warpAffine` does.
    Template {
        /// Five (x, y) points.
        points: [[f64; 2]; 5],
        /// Where the five points come from (default: the detector).
        #[serde(default, skip_serializing_if = "LandmarkSource::is_detector")]
        landmarks: LandmarkSource,
        /// How the image is sampled (default: prefiltered).
        #[serde(default, skip_serializing_if = "TemplateSampling::is_default")]
        sampling: TemplateSampling,
    },
}

/// How a template alignment samples the image (see
/// [`kenning_image::Sampling`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TemplateSampling {
    /// Bilinear, averaged over each output pixel's footprint for large faces.
    #[default]
    Prefiltered,
    /// Exactly OpenCV's `warpAffine` (for recognisers whose reference is
    /// OpenCV's `FaceRecognizerSF::alignCrop`, such as SFace).
    Opencv,
}

impl TemplateSampling {
    fn is_default(&self) -> bool {
        *self == Self::Prefiltered
    }

    /// The image crate's sampling mode.
    pub fn to_image(self) -> kenning_image::Sampling {
        match self {
            Self::Prefiltered => kenning_image::Sampling::Prefiltered,
            Self::Opencv => kenning_image::Sampling::OpenCv,
        }
    }
}

/// Which landmarks a template alignment maps onto its template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LandmarkSource {
    /// The detector's five points (CenterFace's eye centres, nose tip and
    /// mouth corners).
    #[default]
    Detector,
    /// dlib's 5-point shape predictor: eye centres from its eye corners and
    /// the nose from its point under the nose; it has no mouth points, so
    /// the mouth corners stay the detector's.
    Dlib,
}

impl LandmarkSource {
    fn is_detector(&self) -> bool {
        *self == Self::Detector
    }
}

impl Alignment {
    /// The template as points, for [`Alignment::Template`].
    pub fn template_points(&self) -> Option<[Point; 5]> {
        match self {
            Self::Template { points, .. } => Some(points.map(|[x, y]| Point::new(x, y))),
            Self::DlibChip { .. } => None,
        }
    }
}

/// How embeddings are compared (one definition, shared with calibration).
pub use kenning_core::fair::Distance;

/// The recogniser's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingSpec {
    /// Number of floats.
    pub size: usize,
    /// Metric.
    pub distance: Distance,
}

/// A recogniser whose manifest and calibrations are built into the binary
/// (from `recognisers/<name>/`).
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// Manifest name.
    pub name: &'static str,
    /// manifest.json.
    pub manifest: &'static str,
    /// calibration.json (global table).
    pub calibration: Option<&'static str>,
    /// fair-calibration.json.
    pub fair_calibration: Option<&'static str>,
    /// Other calibration files the manifest's `equalise` names, by name.
    pub files: &'static [(&'static str, &'static str)],
}

/// dlib's ResNet v1: the default before SFace, and the recogniser of every
/// collection created before collections recorded a choice.
pub const DLIB_RESNET_V1: Builtin = Builtin {
    name: "dlib-resnet-v1",
    manifest: include_str!("../../../recognisers/dlib-resnet-v1/manifest.json"),
    calibration: Some(include_str!(
        "../../../recognisers/dlib-resnet-v1/calibration.json"
    )),
    fair_calibration: Some(include_str!(
        "../../../recognisers/dlib-resnet-v1/fair-calibration.json"
    )),
    files: &[],
};

/// OpenCV Zoo's SFace (2021dec, block-quantized), the default recogniser
/// (recognisers/sface-2021dec/README.md).
pub const SFACE_2021DEC: Builtin = Builtin {
    name: "sface-2021dec",
    manifest: include_str!("../../../recognisers/sface-2021dec/manifest.json"),
    calibration: Some(include_str!(
        "../../../recognisers/sface-2021dec/calibration.json"
    )),
    fair_calibration: Some(include_str!(
        "../../../recognisers/sface-2021dec/fair-calibration.json"
    )),
    files: &[
        (
            "fair-misses-calibration.json",
            include_str!("../../../recognisers/sface-2021dec/fair-misses-calibration.json"),
        ),
        (
            "quality-bands.json",
            include_str!("../../../recognisers/sface-2021dec/quality-bands.json"),
        ),
    ],
};

/// The built-in recognisers, the default first.
pub const BUILTIN: [Builtin; 2] = [SFACE_2021DEC, DLIB_RESNET_V1];

/// The recogniser new collections and one-off commands use unless told
/// otherwise.
pub const DEFAULT_RECOGNISER: &str = SFACE_2021DEC.name;

/// A manifest with its calibration tables read.
#[derive(Debug, Clone)]
pub struct LoadedManifest {
    /// The manifest.
    pub manifest: Manifest,
    /// Its global calibration table, when it has one.
    pub calibration: Option<CalibrationTable>,
    /// Its fair calibration, when it has one.
    pub fair_calibration: Option<FairCalibration>,
    /// The calibration Similarity uses (the manifest's
    /// `similarity_calibration`, or as chosen by [`LoadedManifest::select`]).
    pub selected: CalibrationKind,
    /// The calibrations its `equalise` names.
    pub equalise: BTreeMap<Equalise, OwnedCalibration>,
    /// The small-face rule its `quality_bands` names.
    pub quality_bands: Option<QualityBands>,
}

impl LoadedManifest {
    /// The built-in default recogniser ([`DEFAULT_RECOGNISER`]).
    pub fn default_recogniser() -> Result<Self, ModelError> {
        Self::builtin(DEFAULT_RECOGNISER)
    }

    /// A built-in recogniser by name (see [`BUILTIN`]).
    pub fn builtin(name: &str) -> Result<Self, ModelError> {
        let b = BUILTIN
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| ModelError::Manifest {
                name: name.into(),
                reason: format!(
                    "no built-in recogniser of that name (there are: {})",
                    BUILTIN.map(|b| b.name).join(", ")
                ),
            })?;
        let loaded = Self::parse(b.name, b.manifest, b.calibration, b.fair_calibration)?;
        let (table, fair) = (
            loaded.manifest.calibration.clone(),
            loaded.manifest.fair_calibration.clone(),
        );
        let read = |file: &Path| {
            let text = if table.as_deref() == Some(file) {
                b.calibration
            } else if fair.as_deref() == Some(file) {
                b.fair_calibration
            } else {
                b.files
                    .iter()
                    .find(|(f, _)| Path::new(f) == file)
                    .map(|(_, text)| *text)
            };
            text.map(str::to_owned).ok_or_else(|| ModelError::Manifest {
                name: b.name.into(),
                reason: format!("no built-in calibration file {}", file.display()),
            })
        };
        loaded
            .with_equalise(b.name, read)?
            .with_quality_bands(b.name, read)
    }

    /// Reads the small-face rule the manifest's `quality_bands` names
    /// through `read`.
    fn with_quality_bands(
        mut self,
        name: &str,
        read: impl Fn(&Path) -> Result<String, ModelError>,
    ) -> Result<Self, ModelError> {
        let Some(file) = &self.manifest.quality_bands else {
            return Ok(self);
        };
        let bad = |reason: String| ModelError::Manifest {
            name: name.into(),
            reason,
        };
        let q = QualityBands::from_json(&read(file)?).map_err(|e| bad(e.to_string()))?;
        if q.recogniser != self.manifest.name {
            return Err(bad(format!(
                "quality bands are for {}, not {}",
                q.recogniser, self.manifest.name
            )));
        }
        self.quality_bands = Some(q);
        Ok(self)
    }

    /// The calibration a collection whose policy says `equalise` uses:
    /// the manifest's file for that choice; without one, the fair
    /// calibration for `FalseMatches` and the global table for `Misses`;
    /// otherwise (and with no choice) the default,
    /// [`LoadedManifest::similarity_calibration`].
    pub fn calibration_for(&self, equalise: Option<Equalise>) -> Option<Calibration<'_>> {
        let Some(e) = equalise else {
            return self.similarity_calibration();
        };
        if let Some(c) = self.equalise.get(&e) {
            return Some(c.as_calibration());
        }
        match e {
            Equalise::FalseMatches => self.fair_calibration.as_ref().map(Calibration::Fair),
            Equalise::Misses => self.calibration.as_ref().map(Calibration::Global),
            Equalise::Balanced => None,
        }
        .or_else(|| self.similarity_calibration())
    }

    /// Reads the calibrations the manifest's `equalise` names through `read`.
    fn with_equalise(
        mut self,
        name: &str,
        read: impl Fn(&Path) -> Result<String, ModelError>,
    ) -> Result<Self, ModelError> {
        for (&e, file) in &self.manifest.equalise {
            let text = read(file)?;
            let c = if text.contains("\"centroids\"") {
                OwnedCalibration::Fair(fair_for(name, &self.manifest, &text)?)
            } else {
                OwnedCalibration::Global(table_for(name, &self.manifest, &text)?)
            };
            self.equalise.insert(e, c);
        }
        Ok(self)
    }

    /// Chooses the calibration Similarity uses; fails when the manifest has
    /// no calibration of that kind.
    pub fn select(mut self, kind: CalibrationKind) -> Result<Self, ModelError> {
        let present = match kind {
            CalibrationKind::Global => self.calibration.is_some(),
            CalibrationKind::Fair => self.fair_calibration.is_some(),
        };
        if !present {
            return Err(ModelError::Manifest {
                name: self.manifest.name.clone(),
                reason: format!("it has no {} calibration", kind.as_str()),
            });
        }
        self.selected = kind;
        Ok(self)
    }

    /// The calibration Similarity uses, when there is one.
    pub fn similarity_calibration(&self) -> Option<Calibration<'_>> {
        match self.selected {
            CalibrationKind::Global => self.calibration.as_ref().map(Calibration::Global),
            CalibrationKind::Fair => self.fair_calibration.as_ref().map(Calibration::Fair),
        }
    }

    /// Reads a manifest file and the calibration it names.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|source| ModelError::Io {
                path: p.to_owned(),
                source,
            })
        };
        let text = read(path)?;
        let name = path.display().to_string();
        let manifest: Manifest = parse_json(&name, &text)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let calibration = match &manifest.calibration {
            Some(rel) => Some(read(&dir.join(rel))?),
            None => None,
        };
        let fair = match &manifest.fair_calibration {
            Some(rel) => Some(read(&dir.join(rel))?),
            None => None,
        };
        Self::parse(&name, &text, calibration.as_deref(), fair.as_deref())?
            .with_equalise(&name, |rel| read(&dir.join(rel)))?
            .with_quality_bands(&name, |rel| read(&dir.join(rel)))
    }

    fn parse(
        name: &str,
        manifest: &str,
        calibration: Option<&str>,
        fair: Option<&str>,
    ) -> Result<Self, ModelError> {
        let manifest: Manifest = parse_json(name, manifest)?;
        let fair_calibration = match fair {
            Some(text) => Some(fair_for(name, &manifest, text)?),
            None => None,
        };
        let calibration = match calibration {
            Some(text) => Some(table_for(name, &manifest, text)?),
            None => None,
        };
        let selected = manifest
            .similarity_calibration
            .unwrap_or(CalibrationKind::Global);
        Self {
            manifest,
            calibration,
            fair_calibration,
            selected: CalibrationKind::Global,
            equalise: BTreeMap::new(),
            quality_bands: None,
        }
        .select_if_any(selected)
        .map_err(|e| ModelError::Manifest {
            name: name.into(),
            reason: e.to_string(),
        })
    }
}

/// A fair calibration's text, checked against the manifest it serves.
fn fair_for(name: &str, manifest: &Manifest, text: &str) -> Result<FairCalibration, ModelError> {
    let bad = |reason: String| ModelError::Manifest {
        name: name.into(),
        reason,
    };
    let f = FairCalibration::from_json(text).map_err(|e| bad(e.to_string()))?;
    if !f.recogniser.is_empty() && f.recogniser != manifest.name {
        return Err(bad(format!(
            "fair calibration is for {}, not {}",
            f.recogniser, manifest.name
        )));
    }
    if f.distance != manifest.embedding.distance || f.centroids[0].len() != manifest.embedding.size
    {
        return Err(bad(format!(
            "fair calibration is for {}-value {:?} embeddings",
            f.centroids[0].len(),
            f.distance
        )));
    }
    Ok(f)
}

/// A global table's text, checked against the manifest it serves.
fn table_for(name: &str, manifest: &Manifest, text: &str) -> Result<CalibrationTable, ModelError> {
    let table: CalibrationTable = parse_json(name, text)?;
    table.validate()?;
    if table.recogniser != manifest.name {
        return Err(ModelError::Manifest {
            name: name.into(),
            reason: format!(
                "calibration is for {}, not {}",
                table.recogniser, manifest.name
            ),
        });
    }
    Ok(table)
}

impl LoadedManifest {
    /// [`LoadedManifest::select`], except that a manifest with no
    /// calibration at all stays uncalibrated.
    fn select_if_any(self, kind: CalibrationKind) -> Result<Self, ModelError> {
        if self.calibration.is_none() && self.fair_calibration.is_none() {
            Ok(self)
        } else {
            self.select(kind)
        }
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(name: &str, text: &str) -> Result<T, ModelError> {
    serde_json::from_str(text).map_err(|e| ModelError::Manifest {
        name: name.into(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DLIB_MANIFEST: &str = DLIB_RESNET_V1.manifest;
    const DLIB_CALIBRATION: Option<&str> = DLIB_RESNET_V1.calibration;

    #[test]
    fn builtin_manifests_parse() {
        let m = LoadedManifest::builtin(DLIB_RESNET_V1.name).unwrap();
        assert_eq!(m.manifest.embedding.size, 128);
        assert_eq!(m.manifest.alignment, Alignment::DlibChip { padding: 0.25 });
        let m = LoadedManifest::builtin(SFACE_2021DEC.name).unwrap();
        assert_eq!(m.manifest.embedding.size, 128);
        assert_eq!(m.manifest.embedding.distance, Distance::Cosine);
        assert!(matches!(
            m.manifest.alignment,
            Alignment::Template {
                landmarks: LandmarkSource::Detector,
                ..
            }
        ));
        for b in BUILTIN {
            assert_eq!(
                LoadedManifest::builtin(b.name).unwrap().manifest.name,
                b.name
            );
        }
        assert_eq!(
            LoadedManifest::default_recogniser().unwrap().manifest.name,
            DEFAULT_RECOGNISER
        );
    }

    #[test]
    fn dlib_similarity_is_fair_and_global_stays_selectable() {
        let m = LoadedManifest::builtin(DLIB_RESNET_V1.name).unwrap();
        assert_eq!(m.selected, CalibrationKind::Fair);
        let fair = m.fair_calibration.as_ref().unwrap();
        assert_eq!(fair.centroids[0].len(), m.manifest.embedding.size);
        assert!(matches!(
            m.similarity_calibration(),
            Some(Calibration::Fair(_))
        ));
        let g = m.clone().select(CalibrationKind::Global).unwrap();
        assert!(matches!(
            g.similarity_calibration(),
            Some(Calibration::Global(_))
        ));
        // Without a fair calibration file, asking for one is refused.
        let text = DLIB_MANIFEST.replace("\"fair_calibration\": \"fair-calibration.json\",", "");
        assert!(LoadedManifest::parse("x", &text, DLIB_CALIBRATION, None).is_err());
        let text = text.replace(
            "\"similarity_calibration\": \"fair\"",
            "\"similarity_calibration\": \"global\"",
        );
        let m = LoadedManifest::parse("x", &text, DLIB_CALIBRATION, None).unwrap();
        assert!(m.select(CalibrationKind::Fair).is_err());
    }

    #[test]
    fn equalise_chooses_a_shipped_calibration() {
        let m = LoadedManifest::builtin(SFACE_2021DEC.name).unwrap();
        let kind = |e| m.calibration_for(e).map(|c| c.kind());
        assert_eq!(kind(None), Some(m.selected));
        assert_eq!(
            kind(Some(Equalise::FalseMatches)),
            Some(CalibrationKind::Fair)
        );
        // SFace ships its own Misses calibration: the fair family at a
        // higher strength (recognisers/sface-2021dec/calibrate.sh).
        let strength = |e| match m.calibration_for(Some(e)) {
            Some(Calibration::Fair(f)) => f.config.strength,
            other => panic!("{:?}: {:?}", e, other.map(|c| c.kind())),
        };
        assert_eq!(strength(Equalise::FalseMatches), 1.0);
        assert_eq!(strength(Equalise::Misses), 1.25);
        assert!(kind(Some(Equalise::Balanced)).is_some());
        // dlib names none, so Misses falls back to its global table.
        let dlib = LoadedManifest::builtin(DLIB_RESNET_V1.name).unwrap();
        assert_eq!(
            dlib.calibration_for(Some(Equalise::Misses))
                .map(|c| c.kind()),
            Some(CalibrationKind::Global)
        );
        // A manifest's own file for a choice wins over the fallback: here the
        // fair calibration named for Misses.
        let text = DLIB_MANIFEST.replacen(
            '{',
            r#"{"equalise": {"Misses": "fair-calibration.json"},"#,
            1,
        );
        let dir = std::env::temp_dir().join(format!("kenning-equalise-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("manifest.json"), &text).unwrap();
        std::fs::write(dir.join("calibration.json"), DLIB_CALIBRATION.unwrap()).unwrap();
        std::fs::write(
            dir.join("fair-calibration.json"),
            DLIB_RESNET_V1.fair_calibration.unwrap(),
        )
        .unwrap();
        let m = LoadedManifest::from_file(&dir.join("manifest.json")).unwrap();
        assert_eq!(
            m.calibration_for(Some(Equalise::Misses)).map(|c| c.kind()),
            Some(CalibrationKind::Fair)
        );
        // A file that is not there is an error, not a silent fallback.
        std::fs::write(
            dir.join("manifest.json"),
            text.replace(
                "\"Misses\": \"fair-calibration.json\"",
                "\"Misses\": \"gone.json\"",
            ),
        )
        .unwrap();
        assert!(LoadedManifest::from_file(&dir.join("manifest.json")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            Equalise::from_policy(r#"{"RequireCase":true,"Equalise":"Misses"}"#),
            Some(Equalise::Misses)
        );
        assert_eq!(Equalise::from_policy(""), None);
        assert_eq!(Equalise::from_policy(r#"{"RequireCase":true}"#), None);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let text = DLIB_MANIFEST.replacen('{', "{\"bogus\": 1,", 1);
        assert!(LoadedManifest::parse("x", &text, None, None).is_err());
    }
}
