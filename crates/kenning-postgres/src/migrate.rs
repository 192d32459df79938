//! Versioned schema migrations, applied in order at start.
//!
//! Each migration is a SQL file in `migrations/`, numbered from 1, compiled
//! into the binary and applied once, in its own transaction, with its
//! SHA-256 recorded in `schema_migrations`. Nodes starting at the same time
//! take turns (an advisory lock), a migration edited after it was applied is
//! refused (its checksum differs), and a database migrated by a newer Kenning
//! (a version this build does not know) is refused before anything is
//! touched, since an older node could corrupt data it does not understand.

use deadpool_postgres::Object;
use sha2::{Digest, Sha256};

/// The migrations, in order: (version, name, SQL).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "schema", include_str!("../migrations/0001_schema.sql")),
    (
        2,
        "review_probes",
        include_str!("../migrations/0002_review_probes.sql"),
    ),
    (
        3,
        "video_jobs",
        include_str!("../migrations/0003_video_jobs.sql"),
    ),
    (
        4,
        "collection_calibration",
        include_str!("../migrations/0004_collection_calibration.sql"),
    ),
    (
        5,
        "stream_processors",
        include_str!("../migrations/0005_stream_processors.sql"),
    ),
    (
        6,
        "shared_state",
        include_str!("../migrations/0006_shared_state.sql"),
    ),
    (
        7,
        "face_pixels",
        include_str!("../migrations/0007_face_pixels.sql"),
    ),
    (
        8,
        "processor_uniqueness",
        include_str!("../migrations/0008_processor_uniqueness.sql"),
    ),
];

/// The schema version this build writes and reads.
pub fn current_version() -> i32 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// An arbitrary but fixed key for the advisory lock that serialises
/// migrations across nodes ("kenning" in ASCII).
const LOCK_KEY: i64 = 0x006b_656e_6e69_6e67;

/// Why the schema cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database was migrated by a newer Kenning.
    #[error(
        "the database at {location} has schema version {found}, newer than this Kenning \
         (which knows versions up to {known}): upgrade Kenning on this node; nothing was changed"
    )]
    Newer {
        /// The database, without password.
        location: String,
        /// Its version.
        found: i32,
        /// The newest this build knows.
        known: i32,
    },
    /// An applied migration differs from this build's copy.
    #[error(
        "migration {version} ({name}) applied to {location} differs from this Kenning's copy \
         (checksum {found}, expected {expected}): the schema was changed by hand or by another build"
    )]
    Changed {
        /// The database, without password.
        location: String,
        /// The migration.
        version: i32,
        /// Its name.
        name: String,
        /// The checksum recorded when it was applied.
        found: String,
        /// This build's.
        expected: String,
    },
    /// The database failed while migrating.
    #[error("migrating the database at {location}: {message}")]
    Database {
        /// The database, without password.
        location: String,
        /// What it said.
        message: String,
    },
}

fn checksum(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// Brings the schema up to date, or explains why it cannot.
pub async fn migrate(client: &mut Object, location: &str) -> Result<(), MigrateError> {
    let db = |e: tokio_postgres::Error| MigrateError::Database {
        location: location.to_owned(),
        message: e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
    };
    let tx = client.transaction().await.map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await
        .map_err(db)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             checksum text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(db)?;
    let applied = tx
        .query(
            "SELECT version, name, checksum FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(db)?;
    let known = current_version();
    if let Some(found) = applied.iter().map(|r| r.get::<_, i32>(0)).max() {
        if found > known {
            return Err(MigrateError::Newer {
                location: location.to_owned(),
                found,
                known,
            });
        }
    }
    for row in &applied {
        let (version, name, found): (i32, String, String) = (row.get(0), row.get(1), row.get(2));
        if let Some((_, _, sql)) = MIGRATIONS.iter().find(|m| m.0 == version) {
            let expected = checksum(sql);
            if found != expected {
                return Err(MigrateError::Changed {
                    location: location.to_owned(),
                    version,
                    name,
                    found,
                    expected,
                });
            }
        }
    }
    for (version, name, sql) in MIGRATIONS {
        if applied.iter().any(|r| r.get::<_, i32>(0) == *version) {
            continue;
        }
        // One transaction for all that is missing: the lock is held to the
        // end, and a failure leaves the schema as it was.
        tx.batch_execute(sql).await.map_err(db)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            &[version, name, &checksum(sql)],
        )
        .await
        .map_err(db)?;
    }
    tx.commit().await.map_err(db)
}
