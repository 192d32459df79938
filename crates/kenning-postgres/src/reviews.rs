//! The review queue as a table; items are queued and decided in the same
//! transaction as their audit records.

use std::sync::Arc;

use kenning_accountability::probes::ProbeStore;
use kenning_accountability::review::{
    page_token, parse_page_token, prepare, ReviewError, ReviewItem, ReviewPage, ReviewStore,
};
use kenning_audit::Entry;
use kenning_store::StoreError;

use crate::audit;
use crate::db::{Db, Fail, Res};

/// Items read per round trip while listing.
const PAGE: i64 = 500;

/// The review queue of one database.
pub struct PgReviews {
    db: Arc<Db>,
}

fn review_error(e: StoreError) -> ReviewError {
    match e {
        StoreError::Hook(m) => ReviewError::Audit(m),
        other => ReviewError::Db(other.to_string()),
    }
}

fn decode(v: serde_json::Value) -> Res<ReviewItem> {
    serde_json::from_value(v).map_err(|e| StoreError::Corrupt(format!("review item: {e}")).into())
}

impl PgReviews {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self { db }
    }

    fn run<T>(&self, f: impl std::future::Future<Output = Res<T>>) -> Result<T, ReviewError> {
        match self.db.block_on(f) {
            Ok(v) => Ok(v),
            Err(Fail::Review(e)) => Err(e),
            Err(other) => Err(review_error(self.db.error(other))),
        }
    }
}

/// The probe photos of searches under review, in the database. Erasing one
/// deletes its row; PostgreSQL reclaims the dead row's pages at the next
/// (auto)vacuum, not at once as [`kenning_accountability::probes::ProbeDir`]
/// overwrites its file.
pub struct PgProbes {
    db: Arc<Db>,
}

impl PgProbes {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self { db }
    }

    fn run<T>(&self, f: impl std::future::Future<Output = Res<T>>) -> std::io::Result<T> {
        self.db
            .run(f)
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

impl ProbeStore for PgProbes {
    fn put(&self, id: &str, bytes: &[u8]) -> std::io::Result<()> {
        self.run(async {
            let client = self.db.client().await?;
            client
                .execute(
                    "INSERT INTO review_probes (request_id, bytes) VALUES ($1, $2) \
                     ON CONFLICT (request_id) DO UPDATE SET bytes = EXCLUDED.bytes",
                    &[&id, &bytes],
                )
                .await?;
            Ok(())
        })
    }

    fn get(&self, id: &str) -> std::io::Result<Option<Vec<u8>>> {
        self.run(async {
            let client = self.db.client().await?;
            let row = client
                .query_opt(
                    "SELECT bytes FROM review_probes WHERE request_id = $1",
                    &[&id],
                )
                .await?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn erase(&self, id: &str) -> std::io::Result<()> {
        self.run(async {
            let client = self.db.client().await?;
            client
                .execute("DELETE FROM review_probes WHERE request_id = $1", &[&id])
                .await?;
            Ok(())
        })
    }

    fn ids(&self) -> std::io::Result<Vec<String>> {
        self.run(async {
            let client = self.db.client().await?;
            let rows = client
                .query(
                    "SELECT request_id FROM review_probes ORDER BY request_id",
                    &[],
                )
                .await?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }
}

/// A review error raised inside a database call.
fn fail(e: ReviewError) -> Fail {
    Fail::Review(e)
}

impl ReviewStore for PgReviews {
    fn enqueue(&self, items: &mut [ReviewItem], record: Entry) -> Result<(), ReviewError> {
        for item in items.iter_mut() {
            prepare(item);
        }
        self.run(async {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            for item in items.iter() {
                let json = serde_json::to_value(item)
                    .map_err(|e| StoreError::Corrupt(format!("review item: {e}")))?;
                tx.execute(
                    "INSERT INTO review_items (review_id, item) VALUES ($1, $2)",
                    &[&item.review_id, &json],
                )
                .await?;
            }
            audit::append(&tx, record).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn get(&self, id: &str) -> Result<ReviewItem, ReviewError> {
        self.run(async {
            let client = self.db.client().await?;
            let row = client
                .query_opt("SELECT item FROM review_items WHERE review_id = $1", &[&id])
                .await?
                .ok_or_else(|| fail(ReviewError::NotFound(id.into())))?;
            decode(row.get(0))
        })
    }

    fn list(
        &self,
        keep: &dyn Fn(&ReviewItem) -> bool,
        token: Option<&str>,
        max: usize,
    ) -> Result<ReviewPage, ReviewError> {
        let mut after = i64::try_from(parse_page_token(token)?).unwrap_or(i64::MAX);
        let mut items = Vec::new();
        let mut next_token = None;
        'pages: loop {
            let rows = self.run(async {
                let client = self.db.client().await?;
                Ok(client
                    .query(
                        "SELECT position, item FROM review_items WHERE position > $1 \
                         ORDER BY position LIMIT $2",
                        &[&after, &PAGE],
                    )
                    .await?)
            })?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let position: i64 = row.get(0);
                let item = self.run(async { decode(row.get(1)) })?;
                after = position;
                if !keep(&item) {
                    continue;
                }
                if items.len() == max {
                    next_token = Some(page_token(position as u64 - 1));
                    break 'pages;
                }
                items.push(item);
            }
        }
        Ok(ReviewPage { items, next_token })
    }

    fn update(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut ReviewItem) -> Result<Entry, ReviewError>,
    ) -> Result<ReviewItem, ReviewError> {
        self.run(async {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            let row = tx
                .query_opt(
                    "SELECT item FROM review_items WHERE review_id = $1 FOR UPDATE",
                    &[&id],
                )
                .await?
                .ok_or_else(|| fail(ReviewError::NotFound(id.into())))?;
            let mut item = decode(row.get(0))?;
            let entry = change(&mut item).map_err(fail)?;
            let json = serde_json::to_value(&item)
                .map_err(|e| StoreError::Corrupt(format!("review item: {e}")))?;
            tx.execute(
                "UPDATE review_items SET item = $2 WHERE review_id = $1",
                &[&id, &json],
            )
            .await?;
            audit::append(&tx, entry).await?;
            tx.commit().await?;
            Ok(item)
        })
    }
}
