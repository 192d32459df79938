//! Stored-video jobs and their results in the database, with a lease per
//! job: the node that holds it runs the job and renews it; when a node
//! dies, its leases run out and another node resumes its jobs.

use std::sync::Arc;

use kenning_video::jobs::{Inserted, Job, JobStore, Order};
use kenning_video::{Result, VideoError};

use crate::db::{claim_lease, Db, Res};
use crate::faces::to_i64;

/// The video jobs of one database.
pub struct PgJobs {
    db: Arc<Db>,
}

fn encode(job: &Job) -> Res<Vec<u8>> {
    serde_json::to_vec(job)
        .map_err(|e| kenning_store::StoreError::Corrupt(format!("video job: {e}")).into())
}

fn decode(bytes: &[u8]) -> Res<Job> {
    serde_json::from_slice(bytes)
        .map_err(|e| kenning_store::StoreError::Corrupt(format!("video job: {e}")).into())
}

impl PgJobs {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self { db }
    }

    fn run<T>(&self, f: impl std::future::Future<Output = Res<T>>) -> Result<T> {
        self.db.run(f).map_err(|e| VideoError::Store(e.to_string()))
    }
}

impl JobStore for PgJobs {
    fn insert(&self, job: &Job) -> Result<Inserted> {
        self.run(async {
            let client = self.db.client().await?;
            let inserted = client
                .execute(
                    "INSERT INTO video_jobs (job_id, idempotency_key, job) VALUES ($1, $2, $3) \
                     ON CONFLICT (idempotency_key) DO NOTHING",
                    &[&job.job_id, &job.idempotency_key, &encode(job)?],
                )
                .await?;
            if inserted == 1 {
                return Ok(Inserted::New);
            }
            let row = client
                .query_one(
                    "SELECT job FROM video_jobs WHERE idempotency_key = $1",
                    &[&job.idempotency_key],
                )
                .await?;
            Ok(Inserted::Existing(Box::new(decode(row.get(0))?)))
        })
    }

    fn get(&self, id: &str) -> Result<Option<Job>> {
        self.run(async {
            let client = self.db.client().await?;
            let row = client
                .query_opt("SELECT job FROM video_jobs WHERE job_id = $1", &[&id])
                .await?;
            row.map(|r| decode(r.get(0))).transpose()
        })
    }

    fn by_idempotency_key(&self, key: &str) -> Result<Option<Job>> {
        self.run(async {
            let client = self.db.client().await?;
            let row = client
                .query_opt(
                    "SELECT job FROM video_jobs WHERE idempotency_key = $1",
                    &[&key],
                )
                .await?;
            row.map(|r| decode(r.get(0))).transpose()
        })
    }

    fn update(&self, job: &Job) -> Result<()> {
        self.run(async {
            let client = self.db.client().await?;
            client
                .execute(
                    "UPDATE video_jobs SET job = $2 WHERE job_id = $1",
                    &[&job.job_id, &encode(job)?],
                )
                .await?;
            Ok(())
        })
    }

    fn all(&self) -> Result<Vec<Job>> {
        self.run(async {
            let client = self.db.client().await?;
            client
                .query("SELECT job FROM video_jobs ORDER BY job_id", &[])
                .await?
                .iter()
                .map(|r| decode(r.get(0)))
                .collect()
        })
    }

    fn write_results(&self, id: &str, order: Order, first: u64, items: &[Vec<u8>]) -> Result<()> {
        let positions: Vec<i64> = (0..items.len() as u64).map(|i| to_i64(first + i)).collect();
        self.run(async {
            let client = self.db.client().await?;
            client
                .execute(
                    "INSERT INTO video_results (job_id, sort_order, position, item) \
                     SELECT $1, $2, p, i FROM unnest($3::bigint[], $4::bytea[]) AS x(p, i) \
                     ON CONFLICT (job_id, sort_order, position) DO UPDATE SET item = EXCLUDED.item",
                    &[&id, &(order as i16), &positions, &items],
                )
                .await?;
            Ok(())
        })
    }

    fn write_persons(&self, id: &str, persons: &[(u64, Vec<u8>)]) -> Result<()> {
        let (indexes, data): (Vec<i64>, Vec<&[u8]>) = persons
            .iter()
            .map(|(i, d)| (to_i64(*i), d.as_slice()))
            .unzip();
        self.run(async {
            let client = self.db.client().await?;
            client
                .execute(
                    "INSERT INTO video_persons (job_id, person, data) \
                     SELECT $1, p, d FROM unnest($2::bigint[], $3::bytea[]) AS x(p, d) \
                     ON CONFLICT (job_id, person) DO UPDATE SET data = EXCLUDED.data",
                    &[&id, &indexes, &data],
                )
                .await?;
            Ok(())
        })
    }

    fn results(&self, id: &str, order: Order, from: u64, max: usize) -> Result<Vec<Vec<u8>>> {
        self.run(async {
            let client = self.db.client().await?;
            Ok(client
                .query(
                    "SELECT item FROM video_results WHERE job_id = $1 AND sort_order = $2 \
                     AND position >= $3 ORDER BY position LIMIT $4",
                    &[&id, &(order as i16), &to_i64(from), &to_i64(max as u64)],
                )
                .await?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })
    }

    fn person(&self, id: &str, index: u64) -> Result<Option<Vec<u8>>> {
        self.run(async {
            let client = self.db.client().await?;
            Ok(client
                .query_opt(
                    "SELECT data FROM video_persons WHERE job_id = $1 AND person = $2",
                    &[&id, &to_i64(index)],
                )
                .await?
                .map(|r| r.get(0)))
        })
    }

    fn clear_results(&self, id: &str) -> Result<()> {
        self.run(async {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            tx.execute("DELETE FROM video_results WHERE job_id = $1", &[&id])
                .await?;
            tx.execute("DELETE FROM video_persons WHERE job_id = $1", &[&id])
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn delete(&self, id: &str) -> Result<()> {
        self.run(async {
            let client = self.db.client().await?;
            // Results and persons go with it (ON DELETE CASCADE).
            client
                .execute("DELETE FROM video_jobs WHERE job_id = $1", &[&id])
                .await?;
            Ok(())
        })
    }

    fn secret(&self, name: &str) -> Result<Vec<u8>> {
        let mut fresh = Vec::with_capacity(32);
        fresh.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        fresh.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        self.run(async {
            let client = self.db.client().await?;
            // Every node gets the value the first one stored.
            client
                .execute(
                    "INSERT INTO video_secrets (name, value) VALUES ($1, $2) \
                     ON CONFLICT (name) DO NOTHING",
                    &[&name, &fresh],
                )
                .await?;
            Ok(client
                .query_one("SELECT value FROM video_secrets WHERE name = $1", &[&name])
                .await?
                .get(0))
        })
    }

    fn shared(&self) -> bool {
        true
    }

    fn claim(&self, id: &str, owner: &str, now_ms: u64, until_ms: u64) -> Result<bool> {
        self.run(async {
            let client = self.db.client().await?;
            claim_lease(&client, "video_jobs", "job_id", id, owner, now_ms, until_ms).await
        })
    }

    fn renew(&self, owner: &str, until_ms: u64) -> Result<()> {
        self.run(async {
            let client = self.db.client().await?;
            client
                .execute(
                    "UPDATE video_jobs SET lease_until_ms = $2 WHERE owner = $1",
                    &[&owner, &to_i64(until_ms)],
                )
                .await?;
            Ok(())
        })
    }

    fn release(&self, owner: &str) -> Result<()> {
        self.run(async {
            let client = self.db.client().await?;
            client
                .execute(
                    "UPDATE video_jobs SET owner = NULL, lease_until_ms = 0 WHERE owner = $1",
                    &[&owner],
                )
                .await?;
            Ok(())
        })
    }
}
