//! The audit trail as a table: one row per record holding exactly the line
//! the file trail would hold, chained under a lock on the head row.

use std::collections::VecDeque;
use std::sync::Arc;

use deadpool_postgres::Transaction;
use kenning_audit::{AuditError, Entry, Filter, Record, RecordStream, Sealed, Trail, VerifyReport};

use crate::db::{Db, Res};

/// Rows fetched per round trip when reading the trail.
const PAGE: i64 = 5_000;

/// Appends `entry` to the chain inside `tx`. The head row stays locked until
/// `tx` ends, so concurrent appends from any node queue behind it: lock it
/// last in a transaction, after the rows the change itself locks.
pub(crate) async fn append(tx: &Transaction<'_>, entry: Entry) -> Res<Sealed> {
    let head = tx
        .query_one("SELECT seq, hash FROM audit_head FOR UPDATE", &[])
        .await?;
    let (seq, prev): (i64, String) = (head.get(0), head.get(1));
    let sealed = kenning_audit::seal(
        seq as u64 + 1,
        &prev,
        kenning_audit::now_ms().unwrap_or(0),
        entry,
    )
    .map_err(|e| kenning_store::StoreError::Hook(e.to_string()))?;
    let next = seq + 1;
    tx.execute(
        "INSERT INTO audit_records (seq, line) VALUES ($1, $2)",
        &[&next, &sealed.line],
    )
    .await?;
    tx.execute(
        "UPDATE audit_head SET seq = $1, hash = $2",
        &[&next, &sealed.hash],
    )
    .await?;
    Ok(sealed)
}

/// The audit trail of one database.
pub(crate) struct PgAudit {
    db: Arc<Db>,
}

impl PgAudit {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self { db }
    }

    fn error(&self, e: impl std::fmt::Display) -> AuditError {
        AuditError::Database {
            location: self.db.location().to_owned(),
            message: e.to_string(),
        }
    }

    /// The lines up to the head as it is now, a page at a time (records
    /// appended meanwhile are not looked at, as with the file).
    fn lines(&self) -> Result<Lines<'_>, AuditError> {
        let head = self
            .db
            .run(async {
                let client = self.db.client().await?;
                Ok(client
                    .query_one("SELECT seq FROM audit_head", &[])
                    .await?
                    .get::<_, i64>(0))
            })
            .map_err(|e| self.error(e))?;
        Ok(Lines {
            audit: self,
            after: 0,
            head,
            page: VecDeque::new(),
        })
    }
}

struct Lines<'a> {
    audit: &'a PgAudit,
    after: i64,
    head: i64,
    page: VecDeque<(i64, String)>,
}

impl Iterator for Lines<'_> {
    type Item = Result<String, AuditError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() && self.after < self.head {
            let (after, head) = (self.after, self.head);
            let db = &self.audit.db;
            let rows = db.run(async {
                let client = db.client().await?;
                Ok(client
                    .query(
                        "SELECT seq, line FROM audit_records WHERE seq > $1 AND seq <= $2 \
                         ORDER BY seq LIMIT $3",
                        &[&after, &head, &PAGE],
                    )
                    .await?
                    .iter()
                    .map(|r| (r.get::<_, i64>(0), r.get::<_, String>(1)))
                    .collect::<VecDeque<_>>())
            });
            match rows {
                Ok(rows) if rows.is_empty() => self.after = self.head,
                Ok(rows) => self.page = rows,
                Err(e) => {
                    self.after = self.head;
                    return Some(Err(self.audit.error(e)));
                }
            }
        }
        let (seq, line) = self.page.pop_front()?;
        self.after = seq;
        Some(Ok(line))
    }
}

impl Trail for PgAudit {
    fn append(&self, entry: Entry) -> Result<(Record, String), AuditError> {
        let sealed = self
            .db
            .run(async {
                let mut client = self.db.client().await?;
                let tx = client.transaction().await?;
                let sealed = append(&tx, entry).await?;
                tx.commit().await?;
                Ok(sealed)
            })
            .map_err(|e| self.error(e))?;
        Ok((sealed.record, sealed.hash))
    }

    fn verify(&self) -> Result<VerifyReport, AuditError> {
        kenning_audit::verify_lines(&self.location(), self.lines()?)
    }

    fn records(&self) -> Result<RecordStream<'_>, AuditError> {
        Ok(Box::new(kenning_audit::records_from_lines(
            &self.location(),
            self.lines()?,
        )))
    }

    fn export(&self, filter: &Filter, out: &mut dyn std::io::Write) -> Result<u64, AuditError> {
        kenning_audit::export_lines(&self.location(), self.lines()?, filter, out)
    }

    fn location(&self) -> String {
        self.db.location().to_owned()
    }
}
