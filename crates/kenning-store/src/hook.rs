//! A callback that sees every change just before it is committed, so an
//! audit trail can be written as part of the change: if the hook fails the
//! transaction is rolled back and the caller gets the error.

use crate::types::{BatchOutcome, Collection, Face, User};

/// A change about to be committed. `collection` is the collection as it will
/// be after the commit (as it was, for a deletion).
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// CreateCollection.
    CollectionCreated {
        /// The new collection.
        collection: &'a Collection,
    },
    /// DeleteCollection (faces, vectors and users go with it).
    CollectionDeleted {
        /// The collection as it was.
        collection: &'a Collection,
    },
    /// The collection's policy document was replaced.
    PolicySet {
        /// The collection with its new policy.
        collection: &'a Collection,
    },
    /// CalibrateCollection fitted the collection's own calibration, or put
    /// the shipped one back.
    CalibrationSet {
        /// The collection.
        collection: &'a Collection,
        /// The new calibration document; `None`: back to the shipped one.
        calibration: Option<&'a str>,
    },
    /// IndexFaces stored these faces.
    FacesAdded {
        /// The collection after the change.
        collection: &'a Collection,
        /// The new faces.
        faces: &'a [Face],
    },
    /// DeleteFaces (or a retention pass).
    FacesDeleted {
        /// The collection after the change.
        collection: &'a Collection,
        /// Which faces went and which were refused.
        outcome: &'a BatchOutcome,
    },
    /// CreateUser.
    UserCreated {
        /// The collection after the change.
        collection: &'a Collection,
        /// The new user.
        user_id: &'a str,
    },
    /// DeleteUser (its faces stay, disassociated).
    UserDeleted {
        /// The collection after the change.
        collection: &'a Collection,
        /// The user as it was.
        user: &'a User,
    },
    /// AssociateFaces.
    FacesAssociated {
        /// The collection.
        collection: &'a Collection,
        /// The user.
        user_id: &'a str,
        /// Which faces were associated and which were refused.
        outcome: &'a BatchOutcome,
    },
    /// DisassociateFaces.
    FacesDisassociated {
        /// The collection.
        collection: &'a Collection,
        /// The user.
        user_id: &'a str,
        /// Which faces were disassociated and which were refused.
        outcome: &'a BatchOutcome,
    },
}

impl Change<'_> {
    /// The collection changed.
    pub fn collection(&self) -> &Collection {
        match self {
            Change::CollectionCreated { collection }
            | Change::CollectionDeleted { collection }
            | Change::PolicySet { collection }
            | Change::CalibrationSet { collection, .. }
            | Change::FacesAdded { collection, .. }
            | Change::FacesDeleted { collection, .. }
            | Change::UserCreated { collection, .. }
            | Change::UserDeleted { collection, .. }
            | Change::FacesAssociated { collection, .. }
            | Change::FacesDisassociated { collection, .. } => collection,
        }
    }
}

/// Called inside every mutating transaction, after the change is staged and
/// before it is committed. An error aborts the transaction.
pub trait CommitHook: Send + Sync {
    /// Records `change`; the message of an error is reported to the caller.
    fn before_commit(&self, change: &Change<'_>) -> Result<(), String>;
}
