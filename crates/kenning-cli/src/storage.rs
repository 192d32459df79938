//! Where a node keeps its state: the data directory.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use kenning_accountability::keys::KeyStore;
use kenning_accountability::{ReviewQueue, ReviewStore, REVIEW_FILE};
use kenning_store::{Distance, Embedded, FaceStore};

use crate::commands::wire;

/// A node's storage, opened.
pub struct Storage {
    /// Collections, faces, users, search; they write the audit trail.
    pub faces: Arc<dyn FaceStore>,
    /// The review queue.
    pub reviews: Arc<dyn ReviewStore>,
    /// The access keys.
    pub keys: KeyStore,
}

/// Opens the data directory `data` (whose indexes measure `distance`).
pub fn open(data: &Path, distance: Distance) -> Result<Storage> {
    let faces = Arc::new(Embedded::open(data, distance).map_err(wire)?);
    let reviews = ReviewQueue::open(&data.join(REVIEW_FILE), faces.audit())?;
    Ok(Storage {
        faces,
        reviews: Arc::new(reviews),
        keys: KeyStore::new(data),
    })
}

/// The access keys alone (for `kenning keys` and authentication).
pub fn keys(data: &Path) -> Result<KeyStore> {
    Ok(KeyStore::new(data))
}
