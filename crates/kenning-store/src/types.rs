//! Public records, the validation rules Rekognition applies to ids, and the
//! compact on-disk encodings behind them.

use kenning_core::BoundingBox;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Result, StoreError};

/// Rekognition's limit on faces per user.
pub const MAX_FACES_PER_USER: usize = 100;
/// Most FaceIds one AssociateFaces/DisassociateFaces call may name.
pub const MAX_ASSOCIATE_IDS: usize = 100;
/// Most FaceIds one DeleteFaces call may name.
pub const MAX_DELETE_IDS: usize = 4096;
/// Largest MaxResults of ListFaces and ListCollections.
pub const MAX_LIST_RESULTS: u32 = 4096;
/// Largest MaxResults of ListUsers.
pub const MAX_LIST_USERS: u32 = 500;
/// MaxResults when the caller gives none (ListFaces, ListCollections).
pub const DEFAULT_LIST_RESULTS: u32 = 1000;

/// The recogniser that made a collection's vectors (manifest name and version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaceModel {
    /// Manifest name, e.g. `dlib-resnet-v1`.
    pub name: String,
    /// Manifest version.
    pub version: String,
}

impl std::fmt::Display for FaceModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.name, self.version)
    }
}

/// What CreateCollection needs.
#[derive(Debug, Clone)]
pub struct NewCollection {
    /// Collection id (validated: `[a-zA-Z0-9_.\-]+`, 1-255).
    pub id: String,
    /// The recogniser whose vectors this collection accepts.
    pub face_model: FaceModel,
    /// Embedding dimension of that recogniser.
    pub dim: u32,
    /// Opaque policy document (JSON defined by the policy layer).
    pub policy: String,
}

/// A collection as stored, with its counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Collection {
    /// Collection id.
    pub id: String,
    /// Rekognition-style ARN (`arn:aws:rekognition:local:000000000000:collection/<id>`;
    /// collections created before 0.1 lack the leading `arn:`, which the
    /// collections layer adds on the way out).
    pub arn: String,
    /// Creation time, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// The recogniser that made its vectors.
    pub face_model: FaceModel,
    /// Embedding dimension.
    pub dim: u32,
    /// Opaque policy document.
    pub policy: String,
    /// Number of faces (FaceCount).
    pub face_count: u64,
    /// Number of users (UserCount).
    pub user_count: u64,
    /// Changes whenever the set of (seq, embedding) pairs changes. Values come
    /// from one store-wide clock, so they strictly increase per collection and
    /// a re-created collection never repeats an old value: an index file saved
    /// at generation G is current exactly when the collection still says G.
    pub generation: u64,
    /// The seq id the next face will get; seq ids are never reused.
    pub next_seq: u64,
}

/// One face to add (IndexFaces output of the pipeline).
#[derive(Debug, Clone)]
pub struct NewFace {
    /// The image the face came from (shared by faces of one image).
    pub image_id: Uuid,
    /// Caller's image label, `[a-zA-Z0-9_.\-:]+`, 1-255.
    pub external_image_id: Option<String>,
    /// Where the face is, as fractions of the image.
    pub bounding_box: BoundingBox,
    /// Detector confidence, 0-100.
    pub confidence: f32,
    /// The embedding; its length must equal the collection's dimension.
    pub embedding: Vec<f32>,
    /// Indexing time in ms; `None` means now. Set it for imports and tests.
    pub indexed_at_ms: Option<u64>,
    /// The face's size in source-image pixels: the shorter side of the
    /// detector's box (what QualityFilter's size bar measures). `None` when
    /// unknown; search then scores the face without the small-face rule.
    pub pixels: Option<f32>,
}

impl NewFace {
    /// The stored face this becomes under `face_id` at position `seq`,
    /// indexed at `now_ms` unless the caller set a time.
    pub fn to_face(&self, face_id: Uuid, seq: u64, now_ms: u64) -> Face {
        Face {
            face_id,
            image_id: self.image_id,
            external_image_id: self.external_image_id.clone(),
            bounding_box: self.bounding_box,
            confidence: self.confidence,
            indexed_at_ms: self.indexed_at_ms.unwrap_or(now_ms),
            last_matched_at_ms: None,
            user_id: None,
            seq,
            pixels: self.pixels,
        }
    }
}

/// A stored face's metadata (the embedding is fetched separately, since
/// listings and search results rarely need it).
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    /// FaceId (UUID v4).
    pub face_id: Uuid,
    /// ImageId.
    pub image_id: Uuid,
    /// ExternalImageId, if given.
    pub external_image_id: Option<String>,
    /// Bounding box in the source image.
    pub bounding_box: BoundingBox,
    /// Detector confidence.
    pub confidence: f32,
    /// When it was indexed, ms.
    pub indexed_at_ms: u64,
    /// When a search last matched it, ms.
    pub last_matched_at_ms: Option<u64>,
    /// The user it is associated with.
    pub user_id: Option<String>,
    /// Internal id used by the vector index; stable, never reused in a collection.
    pub seq: u64,
    /// Shorter side of the detector's box in source-image pixels, as
    /// [`NewFace::pixels`]; `None` for faces indexed before sizes were
    /// stored (they score as before: kenning_core::quality).
    pub pixels: Option<f32>,
}

/// Rekognition's UserStatus, as far as a synchronous store has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserStatus {
    /// Created, no faces associated.
    Created,
    /// At least one face associated.
    Active,
}

impl UserStatus {
    /// The wire name (`CREATED`, `ACTIVE`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "CREATED",
            Self::Active => "ACTIVE",
        }
    }
    fn of(faces: &[[u8; 16]]) -> Self {
        user_status(faces.len())
    }
}

/// A user and its faces.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    /// UserId.
    pub user_id: String,
    /// Status.
    pub status: UserStatus,
    /// Creation time, ms.
    pub created_at_ms: u64,
    /// Associated faces, in association order.
    pub face_ids: Vec<Uuid>,
}

/// Why a face in a batch request was not processed (Rekognition's reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaceReason {
    /// No such face in the collection.
    FaceNotFound,
    /// DeleteFaces: the face belongs to a user (disassociate first).
    AssociatedToAnExistingUser,
    /// Associate/Disassociate: the face belongs to another user.
    AssociatedToADifferentUser,
}

impl FaceReason {
    /// The wire name, e.g. `FACE_NOT_FOUND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FaceNotFound => "FACE_NOT_FOUND",
            Self::AssociatedToAnExistingUser => "ASSOCIATED_TO_AN_EXISTING_USER",
            Self::AssociatedToADifferentUser => "ASSOCIATED_TO_A_DIFFERENT_USER",
        }
    }
}

/// A face a batch request could not process.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsuccessful {
    /// The FaceId as given.
    pub face_id: Uuid,
    /// The user it is associated with, when that is the reason.
    pub user_id: Option<String>,
    /// Why.
    pub reason: FaceReason,
}

/// Outcome of DeleteFaces, AssociateFaces or DisassociateFaces.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BatchOutcome {
    /// Faces processed, in request order.
    pub done: Vec<Uuid>,
    /// Faces not processed, with reasons.
    pub unsuccessful: Vec<Unsuccessful>,
    /// For user operations: the user's status afterwards.
    pub user_status: Option<UserStatus>,
}

/// What DeleteFaces does with a face that belongs to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnAssociated {
    /// Rekognition's behaviour: leave it, report ASSOCIATED_TO_AN_EXISTING_USER.
    Refuse,
    /// Disassociate and delete (retention and erasure must not be blocked).
    Disassociate,
}

/// Which faces a retention pass is after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Indexed before this time (ms).
    IndexedBefore(u64),
    /// Last matched before this time (ms); a never-matched face counts from
    /// its indexing time.
    LastMatchedBefore(u64),
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Token for the next page; `None` at the end.
    pub next_token: Option<String>,
}

/// Keeps the first `max` items and returns a token made from the last kept
/// one when there were more (every backend's list operations page alike).
pub fn paginate<T>(mut items: Vec<T>, max: usize, token_of: impl Fn(&T) -> String) -> Page<T> {
    let more = items.len() > max;
    items.truncate(max);
    let next_token = if more {
        items.last().map(token_of)
    } else {
        None
    };
    Page { items, next_token }
}

/// Result of [`crate::Store::verify`]: cross-table consistency of every collection.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VerifyReport {
    /// Collections checked.
    pub collections: usize,
    /// Faces seen.
    pub faces: u64,
    /// Users seen.
    pub users: u64,
    /// Every inconsistency found; empty when healthy.
    pub problems: Vec<String>,
}

// ---------------------------------------------------------------- validation

/// What an identifier may be: 1 to `max` characters of `[a-zA-Z0-9_.\-]`
/// and `extra`. The one description of the rule: validation checks it and
/// the OpenAPI document publishes it (as `maxLength` and `pattern`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRule {
    /// The most characters.
    pub max: usize,
    /// Characters allowed beyond letters, digits, `_`, `.` and `-`.
    pub extra: &'static str,
}

/// Rekognition's CollectionId: `[a-zA-Z0-9_.\-]+`, 1-255.
pub const COLLECTION_ID: IdRule = IdRule {
    max: 255,
    extra: "",
};
/// Rekognition's UserId: `[a-zA-Z0-9_.\-:]+`, 1-128.
pub const USER_ID: IdRule = IdRule {
    max: 128,
    extra: ":",
};
/// Rekognition's ExternalImageId: `[a-zA-Z0-9_.\-:]+`, 1-255.
pub const EXTERNAL_IMAGE_ID: IdRule = IdRule {
    max: 255,
    extra: ":",
};

impl IdRule {
    /// Whether `s` follows the rule.
    pub fn accepts(&self, s: &str) -> bool {
        (1..=self.max).contains(&s.len())
            && s.bytes().all(|b| {
                b.is_ascii_alphanumeric()
                    || b"_.-".contains(&b)
                    || self.extra.as_bytes().contains(&b)
            })
    }

    /// The rule's characters as an ECMA-262 regular expression (OpenAPI's
    /// `pattern`); the length is `maxLength`.
    pub fn pattern(&self) -> String {
        format!("^[a-zA-Z0-9_.\\-{}]+$", self.extra)
    }
}

/// Checks a collection id against [`COLLECTION_ID`].
pub fn validate_collection_id(id: &str) -> Result<()> {
    COLLECTION_ID
        .accepts(id)
        .then_some(())
        .ok_or_else(|| StoreError::InvalidCollectionId(id.into()))
}

/// Checks a user id against [`USER_ID`].
pub fn validate_user_id(id: &str) -> Result<()> {
    USER_ID
        .accepts(id)
        .then_some(())
        .ok_or_else(|| StoreError::InvalidUserId(id.into()))
}

/// Checks an ExternalImageId against [`EXTERNAL_IMAGE_ID`].
pub fn validate_external_image_id(id: &str) -> Result<()> {
    EXTERNAL_IMAGE_ID
        .accepts(id)
        .then_some(())
        .ok_or_else(|| StoreError::InvalidExternalImageId(id.into()))
}

/// Parses a FaceId (any UUID; Rekognition's are v4).
pub fn parse_face_id(id: &str) -> Result<Uuid> {
    Uuid::try_parse(id).map_err(|_| StoreError::InvalidFaceId(id.into()))
}

/// Parses the FaceIds of a batch request: 1 to `max` UUIDs, duplicates
/// dropped (they would double-count), first occurrence kept.
pub fn parse_face_ids<S: AsRef<str>>(
    ids: &[S],
    what: &'static str,
    max: usize,
) -> Result<Vec<Uuid>> {
    if ids.is_empty() || ids.len() > max {
        return Err(StoreError::BadItemCount {
            what,
            max,
            got: ids.len(),
        });
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let id = parse_face_id(id.as_ref())?;
        // Duplicates would double-count in counters; keep the first.
        if !out.contains(&id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// A listing's page size: `default` when not given, else 1 to `max`.
pub fn check_max_results(given: Option<u32>, default: u32, max: u32) -> Result<usize> {
    match given.unwrap_or(default) {
        n @ 1.. if n <= max => Ok(n as usize),
        got => Err(StoreError::InvalidMaxResults { max, got }),
    }
}

// ---------------------------------------------------------------- rules every backend applies

impl NewCollection {
    /// Checks the id, the dimension and the model name.
    pub fn validate(&self) -> Result<()> {
        validate_collection_id(&self.id)?;
        if self.dim == 0 || self.dim > 65_536 {
            return Err(StoreError::InvalidParameter(format!(
                "dimension {} out of range",
                self.dim
            )));
        }
        if self.face_model.name.is_empty() {
            return Err(StoreError::InvalidParameter(
                "face model name is empty".into(),
            ));
        }
        Ok(())
    }
}

/// The ARN a collection gets.
pub fn collection_arn(id: &str) -> String {
    format!("arn:aws:rekognition:local:000000000000:collection/{id}")
}

/// Checks faces before they are stored: ExternalImageIds and finite numbers.
pub fn validate_new_faces(faces: &[NewFace]) -> Result<()> {
    for f in faces {
        if let Some(e) = &f.external_image_id {
            validate_external_image_id(e)?;
        }
        if !f.embedding.iter().all(|x| x.is_finite()) || !f.confidence.is_finite() {
            return Err(StoreError::InvalidParameter(
                "non-finite embedding or confidence".into(),
            ));
        }
    }
    Ok(())
}

/// Checks that faces of `model` fit collection `c` (same recogniser, same
/// dimension).
pub fn check_faces_fit(c: &Collection, model: &FaceModel, faces: &[NewFace]) -> Result<()> {
    if &c.face_model != model {
        return Err(StoreError::ModelMismatch {
            collection: c.id.clone(),
            expected: c.face_model.to_string(),
            got: model.to_string(),
        });
    }
    if let Some(f) = faces.iter().find(|f| f.embedding.len() != c.dim as usize) {
        return Err(StoreError::DimensionMismatch {
            expected: c.dim,
            got: f.embedding.len(),
        });
    }
    Ok(())
}

/// A face as a batch operation finds it: its seq and its user.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The face's seq.
    pub seq: u64,
    /// The user it is associated with.
    pub user_id: Option<String>,
}

/// DeleteFaces' decisions: the outcome, and the faces to delete with their
/// users (to be disassociated first).
pub fn plan_delete(
    ids: Vec<Uuid>,
    on_associated: OnAssociated,
    mut find: impl FnMut(Uuid) -> Result<Option<Found>>,
) -> Result<(BatchOutcome, Vec<(Uuid, Found)>)> {
    let mut out = BatchOutcome::default();
    let mut delete = Vec::new();
    for id in ids {
        match find(id)? {
            None => out.unsuccessful.push(Unsuccessful {
                face_id: id,
                user_id: None,
                reason: FaceReason::FaceNotFound,
            }),
            Some(f) if f.user_id.is_some() && on_associated == OnAssociated::Refuse => {
                out.unsuccessful.push(Unsuccessful {
                    face_id: id,
                    user_id: f.user_id,
                    reason: FaceReason::AssociatedToAnExistingUser,
                })
            }
            Some(f) => {
                out.done.push(id);
                delete.push((id, f));
            }
        }
    }
    Ok((out, delete))
}

/// AssociateFaces' decisions for a user that has `user_faces` faces: the
/// outcome (all but `user_status`) and the faces to associate. Exceeding
/// [`MAX_FACES_PER_USER`] fails the whole call.
pub fn plan_associate(
    user_id: &str,
    user_faces: usize,
    ids: Vec<Uuid>,
    mut find: impl FnMut(Uuid) -> Result<Option<Found>>,
) -> Result<(BatchOutcome, Vec<(Uuid, u64)>)> {
    let mut out = BatchOutcome::default();
    let mut fresh = Vec::new();
    for id in ids {
        match find(id)? {
            None => out.unsuccessful.push(Unsuccessful {
                face_id: id,
                user_id: None,
                reason: FaceReason::FaceNotFound,
            }),
            Some(f) if f.user_id.as_deref() == Some(user_id) => out.done.push(id),
            Some(f) if f.user_id.is_some() => out.unsuccessful.push(Unsuccessful {
                face_id: id,
                user_id: f.user_id,
                reason: FaceReason::AssociatedToADifferentUser,
            }),
            Some(f) => fresh.push((id, f.seq)),
        }
    }
    let would_have = user_faces + fresh.len();
    if would_have > MAX_FACES_PER_USER {
        return Err(StoreError::UserFaceLimit {
            user: user_id.into(),
            would_have,
            limit: MAX_FACES_PER_USER,
        });
    }
    out.done.extend(fresh.iter().map(|f| f.0));
    Ok((out, fresh))
}

/// DisassociateFaces' decisions: the outcome (all but `user_status`) and the
/// faces to disassociate. A face associated with nobody counts as done (the
/// caller's intent holds); another user's face is reported.
pub fn plan_disassociate(
    user_id: &str,
    ids: Vec<Uuid>,
    mut find: impl FnMut(Uuid) -> Result<Option<Found>>,
) -> Result<(BatchOutcome, Vec<(Uuid, u64)>)> {
    let mut out = BatchOutcome::default();
    let mut clear = Vec::new();
    for id in ids {
        match find(id)? {
            None => out.unsuccessful.push(Unsuccessful {
                face_id: id,
                user_id: None,
                reason: FaceReason::FaceNotFound,
            }),
            Some(f) if f.user_id.as_deref().is_some_and(|u| u != user_id) => {
                out.unsuccessful.push(Unsuccessful {
                    face_id: id,
                    user_id: f.user_id,
                    reason: FaceReason::AssociatedToADifferentUser,
                })
            }
            Some(f) => {
                if f.user_id.is_some() {
                    clear.push((id, f.seq));
                }
                out.done.push(id);
            }
        }
    }
    Ok((out, clear))
}

/// A user's status from how many faces it has.
pub fn user_status(faces: usize) -> UserStatus {
    if faces == 0 {
        UserStatus::Created
    } else {
        UserStatus::Active
    }
}

// ---------------------------------------------------------------- rows on disk

/// Face metadata row. postcard varint-encodes the integers, so a typical row
/// is ~60 bytes; the embedding lives in its own table as raw f32.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FaceRow {
    pub face_id: [u8; 16],
    pub image_id: [u8; 16],
    pub external_image_id: Option<String>,
    pub bbox: [f32; 4],
    pub confidence: f32,
    pub indexed_at_ms: u64,
    pub last_matched_at_ms: Option<u64>,
    pub user_id: Option<String>,
    /// Last, so a row written before sizes were stored (which ends after
    /// `user_id`) is still read: [`decode_face_row`].
    pub pixels: Option<f32>,
}

/// The layout of a face row before face sizes were stored.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct FaceRowV1 {
    face_id: [u8; 16],
    image_id: [u8; 16],
    external_image_id: Option<String>,
    bbox: [f32; 4],
    confidence: f32,
    indexed_at_ms: u64,
    last_matched_at_ms: Option<u64>,
    user_id: Option<String>,
}

/// Reads a face row of either layout (a row without a size has `pixels`
/// `None`). postcard is not self-describing, so the old layout is tried
/// when the new one runs out of bytes.
pub(crate) fn decode_face_row(bytes: &[u8]) -> Result<FaceRow> {
    decode::<FaceRow>(bytes, "face").or_else(|e| {
        let Ok(v1) = postcard::from_bytes::<FaceRowV1>(bytes) else {
            return Err(e);
        };
        Ok(FaceRow {
            face_id: v1.face_id,
            image_id: v1.image_id,
            external_image_id: v1.external_image_id,
            bbox: v1.bbox,
            confidence: v1.confidence,
            indexed_at_ms: v1.indexed_at_ms,
            last_matched_at_ms: v1.last_matched_at_ms,
            user_id: v1.user_id,
            pixels: None,
        })
    })
}

impl FaceRow {
    pub fn to_face(&self, seq: u64) -> Face {
        let [width, height, left, top] = self.bbox;
        Face {
            face_id: Uuid::from_bytes(self.face_id),
            image_id: Uuid::from_bytes(self.image_id),
            external_image_id: self.external_image_id.clone(),
            bounding_box: BoundingBox {
                width,
                height,
                left,
                top,
            },
            confidence: self.confidence,
            indexed_at_ms: self.indexed_at_ms,
            last_matched_at_ms: self.last_matched_at_ms,
            user_id: self.user_id.clone(),
            seq,
            pixels: self.pixels,
        }
    }
    /// The time retention by last match counts from.
    pub fn activity_ms(&self) -> u64 {
        self.last_matched_at_ms.unwrap_or(self.indexed_at_ms)
    }
}

/// User row: FaceIds as raw bytes (postcard writes `[u8; 16]` without a
/// length prefix) in association order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct UserRow {
    pub created_at_ms: u64,
    pub faces: Vec<[u8; 16]>,
}

impl UserRow {
    pub fn to_user(&self, user_id: &str) -> User {
        User {
            user_id: user_id.into(),
            status: UserStatus::of(&self.faces),
            created_at_ms: self.created_at_ms,
            face_ids: self.faces.iter().map(|&f| Uuid::from_bytes(f)).collect(),
        }
    }
    pub fn status(&self) -> UserStatus {
        UserStatus::of(&self.faces)
    }
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("postcard encoding into a Vec cannot fail")
}

pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

/// Embeddings are stored as raw little-endian f32: 4 bytes a value, no
/// framing, so 128-d costs 512 bytes and decodes without a parser.
pub(crate) fn encode_vector(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(crate) fn decode_vector(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

// ---------------------------------------------------------------- tokens

/// Tokens are hex of a kind byte and the position to resume after, so they
/// stay opaque ASCII and a token from one listing is refused by another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// ListCollections (resumes after a collection id).
    Collections = b'C' as isize,
    /// ListFaces (resumes after a seq).
    Faces = b'F' as isize,
    /// ListUsers (resumes after a user id).
    Users = b'U' as isize,
}

/// A page token of `kind` resuming after `after`.
pub fn make_token(kind: TokenKind, after: &[u8]) -> String {
    std::iter::once(kind as u8)
        .chain(after.iter().copied())
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What a page token of `kind` resumes after; `InvalidToken` for anything
/// else (another listing's token included).
pub fn read_token(kind: TokenKind, token: &str) -> Result<Vec<u8>> {
    // ASCII-only makes the two-byte slicing below safe.
    if !token.is_ascii() || !token.len().is_multiple_of(2) || !(2..=1024).contains(&token.len()) {
        return Err(StoreError::InvalidToken);
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
        .collect::<std::result::Result<Vec<u8>, _>>()
        .map_err(|_| StoreError::InvalidToken)?;
    match bytes.split_first() {
        Some((&k, rest)) if k == kind as u8 => Ok(rest.to_vec()),
        _ => Err(StoreError::InvalidToken),
    }
}

/// The seq a ListFaces token resumes after.
pub fn read_seq_token(token: &str) -> Result<u64> {
    let b = read_token(TokenKind::Faces, token)?;
    Ok(u64::from_be_bytes(
        b.try_into().map_err(|_| StoreError::InvalidToken)?,
    ))
}

/// The id a ListCollections or ListUsers token resumes after.
pub fn read_str_token(kind: TokenKind, token: &str) -> Result<String> {
    String::from_utf8(read_token(kind, token)?).map_err(|_| StoreError::InvalidToken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_patterns() {
        assert!(validate_collection_id("a.b-c_9").is_ok());
        assert!(validate_collection_id("").is_err());
        assert!(validate_collection_id("a:b").is_err());
        assert!(validate_collection_id(&"x".repeat(255)).is_ok());
        assert!(validate_collection_id(&"x".repeat(256)).is_err());
        assert!(validate_collection_id("é").is_err());
        assert!(validate_user_id("u:1").is_ok());
        assert!(validate_user_id(&"u".repeat(129)).is_err());
        assert!(validate_external_image_id("img:1.jpg").is_ok());
        assert!(validate_external_image_id("a b").is_err());
        assert_eq!(COLLECTION_ID.pattern(), r"^[a-zA-Z0-9_.\-]+$");
        assert_eq!(USER_ID.pattern(), r"^[a-zA-Z0-9_.\-:]+$");
        assert!(parse_face_id("nope").is_err());
    }

    #[test]
    fn tokens_round_trip_and_reject_foreign_kinds() {
        let t = make_token(TokenKind::Faces, &42u64.to_be_bytes());
        assert_eq!(read_seq_token(&t).unwrap(), 42);
        assert!(read_token(TokenKind::Users, &t).is_err());
        assert!(read_seq_token("zz").is_err());
        assert!(read_seq_token("4").is_err());
        assert!(read_seq_token("").is_err());
        let t = make_token(TokenKind::Users, b"bob");
        assert_eq!(read_str_token(TokenKind::Users, &t).unwrap(), "bob");
    }

    #[test]
    fn max_results_bounds() {
        assert_eq!(check_max_results(None, 1000, 4096).unwrap(), 1000);
        assert_eq!(check_max_results(Some(4096), 1000, 4096).unwrap(), 4096);
        assert!(check_max_results(Some(0), 1000, 4096).is_err());
        assert!(check_max_results(Some(4097), 1000, 4096).is_err());
    }

    #[test]
    fn vectors_are_raw_le_f32_and_rows_are_small() {
        let v = [1.5f32, -0.25, f32::MIN_POSITIVE];
        let b = encode_vector(&v);
        assert_eq!(b.len(), 12);
        assert_eq!(decode_vector(&b), v);
        let row = FaceRow {
            face_id: [0xff; 16],
            image_id: [0xff; 16],
            external_image_id: Some("photo-0001.jpg".into()),
            bbox: [0.1; 4],
            confidence: 99.9,
            indexed_at_ms: 1_800_000_000_000,
            last_matched_at_ms: None,
            user_id: None,
            pixels: Some(84.5),
        };
        assert!(encode(&row).len() < 90, "{}", encode(&row).len());
    }

    #[test]
    fn rows_written_before_face_sizes_read_without_a_size() {
        let old = FaceRowV1 {
            face_id: [7; 16],
            image_id: [8; 16],
            external_image_id: None,
            bbox: [0.5, 0.5, 0.25, 0.25],
            confidence: 99.0,
            indexed_at_ms: 5,
            last_matched_at_ms: Some(9),
            user_id: Some("u".into()),
        };
        let row = decode_face_row(&encode(&old)).unwrap();
        assert_eq!(row.pixels, None);
        assert_eq!((row.face_id, row.last_matched_at_ms), ([7; 16], Some(9)));
        assert_eq!(row.user_id.as_deref(), Some("u"));
        let new = FaceRow {
            pixels: Some(19.0),
            ..row
        };
        assert_eq!(decode_face_row(&encode(&new)).unwrap().pixels, Some(19.0));
        assert!(decode_face_row(&[1, 2, 3]).is_err());
    }
}
