//! Roles and scoped keys: who may run which operation on which collection.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a key is for. Each role gets only what its job needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs the deployment: collections, policies, retention, and everything
    /// an operator does. Cannot review candidates or read the audit trail.
    #[default]
    Admin,
    /// Enrols and searches within its collections. Cannot create or delete
    /// collections, change policies, review or read the audit trail.
    Operator,
    /// Confirms or rejects search candidates. Cannot search or change anything.
    Reviewer,
    /// Reads and verifies the audit trail and the review queue. Cannot
    /// search, see faces or change anything.
    Auditor,
}

impl Role {
    /// Every role, for listings and the role-matrix test.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Reviewer, Role::Auditor];

    /// The role's name as keys and audit records spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Reviewer => "reviewer",
            Role::Auditor => "auditor",
        }
    }

    /// Whether the role may run `op` (see [`MATRIX`]).
    pub fn allows(self, op: &str) -> bool {
        MATRIX
            .iter()
            .find(|(name, _)| *name == op)
            .is_some_and(|(_, roles)| roles.contains(&self))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?}: use admin, operator, reviewer or auditor"))
    }
}

use Role::{Admin as A, Auditor as U, Operator as O, Reviewer as R};

/// The role matrix: every operation Kenning serves and the roles that may
/// run it. An operation missing here is refused to everyone.
pub const MATRIX: &[(&str, &[Role])] = &[
    ("DetectFaces", &[A, O]),
    ("CompareFaces", &[A, O]),
    ("CreateCollection", &[A]),
    ("DeleteCollection", &[A]),
    ("DescribeCollection", &[A, O, R, U]),
    ("ListCollections", &[A, O, R, U]),
    ("IndexFaces", &[A, O]),
    ("ListFaces", &[A, O, R]),
    ("DeleteFaces", &[A, O]),
    ("SearchFaces", &[A, O]),
    ("SearchFacesByImage", &[A, O]),
    ("CreateUser", &[A, O]),
    ("DeleteUser", &[A, O]),
    ("ListUsers", &[A, O, R]),
    ("AssociateFaces", &[A, O]),
    ("DisassociateFaces", &[A, O]),
    ("SearchUsers", &[A, O]),
    ("SearchUsersByImage", &[A, O]),
    ("StartFaceDetection", &[A, O]),
    ("GetFaceDetection", &[A, O]),
    ("StartFaceSearch", &[A, O]),
    ("GetFaceSearch", &[A, O]),
    ("UploadVideo", &[A, O]),
    ("ListVideoJobs", &[A, O]),
    ("ListVideos", &[A, O]),
    ("CreateStreamProcessor", &[A]),
    ("UpdateStreamProcessor", &[A]),
    ("DeleteStreamProcessor", &[A]),
    ("StartStreamProcessor", &[A, O]),
    ("StopStreamProcessor", &[A, O]),
    ("DescribeStreamProcessor", &[A, O, U]),
    ("ListStreamProcessors", &[A, O, U]),
    ("ReadStreamOutput", &[A, O]),
    ("PutCollectionPolicy", &[A]),
    ("CalibrateCollection", &[A]),
    ("GetCollectionPolicy", &[A, O, R, U]),
    ("ListReviewItems", &[A, O, R, U]),
    ("DecideReviewItem", &[R]),
    ("VerifyAudit", &[U]),
    ("ExportAudit", &[U]),
    ("RunRetention", &[A]),
    ("GetReviewProbe", &[A, R]),
    ("GetEnrolmentImage", &[A, R]),
    ("GetAccountabilityReport", &[A, U]),
    ("CreateAccessKey", &[A]),
    ("ListAccessKeys", &[A]),
    ("RevokeAccessKey", &[A]),
    ("PutEvalReport", &[A]),
    ("DeleteEvalReport", &[A]),
    ("ListEvalReports", &[A, O, R, U]),
];

/// Kenning's own operations (beyond Rekognition's), served under the
/// `KenningService.` target and the REST API.
pub const KENNING_OPERATIONS: &[&str] = &[
    "PutCollectionPolicy",
    "CalibrateCollection",
    "GetCollectionPolicy",
    "ListReviewItems",
    "DecideReviewItem",
    "VerifyAudit",
    "ExportAudit",
    "RunRetention",
    "UploadVideo",
    "ListVideoJobs",
    "ListVideos",
    "ReadStreamOutput",
    "GetReviewProbe",
    "GetEnrolmentImage",
    "GetAccountabilityReport",
    "CreateAccessKey",
    "ListAccessKeys",
    "RevokeAccessKey",
    "PutEvalReport",
    "DeleteEvalReport",
    "ListEvalReports",
];

/// A key's role and scope, as stored with the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Grant {
    /// The role.
    pub role: Role,
    /// Collection ids the key may use (a trailing `*` matches a prefix);
    /// `None` means every collection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collections: Option<Vec<String>>,
    /// Operations the key may run, a subset of its role's; `None` means all
    /// of the role's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<Vec<String>>,
}

impl Grant {
    /// An unrestricted admin grant (the root key's).
    pub fn admin() -> Self {
        Self::role(Role::Admin)
    }

    /// `role` over every collection and all of the role's operations.
    pub fn role(role: Role) -> Self {
        Self {
            role,
            collections: None,
            operations: None,
        }
    }

    /// Checks that the scope names real operations the role may run, and
    /// collection patterns that can match something.
    pub fn validate(&self) -> Result<(), String> {
        for op in self.operations.iter().flatten() {
            if !MATRIX.iter().any(|(name, _)| name == op) {
                return Err(format!("unknown operation {op:?} in the key's scope"));
            }
            if !self.role.allows(op) {
                return Err(format!(
                    "the {} role cannot run {op}, so a key cannot be scoped to it",
                    self.role
                ));
            }
        }
        for c in self.collections.iter().flatten() {
            let stem = c.strip_suffix('*').unwrap_or(c);
            if c.is_empty()
                || stem.contains('*')
                || !stem
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "_.-".contains(ch))
            {
                return Err(format!(
                    "collection scope {c:?} must be a collection id, optionally ending in *"
                ));
            }
        }
        Ok(())
    }
}

/// Who is calling: an access key with its grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The access key id (or `local:<user>` for the command line without a
    /// key, `anonymous` for unsigned requests the service was told to accept).
    pub access_key: String,
    /// Role and scope.
    pub grant: Grant,
}

/// Why a principal may not do something; the message names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Denied(pub String);

impl Principal {
    /// A principal for `access_key` with `grant`.
    pub fn new(access_key: &str, grant: Grant) -> Self {
        Self {
            access_key: access_key.into(),
            grant,
        }
    }

    /// The role.
    pub fn role(&self) -> Role {
        self.grant.role
    }

    /// Whether the key's scope includes collection `id`.
    pub fn sees(&self, id: &str) -> bool {
        self.grant.collections.as_ref().is_none_or(|scope| {
            scope.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => id.starts_with(prefix),
                None => p == id,
            })
        })
    }

    /// May this principal run `op`, on `collection` when it names one?
    pub fn authorize(&self, op: &str, collection: Option<&str>) -> Result<(), Denied> {
        if !self.role().allows(op) {
            return Err(Denied(format!(
                "access key {} has the {} role, which may not run {op}",
                self.access_key,
                self.role()
            )));
        }
        if let Some(ops) = &self.grant.operations {
            if !ops.iter().any(|o| o == op) {
                return Err(Denied(format!(
                    "access key {} is not scoped to run {op}",
                    self.access_key
                )));
            }
        }
        if let Some(id) = collection {
            if !self.sees(id) {
                return Err(Denied(format!(
                    "access key {} is not scoped to collection {id}",
                    self.access_key
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_limits_collections_and_operations() {
        let p = Principal::new(
            "K",
            Grant {
                role: Role::Operator,
                collections: Some(vec!["cases-*".into(), "staff".into()]),
                operations: Some(vec!["SearchFacesByImage".into()]),
            },
        );
        assert!(p
            .authorize("SearchFacesByImage", Some("cases-2026"))
            .is_ok());
        assert!(p.authorize("SearchFacesByImage", Some("staff")).is_ok());
        let e = p
            .authorize("SearchFacesByImage", Some("staff2"))
            .unwrap_err();
        assert!(e.0.contains("not scoped to collection staff2"), "{e}");
        let e = p.authorize("IndexFaces", Some("staff")).unwrap_err();
        assert!(e.0.contains("not scoped to run IndexFaces"), "{e}");
        let e = p
            .authorize("PutCollectionPolicy", Some("staff"))
            .unwrap_err();
        assert!(e.0.contains("operator role"), "{e}");
    }

    #[test]
    fn grants_are_validated() {
        let mut g = Grant::role(Role::Auditor);
        g.operations = Some(vec!["SearchFaces".into()]);
        assert!(g.validate().unwrap_err().contains("cannot run SearchFaces"));
        g.operations = Some(vec!["Nope".into()]);
        assert!(g.validate().unwrap_err().contains("unknown operation"));
        g.operations = None;
        g.collections = Some(vec!["a*b".into()]);
        assert!(g.validate().is_err());
        g.collections = Some(vec!["ab*".into(), "c".into()]);
        assert!(g.validate().is_ok());
        assert_eq!("auditor".parse::<Role>(), Ok(Role::Auditor));
        assert!("root".parse::<Role>().is_err());
    }
}
