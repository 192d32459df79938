//! Searching a collection with faces that did not arrive as a client's image:
//! the faces of video frames, aligned and embedded with the collection's own
//! recogniser and matched exactly as SearchFacesByImage matches.

use std::sync::Arc;

use kenning_image::RgbImage;
use kenning_models::{Face, Pipeline};
use kenning_store::Collection;

use crate::api::{FaceMatch, FalseMatchEstimate};
use crate::{estimate, CollectionError, Collections, Result, MAX_SEARCH_FACES};

/// One collection, ready to be searched with faces found elsewhere (video
/// frames, streams). Crops and embeddings it makes are returned to the
/// caller and never stored.
pub struct FaceSearcher<'a> {
    collections: &'a Collections,
    collection: Collection,
    pipeline: Arc<Pipeline>,
}

impl Collections {
    /// A searcher for collection `id`, which must hold vectors of a
    /// recogniser this service runs; it detects, aligns, embeds and scores
    /// with that recogniser.
    pub fn searcher(&self, id: &str) -> Result<FaceSearcher<'_>> {
        let (collection, pipeline) = self.collection(id)?;
        Ok(FaceSearcher {
            collections: self,
            collection,
            pipeline,
        })
    }
}

impl FaceSearcher<'_> {
    /// The collection's id.
    pub fn collection_id(&self) -> &str {
        &self.collection.id
    }

    /// The recogniser whose vectors the collection holds.
    pub fn face_model_version(&self) -> &str {
        &self.collection.face_model.name
    }

    /// What `threshold` means at the collection's size when the searcher was made.
    pub fn estimate(&self, threshold: f64) -> FalseMatchEstimate {
        self.collections
            .estimate_for(&self.collection, &self.pipeline, threshold)
            .unwrap_or_else(|_| estimate(threshold, self.collection.face_count))
    }

    /// The collection's recogniser: the pipeline whose detections carry the
    /// landmarks its alignment needs.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The face cut out of `image` and aligned as the collection's recogniser
    /// expects it (`face` detected by [`FaceSearcher::pipeline`]).
    pub fn align(&self, image: &RgbImage, face: &Face) -> RgbImage {
        self.pipeline.align_face(image, face)
    }

    /// Embeds aligned crops (from [`FaceSearcher::align`]) in one batch.
    pub fn embed(&self, crops: &[RgbImage]) -> Result<Vec<Vec<f32>>> {
        Ok(self.pipeline.recognizer().embed(crops)?)
    }

    /// The mean of several embeddings of one face (a template), in the
    /// recogniser's space: unit length again for a cosine recogniser.
    pub fn mean(&self, embeddings: &[Vec<f32>]) -> Vec<f32> {
        let dim = embeddings.first().map_or(0, Vec::len);
        let mut m = vec![0f32; dim];
        for e in embeddings {
            for (a, x) in m.iter_mut().zip(e) {
                *a += x / embeddings.len() as f32;
            }
        }
        let cosine = matches!(
            self.pipeline.recognizer().manifest().embedding.distance,
            kenning_models::manifest::Distance::Cosine
        );
        let norm = m.iter().map(|x| x * x).sum::<f32>().sqrt();
        if cosine && norm > 0.0 {
            m.iter_mut().for_each(|x| *x /= norm);
        }
        m
    }

    /// The calibrated Similarity (0-100) of two of the recogniser's
    /// embeddings of faces of `pixels` (`None` where unknown), with the
    /// small-face rule.
    pub fn similarity(&self, a: &[f32], b: &[f32], pixels: [Option<f32>; 2]) -> Result<f64> {
        let recognizer = self.pipeline.recognizer();
        let distance = recognizer.distance(a, b);
        let in_force = self
            .collections
            .calibration(&self.collection, &self.pipeline)?;
        Ok(in_force
            .get()
            .similarity_of_faces(a, b, distance, recognizer.quality_bands(), pixels))
    }

    /// The collection's faces at or above `threshold` Similarity to
    /// `embedding` (of a face of `pixels`, when known), best first, at most
    /// `max_faces`: the matches SearchFacesByImage would return for a face
    /// with this embedding.
    pub fn search(
        &self,
        embedding: &[f32],
        pixels: Option<f32>,
        threshold: f64,
        max_faces: usize,
    ) -> Result<Vec<FaceMatch>> {
        Collections::check_search(threshold, max_faces, MAX_SEARCH_FACES)?;
        if embedding.len() != self.collection.dim as usize {
            return Err(CollectionError::InvalidParameter(format!(
                "a {}-d embedding for collection {} of {}-d vectors",
                embedding.len(),
                self.collection.id,
                self.collection.dim
            )));
        }
        let probe = crate::Probe {
            embedding,
            pixels,
            exclude: None,
        };
        let hits = self.collections.search_vector(
            &self.collection,
            &self.pipeline,
            probe,
            threshold,
            max_faces,
        )?;
        Ok(self.collections.matches(hits, &self.collection))
    }
}
