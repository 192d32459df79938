//! A collection's own calibration (Kenning's CalibrateCollection): the
//! collection's enrolled people are an impostor set on the deployer's own
//! photos, so the level of the recogniser's shipped fair calibration is
//! refitted on the pairs of faces of different people in the gallery
//! (`kenning_eval::fit_gallery`); the shipped per-region structure is kept.
//! Once fitted, every search of the collection scores with it, until it is
//! refitted or reset; nothing refits it silently.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use kenning_core::fair::FairCalibration;
use kenning_eval::calibrate::CalibrationRow;
use kenning_eval::{check_gallery, fit_gallery, Embeddings};
use kenning_models::{Calibration, CalibrationTable, Equalise, Pipeline};
use kenning_store::Collection;
use serde::{Deserialize, Serialize};

use crate::{CollectionError, Collections, Result};

/// Fewest labelled faces a collection needs before it may be calibrated on
/// itself: with fewer, the fitted promise strays more than 3x on held-out
/// probes at Similarity 80-90 (measured in docs/accuracy.md, "Self-calibration
/// on your gallery").
pub const MIN_CALIBRATION_FACES: usize = 1000;

/// Similarities a check always reports, besides the policy threshold.
pub const CHECK_SIMILARITIES: [f64; 3] = [70.0, 80.0, 90.0];

/// The factor within which a promise counts as kept (the product brief's 3).
pub const PROMISE_FACTOR: f64 = 3.0;

/// What CalibrateCollection is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalibrationAction {
    /// Fit the collection's own calibration on its gallery and put it in force.
    Fit,
    /// Measure the calibration in force on the gallery; change nothing.
    Check,
    /// Put the recogniser's shipped calibration back in force.
    Reset,
}

impl std::str::FromStr for CalibrationAction {
    type Err = CollectionError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_uppercase().as_str() {
            "FIT" => Ok(Self::Fit),
            "CHECK" => Ok(Self::Check),
            "RESET" => Ok(Self::Reset),
            _ => Err(CollectionError::InvalidParameter(format!(
                "Action must be FIT, CHECK or RESET, not {s:?}"
            ))),
        }
    }
}

/// What a collection's own calibration was fitted from, and what it
/// measured at the policy threshold on the pairs it was fitted on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CalibrationSummary {
    /// The recogniser whose shipped calibration was refitted.
    pub recogniser: String,
    /// When, seconds since the epoch.
    pub fitted_at: f64,
    /// Faces used.
    pub photos: u64,
    /// Different people among them.
    pub people: u64,
    /// What told people apart: `UserId` or `ExternalImageId`.
    pub people_by: String,
    /// Pairs of faces of different people the level was fitted on.
    pub impostor_pairs: u64,
    /// Pairs of different people closer than `CopyDistance`, left out as
    /// copies of one photo (or one person under two labels).
    pub copies_left_out: u64,
    /// The distance below which a pair counts as a copy.
    pub copy_distance: f64,
    /// The policy threshold (Similarity) at fit time.
    pub threshold: f64,
    /// The false-match rate the threshold promises.
    pub promised_false_match_rate: f64,
    /// The rate measured on the gallery's impostor pairs at the threshold.
    pub measured_false_match_rate: f64,
    /// Its 95% interval (bootstrap over photos).
    pub false_match_rate_interval: [f64; 2],
}

/// The stored document: the summary (which the audit record keeps) and the
/// calibration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct OwnCalibration {
    pub summary: CalibrationSummary,
    pub calibration: FairCalibration,
}

/// Which calibration gives a collection's Similarity (DescribeCollection's
/// `Calibration`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CalibrationInForce {
    /// `COLLECTION` (its own, fitted on its gallery) or `SHIPPED` (the
    /// recogniser's).
    pub source: String,
    /// The recogniser.
    pub recogniser: String,
    /// `fair` or `global`.
    pub kind: String,
    /// For a collection's own calibration, what it was fitted from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fitted: Option<CalibrationSummary>,
}

impl CalibrationInForce {
    /// A short name for audit records, e.g. `sface-2021dec (fair)` or
    /// `sface-2021dec (collection, fitted at 1764800000)`.
    pub fn label(&self) -> String {
        match &self.fitted {
            None => format!("{} ({})", self.recogniser, self.kind),
            Some(s) => format!(
                "{} (collection, fitted at {:.0} on {} faces)",
                self.recogniser, s.fitted_at, s.photos
            ),
        }
    }
}

/// Observed against promised FMR at one Similarity.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CheckRow {
    /// The Similarity threshold.
    pub similarity: f64,
    /// The FMR it promises.
    pub promised_false_match_rate: f64,
    /// The fraction of the gallery's impostor pairs at or above it.
    pub observed_false_match_rate: f64,
    /// Those pairs.
    pub false_matches: u64,
    /// observed / promised.
    pub ratio: f64,
    /// Whether the gallery has enough pairs (promise x pairs >= 1) for the
    /// row to test the promise.
    pub measurable: bool,
    /// Whether observed is within 3x of promised.
    pub within_factor: bool,
}

/// How a calibration did on a gallery's impostor pairs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GalleryCheck {
    /// Which calibration was measured.
    pub calibration: String,
    /// Faces measured.
    pub photos: u64,
    /// Different people among them.
    pub people: u64,
    /// Impostor pairs measured.
    pub impostor_pairs: u64,
    /// Pairs left out as copies.
    pub copies_left_out: u64,
    /// The policy threshold first, then Similarity 70, 80 and 90.
    pub rows: Vec<CheckRow>,
    /// 95% interval of the observed FMR at the policy threshold.
    pub false_match_rate_interval: [f64; 2],
}

/// CalibrateCollection's response.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CalibrateCollectionResponse {
    /// The collection.
    pub collection_id: String,
    /// `FIT`, `CHECK` or `RESET`.
    pub action: String,
    /// The calibration in force after the action.
    pub calibration: CalibrationInForce,
    /// FIT: the calibration in force before, measured on the gallery.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<GalleryCheck>,
    /// FIT and CHECK: the calibration in force after, measured on the
    /// gallery (for a fitted one, on the pairs it was fitted on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check: Option<GalleryCheck>,
}

/// The calibration in force for a collection, borrowed from the recogniser
/// or owned (the collection's own).
pub(crate) enum InForce<'p> {
    Shipped(Calibration<'p>),
    Own(Arc<OwnCalibration>),
}

impl InForce<'_> {
    /// The calibration to score with.
    pub fn get(&self) -> Calibration<'_> {
        match self {
            Self::Shipped(c) => *c,
            Self::Own(o) => Calibration::Fair(&o.calibration),
        }
    }

    /// What DescribeCollection says of it.
    pub fn describe(&self, recogniser: &str) -> CalibrationInForce {
        match self {
            Self::Shipped(c) => CalibrationInForce {
                source: "SHIPPED".into(),
                recogniser: recogniser.into(),
                kind: c.kind().as_str().into(),
                fitted: None,
            },
            Self::Own(o) => CalibrationInForce {
                source: "COLLECTION".into(),
                recogniser: recogniser.into(),
                kind: "fair".into(),
                fitted: Some(o.summary.clone()),
            },
        }
    }
}

/// The gallery's labelled faces: embeddings and who each is.
struct Gallery {
    embeddings: Embeddings,
    people: Vec<String>,
    people_by: &'static str,
    distinct: usize,
}

fn invalid(m: String) -> CollectionError {
    CollectionError::InvalidParameter(m)
}

fn hash(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Pairs of different people closer than this are copies: the shipped
/// calibration's own copy distance (SFace: cosine 0.2, where UTKFace's 48
/// million impostor pairs have an FMR near 1e-7), or, for one fitted
/// without one, half the distance of its deepest measured FMR.
pub fn copy_distance(shipped: &FairCalibration) -> f64 {
    if shipped.config.exclude_below > 0.0 {
        shipped.config.exclude_below
    } else {
        shipped.global.points.first().map_or(0.0, |p| 0.5 * p.0)
    }
}

impl Collections {
    /// The calibration in force for collection `c`, whose recogniser is
    /// `p`: its own when CalibrateCollection fitted one, else the shipped
    /// one its policy's `Equalise` chooses (the recogniser's default when
    /// the policy chooses none).
    pub(crate) fn calibration<'p>(&self, c: &Collection, p: &'p Pipeline) -> Result<InForce<'p>> {
        if let Some(own) = self.own_calibration(&c.id)? {
            return Ok(InForce::Own(own));
        }
        p.recognizer()
            .loaded()
            .calibration_for(Equalise::from_policy(&c.policy))
            .map(InForce::Shipped)
            .ok_or_else(|| {
                invalid(format!(
                    "recogniser {} has no calibration table, so Similarity is undefined",
                    c.face_model.name
                ))
            })
    }

    /// The collection's own calibration, parsed once per stored version.
    fn own_calibration(&self, id: &str) -> Result<Option<Arc<OwnCalibration>>> {
        let Some(doc) = self.store.calibration(id)? else {
            return Ok(None);
        };
        let key = hash(&doc);
        let mut cache = self.own.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((k, own)) = cache.get(id) {
            if *k == key {
                return Ok(Some(own.clone()));
            }
        }
        let own: OwnCalibration = serde_json::from_str(&doc).map_err(|e| {
            invalid(format!(
                "collection {id}'s stored calibration is unreadable: {e}"
            ))
        })?;
        own.calibration
            .validate()
            .map_err(|e| invalid(format!("collection {id}'s stored calibration: {e}")))?;
        let own = Arc::new(own);
        cache.insert(id.to_owned(), (key, own.clone()));
        Ok(Some(own))
    }

    /// Which calibration is in force for collection `id`.
    pub fn calibration_in_force(&self, id: &str) -> Result<CalibrationInForce> {
        let (c, p) = self.collection(id)?;
        let in_force = self.calibration(&c, &p)?;
        let described = in_force.describe(&c.face_model.name);
        Ok(described)
    }

    /// The small-face rule collection `id`'s searches apply on top of its
    /// calibration (its recogniser's quality bands), if any.
    pub fn quality_rule_for(&self, id: &str) -> Result<Option<String>> {
        let (_, p) = self.collection(id)?;
        Ok(p.recognizer().quality_bands().map(|q| q.label()))
    }

    /// CalibrateCollection: fits the collection's own calibration on its
    /// gallery (refusing below [`MIN_CALIBRATION_FACES`] labelled faces, when
    /// the shipped one stays), measures the one in force, or resets to the
    /// shipped one. `threshold` is the policy threshold the check and the
    /// fitted calibration's interval are reported at.
    pub fn calibrate_collection(
        &self,
        id: &str,
        action: CalibrationAction,
        threshold: f64,
    ) -> Result<CalibrateCollectionResponse> {
        if !(0.0..=100.0).contains(&threshold) {
            return Err(invalid("the threshold must be between 0 and 100".into()));
        }
        let (c, p) = self.collection(id)?;
        let name = c.face_model.name.clone();
        let respond = |action: &str, before, check| -> Result<CalibrateCollectionResponse> {
            let in_force = self.calibration(&c, &p)?;
            Ok(CalibrateCollectionResponse {
                collection_id: id.to_owned(),
                action: action.into(),
                calibration: in_force.describe(&name),
                before,
                check,
            })
        };
        match action {
            CalibrationAction::Reset => {
                self.store.set_calibration(id, None)?;
                respond("RESET", None, None)
            }
            CalibrationAction::Check => {
                let gallery = self.gallery(&c)?;
                let in_force = self.calibration(&c, &p)?;
                let check = self.check(&c, &p, &in_force, &gallery, threshold)?;
                respond("CHECK", None, Some(check))
            }
            CalibrationAction::Fit => {
                let shipped = p
                    .recognizer()
                    .loaded()
                    .fair_calibration
                    .as_ref()
                    .ok_or_else(|| {
                        invalid(format!(
                            "recogniser {name} has no fair calibration to refit on a gallery"
                        ))
                    })?;
                let gallery = self.gallery(&c)?;
                if gallery.embeddings.len() < MIN_CALIBRATION_FACES || gallery.distinct < 2 {
                    return Err(invalid(format!(
                        "collection {id} has {} faces labelled by UserId or ExternalImageId ({} people); \
                         calibrating a collection on itself needs at least {MIN_CALIBRATION_FACES} \
                         (with fewer, the promise of Similarity is not kept within 3x), so the \
                         shipped calibration stays in force",
                        gallery.embeddings.len(),
                        gallery.distinct
                    )));
                }
                let before = {
                    let in_force = self.calibration(&c, &p)?;
                    self.check(&c, &p, &in_force, &gallery, threshold)?
                };
                let copies = copy_distance(shipped);
                let fit = fit_gallery(shipped, &gallery.embeddings, &gallery.people, copies)
                    .map_err(|e| invalid(format!("collection {id}: {e}")))?;
                let mut calibration = fit.calibration;
                calibration.source = format!(
                    "collection {id}: {} faces of {} people (by {}), {} impostor pairs, \
                     {} pairs closer than {copies} left out as copies; regions and their \
                     tables from {}",
                    fit.photos,
                    fit.subjects,
                    gallery.people_by,
                    fit.impostor_pairs,
                    fit.copies_left_out,
                    shipped.source
                );
                let own = Arc::new(OwnCalibration {
                    summary: CalibrationSummary {
                        recogniser: name.clone(),
                        fitted_at: now_s(),
                        photos: fit.photos as u64,
                        people: fit.subjects as u64,
                        people_by: gallery.people_by.into(),
                        impostor_pairs: fit.impostor_pairs,
                        copies_left_out: fit.copies_left_out,
                        copy_distance: copies,
                        threshold,
                        promised_false_match_rate: CalibrationTable::fmr_at_similarity(threshold),
                        measured_false_match_rate: 0.0,
                        false_match_rate_interval: [0.0, 0.0],
                    },
                    calibration,
                });
                let check = self.check(&c, &p, &InForce::Own(own.clone()), &gallery, threshold)?;
                let mut own = Arc::unwrap_or_clone(own);
                own.summary.measured_false_match_rate = check.rows[0].observed_false_match_rate;
                own.summary.false_match_rate_interval = check.false_match_rate_interval;
                let doc = serde_json::to_string(&own)
                    .map_err(|e| invalid(format!("writing the calibration: {e}")))?;
                self.store.set_calibration(id, Some(&doc))?;
                respond("FIT", Some(before), Some(check))
            }
        }
    }

    /// The gallery's faces labelled by UserId (when any face has one), else
    /// by ExternalImageId; unlabelled faces take no part.
    fn gallery(&self, c: &Collection) -> Result<Gallery> {
        let mut faces = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .store
                .list_faces(&c.id, None, token.as_deref(), Some(4096))?;
            faces.extend(page.items);
            token = page.next_token;
            if token.is_none() {
                break;
            }
        }
        let by_user = faces.iter().any(|f| f.user_id.is_some());
        let mut rows = Vec::new();
        let mut people = Vec::new();
        for f in &faces {
            let label = if by_user {
                f.user_id.as_ref()
            } else {
                f.external_image_id.as_ref()
            };
            if let Some(label) = label {
                let (_, e) = self.store.face_embedding(&c.id, &f.face_id.to_string())?;
                rows.push(e);
                people.push(label.clone());
            }
        }
        let distinct = people
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len();
        let embeddings = if rows.is_empty() {
            Embeddings::from_flat(c.dim as usize, Vec::new())
        } else {
            Embeddings::new(&rows)
        }
        .map_err(|e| invalid(format!("collection {}: {e}", c.id)))?;
        Ok(Gallery {
            embeddings,
            people,
            people_by: if by_user { "UserId" } else { "ExternalImageId" },
            distinct,
        })
    }

    /// Measures `in_force` on the gallery's impostor pairs at the policy
    /// threshold and at [`CHECK_SIMILARITIES`].
    fn check(
        &self,
        c: &Collection,
        p: &Pipeline,
        in_force: &InForce<'_>,
        gallery: &Gallery,
        threshold: f64,
    ) -> Result<GalleryCheck> {
        let similarities: Vec<f64> = std::iter::once(threshold)
            .chain(CHECK_SIMILARITIES)
            .collect();
        let levels: Vec<f64> = similarities
            .iter()
            .map(|&s| CalibrationTable::fmr_at_similarity(s))
            .collect();
        let label = in_force.describe(&c.face_model.name).label();
        let copies = p
            .recognizer()
            .loaded()
            .fair_calibration
            .as_ref()
            .map_or(0.0, copy_distance);
        // A global table is checked as a fair calibration with one region
        // would be: the per-pair promise is the table's.
        let measured = match in_force.get() {
            Calibration::Fair(fc) => check_gallery(
                fc,
                &gallery.embeddings,
                &gallery.people,
                copies,
                &levels,
                PROMISE_FACTOR,
            ),
            Calibration::Global(t) => check_gallery(
                &global_as_fair(t, &c.face_model.name, gallery.embeddings.dim(), p),
                &gallery.embeddings,
                &gallery.people,
                copies,
                &levels,
                PROMISE_FACTOR,
            ),
        }
        .map_err(|e| invalid(format!("collection {}: {e}", c.id)))?;
        Ok(GalleryCheck {
            calibration: label,
            photos: gallery.embeddings.len() as u64,
            people: gallery.distinct as u64,
            impostor_pairs: measured.impostor_pairs,
            copies_left_out: measured.copies_left_out,
            rows: similarities
                .iter()
                .zip(&measured.rows)
                .map(|(&s, r)| check_row(s, r))
                .collect(),
            false_match_rate_interval: [measured.interval.0, measured.interval.1],
        })
    }
}

fn check_row(similarity: f64, r: &CalibrationRow) -> CheckRow {
    CheckRow {
        similarity,
        promised_false_match_rate: r.predicted_fmr,
        observed_false_match_rate: r.observed_fmr,
        false_matches: r.false_matches,
        ratio: r.ratio,
        measurable: r.measurable,
        within_factor: r.within_factor,
    }
}

/// A global table as a one-region fair calibration with an identity
/// combined map, so one check serves both kinds.
fn global_as_fair(t: &CalibrationTable, name: &str, dim: usize, p: &Pipeline) -> FairCalibration {
    use kenning_core::fair::{
        ClusterCalibration, FairCalibrationConfig, LogFmrTable, FLOOR_LOG_FMR,
    };
    let mut points: Vec<(f64, f64)> = t.points.iter().map(|&(l, d)| (d, l)).collect();
    points.reverse();
    let table = LogFmrTable {
        pairs: t.impostor_pairs,
        points,
    };
    let mut centroid = vec![0f32; dim.max(1)];
    centroid[0] = 1.0;
    FairCalibration {
        recogniser: name.into(),
        source: t.source.clone(),
        distance: p.recognizer().manifest().embedding.distance,
        config: FairCalibrationConfig::default(),
        centroids: vec![centroid],
        clusters: vec![ClusterCalibration {
            photos: 0,
            table: Some(table.clone()),
        }],
        global: table,
        combined: LogFmrTable {
            pairs: t.impostor_pairs,
            points: vec![(FLOOR_LOG_FMR, FLOOR_LOG_FMR), (0.0, 0.0)],
        },
        impostor_pairs: t.impostor_pairs,
    }
}
