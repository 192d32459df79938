//! Response bodies in Rekognition's shapes (field names as on the wire).

use kenning_core::{BoundingBox, FaceDetail};
use serde::Serialize;

use crate::quality::Reason;

/// What a Similarity threshold means for one collection right now.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FalseMatchEstimate {
    /// The FaceMatchThreshold in use.
    pub threshold: f64,
    /// The false-match rate of one comparison at that threshold.
    pub false_match_rate: f64,
    /// Faces in the collection.
    pub face_count: u64,
    /// FaceCount x FalseMatchRate: expected false matches per search.
    pub expected_false_matches: f64,
    /// The calibration the promise rests on (the collection's own, or the
    /// recogniser's shipped one), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<String>,
    /// The small-face rule applied on top of that calibration, named as
    /// the search's audit record names it: a pair with a face under the
    /// rule's top band scores a lower Similarity than the calibration
    /// alone gives, so its false-match rate stays near the promise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quality_rule: Option<String>,
}

/// CreateCollection's response.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateCollectionResponse {
    /// Always 200.
    pub status_code: u16,
    /// The collection's ARN.
    pub collection_arn: String,
    /// The recogniser whose vectors the collection holds.
    pub face_model_version: String,
}

/// DescribeCollection's response, with Kenning's false-match figure.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DescribeCollectionResponse {
    /// Number of faces.
    pub face_count: u64,
    /// The recogniser.
    pub face_model_version: String,
    /// ARN (spelled as Rekognition spells it here).
    #[serde(rename = "CollectionARN")]
    pub collection_arn: String,
    /// Creation time, seconds since the epoch.
    pub creation_timestamp: f64,
    /// Number of users.
    pub user_count: u64,
    /// What the default threshold (80) means at this size.
    pub false_match_estimate: FalseMatchEstimate,
    /// Kenning's extension: which calibration gives the collection's
    /// Similarity (absent when this service cannot run its recogniser).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::CalibrationInForce>,
}

/// ListCollections' response.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListCollectionsResponse {
    /// Collection ids.
    pub collection_ids: Vec<String>,
    /// Their recogniser versions, in the same order.
    pub face_model_versions: Vec<String>,
    /// Token for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// A stored face as Rekognition reports it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Face {
    /// FaceId.
    pub face_id: String,
    /// Where it was in its image.
    pub bounding_box: BoundingBox,
    /// ImageId.
    pub image_id: String,
    /// ExternalImageId.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_image_id: Option<String>,
    /// Detector confidence.
    pub confidence: f32,
    /// The recogniser version.
    pub index_faces_model_version: String,
    /// Its user, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// One indexed face.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FaceRecord {
    /// The stored face.
    pub face: Face,
    /// Its detail.
    pub face_detail: FaceDetail,
}

/// A face IndexFaces left out, and why.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UnindexedFace {
    /// Why.
    pub reasons: Vec<Reason>,
    /// The face.
    pub face_detail: FaceDetail,
}

/// IndexFaces' response.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IndexFacesResponse {
    /// Faces stored.
    pub face_records: Vec<FaceRecord>,
    /// The recogniser version.
    pub face_model_version: String,
    /// Faces not stored.
    pub unindexed_faces: Vec<UnindexedFace>,
}

/// ListFaces' response.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListFacesResponse {
    /// The faces.
    pub faces: Vec<Face>,
    /// Token for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// The recogniser version.
    pub face_model_version: String,
}

/// A face a batch request could not process.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UnsuccessfulFace {
    /// FaceId.
    pub face_id: String,
    /// The user involved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Why.
    pub reasons: Vec<String>,
}

/// DeleteFaces' response.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteFacesResponse {
    /// FaceIds deleted.
    pub deleted_faces: Vec<String>,
    /// The others.
    pub unsuccessful_face_deletions: Vec<UnsuccessfulFace>,
}

/// One search hit.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FaceMatch {
    /// Calibrated Similarity.
    pub similarity: f32,
    /// The matched face.
    pub face: Face,
}

/// SearchFaces' response.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SearchFacesResponse {
    /// The face searched for.
    pub searched_face_id: String,
    /// Matches, best first.
    pub face_matches: Vec<FaceMatch>,
    /// The recogniser version.
    pub face_model_version: String,
    /// What the threshold means at this collection's size.
    pub false_match_estimate: FalseMatchEstimate,
}

/// SearchFacesByImage's response.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SearchFacesByImageResponse {
    /// The largest face of the image, which was searched for.
    pub searched_face_bounding_box: BoundingBox,
    /// Its detector confidence.
    pub searched_face_confidence: f32,
    /// Matches, best first.
    pub face_matches: Vec<FaceMatch>,
    /// The recogniser version.
    pub face_model_version: String,
    /// What the threshold means at this collection's size.
    pub false_match_estimate: FalseMatchEstimate,
}

/// A user in listings and matches.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct User {
    /// UserId.
    pub user_id: String,
    /// CREATED or ACTIVE.
    pub user_status: String,
}

/// ListUsers' response.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ListUsersResponse {
    /// The users.
    pub users: Vec<User>,
    /// Token for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// AssociateFaces' response.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AssociateFacesResponse {
    /// Faces now associated.
    pub associated_faces: Vec<FaceIdOnly>,
    /// The others.
    pub unsuccessful_face_associations: Vec<UnsuccessfulFace>,
    /// The user's status.
    pub user_status: String,
}

/// DisassociateFaces' response.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DisassociateFacesResponse {
    /// Faces no longer associated.
    pub disassociated_faces: Vec<FaceIdOnly>,
    /// The others.
    pub unsuccessful_face_disassociations: Vec<UnsuccessfulFace>,
    /// The user's status.
    pub user_status: String,
}

/// `{"FaceId": ...}`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct FaceIdOnly {
    /// FaceId.
    pub face_id: String,
}

/// One user hit.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserMatch {
    /// Similarity of the user's best-matching face.
    pub similarity: f32,
    /// The user.
    pub user: User,
}

/// SearchUsers' and SearchUsersByImage's response.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SearchUsersResponse {
    /// Matches, best first.
    pub user_matches: Vec<UserMatch>,
    /// The recogniser version.
    pub face_model_version: String,
    /// The face searched for (SearchUsers by FaceId, or the image's face).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub searched_face: Option<serde_json::Value>,
    /// The user searched for (SearchUsers by UserId).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub searched_user: Option<serde_json::Value>,
    /// What the threshold means at this collection's size.
    pub false_match_estimate: FalseMatchEstimate,
}
