//! The storage interface the layers above use for everything about
//! collections, faces and users, whichever backend keeps them: the embedded
//! one ([`crate::Embedded`]: redb plus Kenning's own index, in a data
//! directory) or PostgreSQL with pgvector (`kenning-postgres`).
//!
//! Every mutating call is one transaction in which the backend also writes
//! the audit record of the change (through the [`Auditor`] installed with
//! [`FaceStore::set_auditor`]): both commit, or neither does.

use std::sync::Arc;

use kenning_audit::{Entry, Trail};
use kenning_core::fair::Distance;

use crate::error::Result;
use crate::hook::Change;
use crate::types::*;

/// Writes the audit record of each change, inside the change's transaction.
pub trait Auditor: Send + Sync {
    /// The audit entry that records `change`.
    fn entry(&self, change: &Change<'_>) -> Entry;
    /// Told the seq of the record written for the change (before its commit).
    fn recorded(&self, seq: u64);
}

/// A face near a query, with its full-precision embedding when asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbour {
    /// The face.
    pub face: Face,
    /// Exact distance to the query under the collection's metric, computed
    /// by [`exact_distance`] so every backend reports the same bits.
    pub distance: f32,
    /// The stored embedding (empty unless asked for).
    pub embedding: Vec<f32>,
}

/// What a nearest-neighbour search asks for.
#[derive(Debug, Clone, Copy)]
pub struct Nearest<'a> {
    /// The query embedding.
    pub query: &'a [f32],
    /// How distances are measured (the collection's recogniser's).
    pub distance: Distance,
    /// At most this many neighbours.
    pub k: usize,
    /// Only neighbours within this distance.
    pub max_distance: Option<f32>,
    /// Leave out the face with this seq (the probe itself, for SearchFaces).
    pub exclude: Option<u64>,
    /// Return each neighbour's stored embedding (fair calibration needs it).
    pub with_embeddings: bool,
}

/// The exact distance between a query and a stored embedding, as both
/// backends report it (the embedded index computes the same in its re-rank).
pub fn exact_distance(distance: Distance, a: &[f32], b: &[f32]) -> f32 {
    kenning_index::exact_distance(metric(distance), a, b)
}

/// The index metric of a distance.
pub(crate) fn metric(distance: Distance) -> kenning_index::Metric {
    match distance {
        Distance::Euclidean => kenning_index::Metric::Euclidean,
        Distance::Cosine => kenning_index::Metric::Cosine,
    }
}

/// Collections, faces, embeddings and users of one node (or of many nodes
/// sharing one database), with nearest-neighbour search over the embeddings.
///
/// Calls validate their arguments as Rekognition does and report the same
/// [`crate::StoreError`]s on every backend; the conformance suite
/// (`kenning-postgres/tests/conformance.rs`) runs unchanged against each.
pub trait FaceStore: Send + Sync {
    /// Installs the auditor every later change is recorded through.
    fn set_auditor(&self, auditor: Arc<dyn Auditor>);
    /// The audit trail changes are recorded in (the same one the node's
    /// other records go to).
    fn audit(&self) -> Arc<dyn Trail>;
    /// A short description for messages (a path, or a URL without password).
    fn location(&self) -> String;

    /// CreateCollection, for vectors compared by `distance`. Fails with
    /// `CollectionExists` or an id/parameter error.
    fn create_collection(&self, new: NewCollection, distance: Distance) -> Result<Collection>;
    /// DescribeCollection.
    fn describe_collection(&self, id: &str) -> Result<Collection>;
    /// ListCollections in id order; `max_results` 1-4096, default 1000.
    fn list_collections(
        &self,
        token: Option<&str>,
        max_results: Option<u32>,
    ) -> Result<Page<Collection>>;
    /// DeleteCollection with all its faces, vectors and users; returns the
    /// record as it was.
    fn delete_collection(&self, id: &str) -> Result<Collection>;
    /// Replaces a collection's policy document.
    fn set_policy(&self, id: &str, policy: &str) -> Result<Collection>;
    /// Sets a collection's own calibration (an opaque document the
    /// collections layer writes), or with `None` removes it so the shipped
    /// calibration is in force again. Audited as a change.
    fn set_calibration(&self, id: &str, calibration: Option<&str>) -> Result<Collection>;
    /// A collection's own calibration document, if one is set.
    fn calibration(&self, id: &str) -> Result<Option<String>>;

    /// IndexFaces' write: adds the faces in one transaction and returns them
    /// with their new FaceIds and seq ids. Refuses vectors of another model.
    fn add_faces(
        &self,
        collection: &str,
        model: &FaceModel,
        faces: Vec<NewFace>,
    ) -> Result<Vec<Face>>;
    /// Faces by FaceId (up to 4096), in request order; `None` where absent.
    fn get_faces(&self, collection: &str, face_ids: &[String]) -> Result<Vec<Option<Face>>>;
    /// A face and its embedding (SearchFaces by FaceId).
    fn face_embedding(&self, collection: &str, face_id: &str) -> Result<(Face, Vec<f32>)>;
    /// ListFaces in seq order, optionally only a user's; `max_results`
    /// 1-4096, default 1000.
    fn list_faces(
        &self,
        collection: &str,
        user_id: Option<&str>,
        token: Option<&str>,
        max_results: Option<u32>,
    ) -> Result<Page<Face>>;
    /// DeleteFaces (1-4096 ids, one transaction).
    fn delete_faces(
        &self,
        collection: &str,
        face_ids: &[String],
        on_associated: OnAssociated,
    ) -> Result<BatchOutcome>;
    /// Records that searches matched these faces at `at_ms` (times never go
    /// back); returns how many changed.
    fn touch_faces(&self, collection: &str, seqs: &[u64], at_ms: u64) -> Result<usize>;
    /// Retention query: up to `limit` faces matching `expiry`, oldest first.
    fn expired_faces(&self, collection: &str, expiry: Expiry, limit: usize) -> Result<Vec<Face>>;

    /// CreateUser.
    fn create_user(&self, collection: &str, user_id: &str) -> Result<User>;
    /// One user with its faces.
    fn get_user(&self, collection: &str, user_id: &str) -> Result<User>;
    /// DeleteUser: its faces stay, disassociated.
    fn delete_user(&self, collection: &str, user_id: &str) -> Result<User>;
    /// ListUsers in id order; `max_results` 1-500, default 500.
    fn list_users(
        &self,
        collection: &str,
        token: Option<&str>,
        max_results: Option<u32>,
    ) -> Result<Page<User>>;
    /// AssociateFaces (1-100 ids).
    fn associate_faces(
        &self,
        collection: &str,
        user_id: &str,
        face_ids: &[String],
    ) -> Result<BatchOutcome>;
    /// DisassociateFaces (1-100 ids).
    fn disassociate_faces(
        &self,
        collection: &str,
        user_id: &str,
        face_ids: &[String],
    ) -> Result<BatchOutcome>;

    /// The faces nearest to a query, ascending by exact distance (ties by seq).
    fn nearest(&self, collection: &Collection, query: Nearest<'_>) -> Result<Vec<Neighbour>>;

    /// Physically erases what deletions left behind (freed pages, index
    /// tombstones) since the last call; cheap when nothing was deleted.
    fn erase(&self) -> Result<()>;
    /// Saves derived data (index files) so the next start does not rebuild it.
    fn flush(&self) -> Result<()>;
    /// Checks every collection's records against each other and its counters.
    fn verify(&self) -> Result<VerifyReport>;
}
