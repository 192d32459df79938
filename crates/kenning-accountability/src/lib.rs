//! Kenning's accountability layer: what sets it apart from a bare face
//! search API.
//!
//! * [`roles`]: admin, operator, reviewer and auditor keys, scoped to
//!   collections and operations ([`keys`] stores them encrypted).
//! * [`policy`]: per-collection purpose binding (minimum threshold, maximum
//!   expected false matches, case reference, review, retention, video).
//! * [`review`]: search results are candidates until reviewers confirm them;
//!   [`probes`] keeps a search's photo only while its candidates await review.
//! * [`report`]: the accountability report, counted from the audit trail.
//! * [`Governor`]: every operation, from the HTTP service or the command
//!   line, is authorised, checked against the policy, run, and written to the
//!   hash-chained audit trail (`kenning-audit`) as part of the operation;
//!   store changes are recorded inside their transaction.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod governor;
pub mod keys;
pub mod policy;
pub mod probes;
pub mod report;
pub mod review;
pub mod roles;

pub use governor::{
    audit_path, audit_report, image_type, Caller, FrameCutter, Governor, Medium, OpenError,
    RetentionResult, AUDIT_FILE, REVIEW_FILE,
};
pub use policy::Policy;
pub use review::{ReviewQueue, ReviewStore};
pub use roles::{Grant, Principal, Role, KENNING_OPERATIONS, MATRIX};
