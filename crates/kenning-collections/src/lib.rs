//! Rekognition's collection, face and user operations: faces are detected
//! and embedded by the pipeline, then stored and searched through a
//! [`FaceStore`] backend (the embedded data directory, or PostgreSQL); the
//! candidates a backend returns are scored here with the recogniser's
//! calibration, so Similarity is the same whichever backend found them.
//!
//! Each collection records the recogniser that made its vectors (its
//! FaceModel) and is always served by that recogniser's pipeline and
//! calibration ([`Collections::recogniser`]), so collections made by
//! different recognisers live side by side in one backend and never mix
//! vectors. New collections get the default recogniser unless
//! CreateCollection names another.

#![forbid(unsafe_code)]

pub mod api;
mod calibrate;
mod error;
pub mod quality;
mod searcher;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use kenning_core::quality::QualityBands;
use kenning_image::{DecodeLimits, RgbImage};
use kenning_models::manifest::{Distance, Manifest};
use kenning_models::{Calibration, CalibrationTable, Pipeline, Recognisers};

use calibrate::OwnCalibration;
use kenning_store::{
    Collection, Embedded, FaceModel, FaceStore, Nearest, NewCollection, NewFace, OnAssociated,
};
use uuid::Uuid;

pub use calibrate::{
    copy_distance, CalibrateCollectionResponse, CalibrationAction, CalibrationInForce,
    CalibrationSummary, CheckRow, GalleryCheck, CHECK_SIMILARITIES, MIN_CALIBRATION_FACES,
};
pub use error::{CollectionError, Result};
pub use quality::{QualityFilter, Reason};
pub use searcher::FaceSearcher;

use api::*;

/// Rekognition's default FaceMatchThreshold.
pub const DEFAULT_THRESHOLD: f64 = 80.0;
/// Largest MaxFaces for SearchFaces and SearchFacesByImage.
pub const MAX_SEARCH_FACES: usize = 4096;
/// MaxFaces when a search gives none.
pub const DEFAULT_SEARCH_FACES: usize = 80;
/// Largest MaxFaces for IndexFaces (Rekognition indexes at most 100 faces of an image).
pub const MAX_INDEX_FACES: usize = 100;
/// Largest MaxUsers for SearchUsers.
pub const MAX_SEARCH_USERS: usize = 500;

/// The false-match rate a Similarity threshold promises:
/// Similarity = 40 + 10 log10(1/FMR), so FMR = 10^((40 - S) / 10).
pub fn fmr_at(threshold: f64) -> f64 {
    CalibrationTable::fmr_at_similarity(threshold)
}

/// What `threshold` means for a collection of `face_count` faces.
pub fn estimate(threshold: f64, face_count: u64) -> FalseMatchEstimate {
    let false_match_rate = fmr_at(threshold);
    FalseMatchEstimate {
        threshold,
        false_match_rate,
        face_count,
        expected_false_matches: false_match_rate * face_count as f64,
        calibration: None,
        quality_rule: None,
    }
}

/// With a fair calibration, a search asks the index for this many times
/// MaxFaces candidates (plus 16) within the loosest radius, since some of
/// them fall short of the threshold once each pair's own Similarity is known.
pub const FAIR_SEARCH_OVERFETCH: usize = 2;

/// The `(id, Similarity)` candidates that reach `threshold`, highest
/// Similarity first (ties keep their order, i.e. nearest first), at most `k`.
fn keep_best<T>(mut scored: Vec<(T, f32)>, threshold: f64, k: usize) -> Vec<(T, f32)> {
    scored.retain(|s| f64::from(s.1) >= threshold);
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    scored.truncate(k);
    scored
}

/// The collection service: one storage backend, served by the recognisers
/// its collections were made with.
pub struct Collections {
    store: Arc<dyn FaceStore>,
    recognisers: Recognisers,
    limits: DecodeLimits,
    /// Collections' own calibrations as last read, with a hash of the
    /// stored document (a refit or reset on any node changes it).
    own: Mutex<HashMap<String, (u64, Arc<OwnCalibration>)>>,
}

/// A search hit before it is shaped for the wire.
struct Hit {
    face: kenning_store::Face,
    similarity: f32,
}

impl Collections {
    /// Opens (or creates) the data directory `dir` (the embedded backend).
    /// `recognisers` is the set of recognisers it may use, or a single
    /// pipeline: that one is the default for new collections, and the
    /// built-in recognisers serve collections made with them.
    pub fn open(dir: &Path, recognisers: impl Into<Recognisers>) -> Result<Self> {
        let recognisers = recognisers.into();
        let store = Embedded::open(dir, distances(&recognisers))?;
        Ok(Self::with_store(Arc::new(store), recognisers))
    }

    /// Serves the collections of `store` with `recognisers`.
    pub fn with_store(store: Arc<dyn FaceStore>, recognisers: impl Into<Recognisers>) -> Self {
        Self {
            store,
            recognisers: recognisers.into(),
            limits: DecodeLimits::default(),
            own: Mutex::new(HashMap::new()),
        }
    }

    /// The storage backend.
    pub fn store(&self) -> &dyn FaceStore {
        self.store.as_ref()
    }

    /// The default recogniser's pipeline (new collections, DetectFaces and
    /// CompareFaces).
    pub fn pipeline(&self) -> &Pipeline {
        self.recognisers.default_pipeline()
    }

    /// Every recogniser this service can run.
    pub fn recognisers(&self) -> &Recognisers {
        &self.recognisers
    }

    /// The recogniser of collection `id`: the pipeline (detector, alignment,
    /// embedding model) that made its vectors, with the calibration that
    /// gives its Similarity. Embed faces with it before searching the
    /// collection with their vectors; another recogniser's vectors are not
    /// comparable.
    pub fn recogniser(&self, id: &str) -> Result<Arc<Pipeline>> {
        Ok(self.collection(id)?.1)
    }

    /// Limits applied to image bytes.
    pub fn set_decode_limits(&mut self, limits: DecodeLimits) {
        self.limits = limits;
    }

    /// The limits applied to image bytes.
    pub fn decode_limits(&self) -> DecodeLimits {
        self.limits
    }

    /// The collection and the pipeline of the recogniser that made its
    /// vectors (same name and version).
    fn collection(&self, id: &str) -> Result<(Collection, Arc<Pipeline>)> {
        let c = self.store.describe_collection(id)?;
        let p = self.recognisers.get(&c.face_model.name).map_err(|e| {
            CollectionError::InvalidParameter(format!(
                "collection {id} holds vectors of recogniser {}, which this service cannot run ({e}); vectors of other recognisers are not comparable",
                c.face_model
            ))
        })?;
        let version = &p.recognizer().manifest().version;
        if &c.face_model.version != version {
            return Err(CollectionError::InvalidParameter(format!(
                "collection {id} holds vectors of {}; this service runs version {version} of it, whose vectors are not comparable",
                c.face_model
            )));
        }
        Ok((c, p))
    }

    /// Saves derived data (index files) so the next start does not rebuild
    /// it. Call before exiting and periodically.
    pub fn flush(&self) -> Result<()> {
        Ok(self.store.flush()?)
    }

    /// Physically erases deleted faces: the store's files (or tables) and
    /// indexes no longer hold their bytes.
    pub fn erase(&self) -> Result<()> {
        Ok(self.store.erase()?)
    }

    fn decode(&self, image: &[u8]) -> Result<RgbImage> {
        Ok(kenning_image::decode(image, &self.limits)?)
    }

    // ---- collections -------------------------------------------------

    /// CreateCollection with the default recogniser, and `policy` (an
    /// opaque document the accountability layer validates and enforces;
    /// `"{}"` for none).
    pub fn create_collection(&self, id: &str, policy: &str) -> Result<CreateCollectionResponse> {
        self.create_collection_with(id, policy, None)
    }

    /// CreateCollection with the named recogniser (Kenning's `Recogniser`
    /// extension; None: the default). The collection keeps it for life.
    pub fn create_collection_with(
        &self,
        id: &str,
        policy: &str,
        recogniser: Option<&str>,
    ) -> Result<CreateCollectionResponse> {
        let name = recogniser.unwrap_or(self.recognisers.default_name());
        // Loaded now, so a recogniser whose model is missing fails here and
        // not at the first IndexFaces.
        let p = self.recognisers.get(name)?;
        let m = p.recognizer().manifest();
        let c = self.store.create_collection(
            NewCollection {
                id: id.into(),
                face_model: face_model(m),
                dim: m.embedding.size as u32,
                policy: policy.into(),
            },
            m.embedding.distance,
        )?;
        Ok(CreateCollectionResponse {
            status_code: 200,
            collection_arn: wire_arn(&c.arn),
            face_model_version: c.face_model.name,
        })
    }

    /// DescribeCollection, with what the default threshold means at its
    /// size and which calibration is in force.
    pub fn describe_collection(&self, id: &str) -> Result<DescribeCollectionResponse> {
        let c = self.store.describe_collection(id)?;
        let (calibration, quality_rule) = match self.collection(id) {
            Ok((c, p)) => {
                let in_force = self.calibration(&c, &p)?;
                let rule = p.recognizer().quality_bands().map(QualityBands::label);
                (Some(in_force.describe(&c.face_model.name)), rule)
            }
            Err(_) => (None, None),
        };
        let mut false_match_estimate = estimate(DEFAULT_THRESHOLD, c.face_count);
        false_match_estimate.calibration = calibration.as_ref().map(CalibrationInForce::label);
        false_match_estimate.quality_rule = quality_rule;
        Ok(DescribeCollectionResponse {
            face_count: c.face_count,
            face_model_version: c.face_model.name.clone(),
            collection_arn: wire_arn(&c.arn),
            creation_timestamp: c.created_at_ms as f64 / 1000.0,
            user_count: c.user_count,
            false_match_estimate,
            calibration,
        })
    }

    /// ListCollections.
    pub fn list_collections(
        &self,
        token: Option<&str>,
        max_results: Option<u32>,
    ) -> Result<ListCollectionsResponse> {
        let page = self.store.list_collections(token, max_results)?;
        Ok(ListCollectionsResponse {
            face_model_versions: page
                .items
                .iter()
                .map(|c| c.face_model.name.clone())
                .collect(),
            collection_ids: page.items.into_iter().map(|c| c.id).collect(),
            next_token: page.next_token,
        })
    }

    /// DeleteCollection: faces, users, vectors and the index go.
    pub fn delete_collection(&self, id: &str) -> Result<u16> {
        self.store.delete_collection(id)?;
        Ok(200)
    }

    // ---- faces -------------------------------------------------------

    /// IndexFaces: detects faces, leaves out those failing `quality` or beyond
    /// `max_faces` (the largest are kept), embeds and stores the rest.
    pub fn index_faces(
        &self,
        id: &str,
        image: &[u8],
        external_image_id: Option<&str>,
        max_faces: Option<usize>,
        quality: QualityFilter,
    ) -> Result<IndexFacesResponse> {
        if let Some(ext) = external_image_id {
            kenning_store::validate_external_image_id(ext)?;
        }
        let max_faces = max_faces.unwrap_or(MAX_INDEX_FACES);
        if !(1..=MAX_INDEX_FACES).contains(&max_faces) {
            return Err(CollectionError::InvalidParameter(format!(
                "MaxFaces must be between 1 and {MAX_INDEX_FACES}"
            )));
        }
        let (c, p) = self.collection(id)?;
        let img = self.decode(image)?;
        let (w, h) = img.dimensions();
        let mut faces = p.detect(&img)?;
        let mut unindexed = Vec::new();
        let mut keep = Vec::new();
        for face in faces.drain(..) {
            let reasons = quality.reasons(&face.detail, w, h);
            if !reasons.is_empty() {
                unindexed.push(UnindexedFace {
                    reasons,
                    face_detail: face.detail,
                });
            } else if keep.len() < max_faces {
                keep.push(face);
            } else {
                unindexed.push(UnindexedFace {
                    reasons: vec![Reason::ExceedsMaxFaces],
                    face_detail: face.detail,
                });
            }
        }
        p.embed_faces(&img, &mut keep)?;
        let image_id = Uuid::new_v4();
        let new: Vec<NewFace> = keep
            .iter()
            .map(|f| NewFace {
                image_id,
                external_image_id: external_image_id.map(str::to_owned),
                bounding_box: f.detail.bounding_box,
                confidence: f.detail.confidence,
                embedding: f.embedding.clone().unwrap_or_default(),
                indexed_at_ms: None,
                pixels: Some(f.pixels()),
            })
            .collect();
        let stored = if new.is_empty() {
            Vec::new()
        } else {
            let model = face_model(p.recognizer().manifest());
            self.store.add_faces(id, &model, new)?
        };
        let version = c.face_model.name.clone();
        Ok(IndexFacesResponse {
            face_records: stored
                .into_iter()
                .zip(keep)
                .map(|(s, f)| FaceRecord {
                    face: wire_face(&s, &version),
                    face_detail: f.detail,
                })
                .collect(),
            face_model_version: version,
            unindexed_faces: unindexed,
        })
    }

    /// ListFaces (optionally one user's).
    pub fn list_faces(
        &self,
        id: &str,
        user_id: Option<&str>,
        token: Option<&str>,
        max_results: Option<u32>,
    ) -> Result<ListFacesResponse> {
        let c = self.store.describe_collection(id)?;
        let page = self.store.list_faces(id, user_id, token, max_results)?;
        let version = c.face_model.name;
        Ok(ListFacesResponse {
            faces: page.items.iter().map(|f| wire_face(f, &version)).collect(),
            next_token: page.next_token,
            face_model_version: version,
        })
    }

    /// DeleteFaces: a face that belongs to a user is refused, as Rekognition does.
    pub fn delete_faces(&self, id: &str, face_ids: &[String]) -> Result<DeleteFacesResponse> {
        self.delete_faces_with(id, face_ids, OnAssociated::Refuse)
    }

    /// DeleteFaces with a choice for faces that belong to users (retention
    /// and erasure disassociate them instead of refusing).
    pub fn delete_faces_with(
        &self,
        id: &str,
        face_ids: &[String],
        on: OnAssociated,
    ) -> Result<DeleteFacesResponse> {
        let outcome = self.store.delete_faces(id, face_ids, on)?;
        Ok(DeleteFacesResponse {
            deleted_faces: outcome.done.iter().map(Uuid::to_string).collect(),
            unsuccessful_face_deletions: unsuccessful(&outcome.unsuccessful),
        })
    }

    // ---- search ------------------------------------------------------

    fn check_search(threshold: f64, max: usize, limit: usize) -> Result<()> {
        if !(0.0..=100.0).contains(&threshold) {
            return Err(CollectionError::InvalidParameter(
                "FaceMatchThreshold must be between 0 and 100".into(),
            ));
        }
        if !(1..=limit).contains(&max) {
            return Err(CollectionError::InvalidParameter(format!(
                "MaxFaces must be between 1 and {limit}"
            )));
        }
        Ok(())
    }

    /// The faces within `threshold` of `embedding` (a face of `pixels`,
    /// when known), best first, at most `k`, leaving out the face with seq
    /// `exclude`.
    ///
    /// With a fair calibration the same distance means a different
    /// Similarity in different regions of embedding space, so the index is
    /// searched out to the loosest distance any region allows at `threshold`
    /// (more candidates than `k`), and the hits are then kept by their own
    /// Similarity and ranked by it. The small-face rule (kenning_core::quality)
    /// only ever lowers a pair's Similarity, so the same radius covers its
    /// matches too and the candidates are re-scored with both faces' sizes.
    fn search_vector(
        &self,
        c: &Collection,
        p: &Pipeline,
        probe: Probe<'_>,
        threshold: f64,
        k: usize,
    ) -> Result<Vec<Hit>> {
        let Probe {
            embedding,
            pixels,
            exclude,
        } = probe;
        let in_force = self.calibration(c, p)?;
        let calibration = in_force.get();
        let radius = calibration.search_radius(embedding, threshold);
        let fair = matches!(calibration, Calibration::Fair(_));
        // The rule changes nothing for a probe of unknown size.
        let rule = p.recognizer().quality_bands().filter(|_| pixels.is_some());
        let rescore = fair || rule.is_some();
        let found = self.store.nearest(
            c,
            Nearest {
                query: embedding,
                distance: p.recognizer().manifest().embedding.distance,
                k: if rescore {
                    k.saturating_mul(FAIR_SEARCH_OVERFETCH).saturating_add(16)
                } else {
                    k
                },
                max_distance: radius.is_finite().then_some(radius as f32),
                exclude,
                with_embeddings: fair,
            },
        )?;
        let scored: Vec<(usize, f32)> = match calibration {
            // The radius is the threshold's distance: every hit reaches it.
            Calibration::Global(table) if !rescore => found
                .iter()
                .enumerate()
                .take(k)
                .map(|(i, n)| (i, table.similarity(f64::from(n.distance)) as f32))
                .collect(),
            _ => {
                let scored = found
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        let s = calibration.similarity_of_faces(
                            embedding,
                            &n.embedding,
                            n.distance.into(),
                            rule,
                            [pixels, n.face.pixels],
                        );
                        (i, s as f32)
                    })
                    .collect();
                keep_best(scored, threshold, k)
            }
        };
        let mut found: Vec<Option<kenning_store::Neighbour>> =
            found.into_iter().map(Some).collect();
        Ok(scored
            .into_iter()
            .filter_map(|(i, similarity)| {
                found[i].take().map(|n| Hit {
                    face: n.face,
                    similarity,
                })
            })
            .collect())
    }

    /// SearchFaces: faces like a stored face (which is not itself returned).
    pub fn search_faces(
        &self,
        id: &str,
        face_id: &str,
        threshold: Option<f64>,
        max_faces: Option<usize>,
    ) -> Result<SearchFacesResponse> {
        let (threshold, k) = (
            threshold.unwrap_or(DEFAULT_THRESHOLD),
            max_faces.unwrap_or(DEFAULT_SEARCH_FACES),
        );
        Self::check_search(threshold, k, MAX_SEARCH_FACES)?;
        let (c, p) = self.collection(id)?;
        let (face, embedding) = self.store.face_embedding(id, face_id)?;
        let probe = Probe {
            embedding: &embedding,
            pixels: face.pixels,
            exclude: Some(face.seq),
        };
        let hits = self.search_vector(&c, &p, probe, threshold, k)?;
        Ok(SearchFacesResponse {
            searched_face_id: face.face_id.to_string(),
            face_matches: self.matches(hits, &c),
            face_model_version: c.face_model.name.clone(),
            false_match_estimate: self.estimate_for(&c, &p, threshold)?,
        })
    }

    /// SearchFacesByImage: faces like the largest face of an image.
    pub fn search_faces_by_image(
        &self,
        id: &str,
        image: &[u8],
        threshold: Option<f64>,
        max_faces: Option<usize>,
        quality: QualityFilter,
    ) -> Result<SearchFacesByImageResponse> {
        let (threshold, k) = (
            threshold.unwrap_or(DEFAULT_THRESHOLD),
            max_faces.unwrap_or(DEFAULT_SEARCH_FACES),
        );
        Self::check_search(threshold, k, MAX_SEARCH_FACES)?;
        let (c, p) = self.collection(id)?;
        let (face, pixels) = self.largest_face(&p, image, quality)?;
        let probe = Probe {
            embedding: face.embedding.as_deref().unwrap_or_default(),
            pixels: Some(pixels),
            exclude: None,
        };
        let hits = self.search_vector(&c, &p, probe, threshold, k)?;
        Ok(SearchFacesByImageResponse {
            searched_face_bounding_box: face.detail.bounding_box,
            searched_face_confidence: face.detail.confidence,
            face_matches: self.matches(hits, &c),
            face_model_version: c.face_model.name.clone(),
            false_match_estimate: self.estimate_for(&c, &p, threshold)?,
        })
    }

    /// What `threshold` means for collection `c` now, under the
    /// calibration in force for it.
    fn estimate_for(
        &self,
        c: &Collection,
        p: &Pipeline,
        threshold: f64,
    ) -> Result<FalseMatchEstimate> {
        let mut e = estimate(threshold, c.face_count);
        e.calibration = Some(self.calibration(c, p)?.describe(&c.face_model.name).label());
        e.quality_rule = p.recognizer().quality_bands().map(QualityBands::label);
        Ok(e)
    }

    /// The largest face of an image, embedded, with its size in pixels.
    fn largest_face(
        &self,
        p: &Pipeline,
        image: &[u8],
        quality: QualityFilter,
    ) -> Result<(kenning_models::Face, f32)> {
        let img = self.decode(image)?;
        let (w, h) = img.dimensions();
        let mut faces = p.detect(&img)?;
        faces.truncate(1);
        let Some(face) = faces.first() else {
            return Err(CollectionError::InvalidParameter(
                "there are no faces in the image".into(),
            ));
        };
        let reasons = quality.reasons(&face.detail, w, h);
        if !reasons.is_empty() {
            return Err(CollectionError::InvalidParameter(format!(
                "the largest face in the image does not pass the quality filter: {reasons:?}"
            )));
        }
        p.embed_faces(&img, &mut faces)?;
        let face = faces.pop().ok_or_else(|| {
            CollectionError::InvalidParameter("there are no faces in the image".into())
        })?;
        let pixels = face.pixels();
        Ok((face, pixels))
    }

    fn matches(&self, hits: Vec<Hit>, c: &Collection) -> Vec<FaceMatch> {
        hits.into_iter()
            .map(|h| FaceMatch {
                similarity: h.similarity,
                face: wire_face(&h.face, &c.face_model.name),
            })
            .collect()
    }

    // ---- users -------------------------------------------------------

    /// CreateUser.
    pub fn create_user(&self, id: &str, user_id: &str) -> Result<()> {
        self.store.create_user(id, user_id)?;
        Ok(())
    }

    /// DeleteUser (its faces stay, disassociated).
    pub fn delete_user(&self, id: &str, user_id: &str) -> Result<()> {
        self.store.delete_user(id, user_id)?;
        Ok(())
    }

    /// ListUsers.
    pub fn list_users(
        &self,
        id: &str,
        token: Option<&str>,
        max_results: Option<u32>,
    ) -> Result<ListUsersResponse> {
        let page = self.store.list_users(id, token, max_results)?;
        Ok(ListUsersResponse {
            users: page
                .items
                .iter()
                .map(|u| User {
                    user_id: u.user_id.clone(),
                    user_status: u.status.as_str().into(),
                })
                .collect(),
            next_token: page.next_token,
        })
    }

    /// AssociateFaces.
    pub fn associate_faces(
        &self,
        id: &str,
        user_id: &str,
        face_ids: &[String],
    ) -> Result<AssociateFacesResponse> {
        let o = self.store.associate_faces(id, user_id, face_ids)?;
        Ok(AssociateFacesResponse {
            associated_faces: o
                .done
                .iter()
                .map(|f| FaceIdOnly {
                    face_id: f.to_string(),
                })
                .collect(),
            unsuccessful_face_associations: unsuccessful(&o.unsuccessful),
            user_status: o.user_status.map_or("ACTIVE", |s| s.as_str()).into(),
        })
    }

    /// DisassociateFaces.
    pub fn disassociate_faces(
        &self,
        id: &str,
        user_id: &str,
        face_ids: &[String],
    ) -> Result<DisassociateFacesResponse> {
        let o = self.store.disassociate_faces(id, user_id, face_ids)?;
        Ok(DisassociateFacesResponse {
            disassociated_faces: o
                .done
                .iter()
                .map(|f| FaceIdOnly {
                    face_id: f.to_string(),
                })
                .collect(),
            unsuccessful_face_disassociations: unsuccessful(&o.unsuccessful),
            user_status: o.user_status.map_or("CREATED", |s| s.as_str()).into(),
        })
    }

    /// The users whose best face is within `threshold` of any of `probes`.
    fn users_near(
        &self,
        c: &Collection,
        p: &Pipeline,
        probes: &[Probe<'_>],
        threshold: f64,
        max_users: usize,
        skip_user: Option<&str>,
    ) -> Result<Vec<UserMatch>> {
        let mut best: HashMap<String, f32> = HashMap::new();
        for &probe in probes {
            for hit in self.search_vector(c, p, probe, threshold, MAX_SEARCH_FACES)? {
                let Some(user) = hit.face.user_id else {
                    continue;
                };
                if Some(user.as_str()) == skip_user {
                    continue;
                }
                let e = best.entry(user).or_insert(0.0);
                *e = e.max(hit.similarity);
            }
        }
        let mut users: Vec<(String, f32)> = best.into_iter().collect();
        users.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        users.truncate(max_users);
        let mut out = Vec::with_capacity(users.len());
        for (user_id, similarity) in users {
            let status = self
                .store
                .get_user(&c.id, &user_id)
                .map(|u| u.status.as_str())
                .unwrap_or("ACTIVE");
            out.push(UserMatch {
                similarity,
                user: User {
                    user_id,
                    user_status: status.into(),
                },
            });
        }
        Ok(out)
    }

    fn check_users(threshold: f64, max_users: usize) -> Result<()> {
        if !(0.0..=100.0).contains(&threshold) {
            return Err(CollectionError::InvalidParameter(
                "UserMatchThreshold must be between 0 and 100".into(),
            ));
        }
        if !(1..=MAX_SEARCH_USERS).contains(&max_users) {
            return Err(CollectionError::InvalidParameter(format!(
                "MaxUsers must be between 1 and {MAX_SEARCH_USERS}"
            )));
        }
        Ok(())
    }

    /// SearchUsers by a stored face or by a user (then every face of that
    /// user is a probe and the user itself is left out).
    pub fn search_users(
        &self,
        id: &str,
        user_id: Option<&str>,
        face_id: Option<&str>,
        threshold: Option<f64>,
        max_users: Option<usize>,
    ) -> Result<SearchUsersResponse> {
        let (threshold, max_users) = (
            threshold.unwrap_or(DEFAULT_THRESHOLD),
            max_users.unwrap_or(1),
        );
        Self::check_users(threshold, max_users)?;
        let (c, p) = self.collection(id)?;
        let (stored, searched_face, searched_user) = match (user_id, face_id) {
            (Some(u), None) => {
                let user = self.store.get_user(id, u)?;
                let mut stored = Vec::new();
                for f in &user.face_ids {
                    stored.push(self.store.face_embedding(id, &f.to_string())?);
                }
                (stored, None, Some(serde_json::json!({ "UserId": u })))
            }
            (None, Some(f)) => (
                vec![self.store.face_embedding(id, f)?],
                Some(serde_json::json!({ "FaceId": f })),
                None,
            ),
            _ => {
                return Err(CollectionError::InvalidParameter(
                    "give exactly one of UserId and FaceId".into(),
                ))
            }
        };
        let probes: Vec<Probe<'_>> = stored
            .iter()
            .map(|(face, e)| Probe {
                embedding: e,
                pixels: face.pixels,
                exclude: Some(face.seq),
            })
            .collect();
        let user_matches = self.users_near(&c, &p, &probes, threshold, max_users, user_id)?;
        Ok(SearchUsersResponse {
            user_matches,
            face_model_version: c.face_model.name.clone(),
            searched_face,
            searched_user,
            false_match_estimate: self.estimate_for(&c, &p, threshold)?,
        })
    }

    /// SearchUsersByImage: users like the largest face of an image.
    pub fn search_users_by_image(
        &self,
        id: &str,
        image: &[u8],
        threshold: Option<f64>,
        max_users: Option<usize>,
        quality: QualityFilter,
    ) -> Result<SearchUsersResponse> {
        let (threshold, max_users) = (
            threshold.unwrap_or(DEFAULT_THRESHOLD),
            max_users.unwrap_or(1),
        );
        Self::check_users(threshold, max_users)?;
        let (c, p) = self.collection(id)?;
        let (face, pixels) = self.largest_face(&p, image, quality)?;
        let probes = [Probe {
            embedding: face.embedding.as_deref().unwrap_or_default(),
            pixels: Some(pixels),
            exclude: None,
        }];
        let user_matches = self.users_near(&c, &p, &probes, threshold, max_users, None)?;
        Ok(SearchUsersResponse {
            user_matches,
            face_model_version: c.face_model.name.clone(),
            searched_face: Some(serde_json::json!({ "FaceDetail": face.detail })),
            searched_user: None,
            false_match_estimate: self.estimate_for(&c, &p, threshold)?,
        })
    }
}

/// A face to search with: its embedding, its size in source-image pixels
/// when known (for the small-face rule), and the stored face to leave out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Probe<'a> {
    pub(crate) embedding: &'a [f32],
    pub(crate) pixels: Option<f32>,
    pub(crate) exclude: Option<u64>,
}

/// What the store records of the recogniser that made a collection's vectors.
fn face_model(m: &Manifest) -> FaceModel {
    FaceModel {
        name: m.name.clone(),
        version: m.version.clone(),
    }
}

/// The distance each recogniser's vectors are compared by (by name), for a
/// backend that keeps collections of several recognisers.
pub fn distances(r: &Recognisers) -> HashMap<String, Distance> {
    r.names()
        .into_iter()
        .filter_map(|n| Some((n.to_owned(), r.manifest(n)?.embedding.distance)))
        .collect()
}

fn wire_face(f: &kenning_store::Face, version: &str) -> Face {
    Face {
        face_id: f.face_id.to_string(),
        bounding_box: f.bounding_box,
        image_id: f.image_id.to_string(),
        external_image_id: f.external_image_id.clone(),
        confidence: f.confidence,
        index_faces_model_version: version.to_owned(),
        user_id: f.user_id.clone(),
    }
}

fn unsuccessful(list: &[kenning_store::Unsuccessful]) -> Vec<UnsuccessfulFace> {
    list.iter()
        .map(|u| UnsuccessfulFace {
            face_id: u.face_id.to_string(),
            user_id: u.user_id.clone(),
            reasons: vec![u.reason.as_str().into()],
        })
        .collect()
}

/// A stored ARN as AWS writes it: `arn:aws:rekognition:...` (collections
/// stored before the `arn:` prefix was added get it here).
fn wire_arn(stored: &str) -> String {
    if stored.starts_with("arn:") {
        stored.to_owned()
    } else {
        format!("arn:{stored}")
    }
}

#[cfg(test)]
mod fair_search_tests {
    use super::keep_best;

    #[test]
    fn hits_are_kept_by_their_own_similarity_and_ranked_by_it() {
        // Nearest first, as the index returns them; Similarity is per pair.
        let scored = vec![(1, 85.0), (2, 79.9), (3, 92.0), (4, 80.0), (5, 81.0)];
        assert_eq!(
            keep_best(scored.clone(), 80.0, 10),
            vec![(3, 92.0), (1, 85.0), (5, 81.0), (4, 80.0)]
        );
        assert_eq!(
            keep_best(scored.clone(), 80.0, 2),
            vec![(3, 92.0), (1, 85.0)]
        );
        assert!(keep_best(scored, 95.0, 10).is_empty());
        // Ties keep the index order (nearest first).
        assert_eq!(
            keep_best(vec![(7, 90.0), (8, 90.0)], 80.0, 1),
            vec![(7, 90.0)]
        );
    }
}
