//! Published evaluation reports in the database, so every node's console
//! shows the same ones. A change and its audit record commit in one
//! transaction.

use std::sync::Arc;

use kenning_audit::Entry;
use kenning_store::evals::validate_report;
use kenning_store::{EvalReportStore, Result, StoredReport};

use crate::audit;
use crate::db::Db;

/// The evaluation reports of one database.
pub struct PgEvals {
    db: Arc<Db>,
}

impl PgEvals {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self { db }
    }
}

fn row(r: &tokio_postgres::Row) -> StoredReport {
    StoredReport {
        name: r.get(0),
        json: r.get(1),
        updated_ms: r.get::<_, i64>(2).max(0) as u64,
    }
}

impl EvalReportStore for PgEvals {
    fn list(&self) -> Result<Vec<StoredReport>> {
        self.db.run(async {
            let client = self.db.client().await?;
            let rows = client
                .query(
                    "SELECT name, report, updated_ms FROM eval_reports ORDER BY name",
                    &[],
                )
                .await?;
            Ok(rows.iter().map(row).collect())
        })
    }

    fn get(&self, name: &str) -> Result<Option<StoredReport>> {
        self.db.run(async {
            let client = self.db.client().await?;
            let r = client
                .query_opt(
                    "SELECT name, report, updated_ms FROM eval_reports WHERE name = $1",
                    &[&name],
                )
                .await?;
            Ok(r.as_ref().map(row))
        })
    }

    // `xmax <> 0` tells an updated row from an inserted one in one statement.
    // The report's row is locked by the upsert, then the chain head by the
    // record: the order every audited change takes.
    fn put(
        &self,
        name: &str,
        json: &str,
        now_ms: u64,
        record: &dyn Fn(bool) -> Entry,
    ) -> Result<bool> {
        validate_report(name, json)?;
        self.db.run(async {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            let replaced: bool = tx
                .query_one(
                    "INSERT INTO eval_reports (name, report, updated_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE SET report = EXCLUDED.report, \
                     updated_ms = EXCLUDED.updated_ms RETURNING (xmax <> 0)",
                    &[&name, &json, &(now_ms as i64)],
                )
                .await?
                .get(0);
            audit::append(&tx, record(replaced)).await?;
            tx.commit().await?;
            Ok(replaced)
        })
    }

    fn delete(&self, name: &str, record: Entry) -> Result<bool> {
        self.db.run(async {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            let n = tx
                .execute("DELETE FROM eval_reports WHERE name = $1", &[&name])
                .await?;
            if n == 1 {
                audit::append(&tx, record).await?;
                tx.commit().await?;
            }
            Ok(n == 1)
        })
    }
}
