//! Access keys in a table, sealed with a key-encryption key that only the
//! nodes hold (`KENNING_MASTER_KEY` or a key file); the database keeps a
//! check value so a node with another key is refused.

use std::sync::Arc;
use std::time::Duration;

use kenning_accountability::keys::{Kek, KeyError, KeyRecord, KeyVault, TokenInfo, TokenRecord};
use kenning_audit::Entry;
use tokio_postgres::error::SqlState;

use crate::audit;
use crate::db::{Db, Fail, Res};

/// The access keys of one database.
pub struct PgKeys {
    db: Arc<Db>,
}

impl PgKeys {
    pub(crate) fn new(db: Arc<Db>) -> Self {
        Self { db }
    }

    fn run<T>(&self, f: impl std::future::Future<Output = Res<T>>) -> Result<T, KeyError> {
        match self.db.block_on(f) {
            Ok(v) => Ok(v),
            Err(Fail::Key(e)) => Err(e),
            Err(other) => Err(KeyError::Database {
                location: self.db.location().to_owned(),
                message: self.db.error(other).to_string(),
            }),
        }
    }

    /// Checks that `kek` is the key this database's secrets are sealed with
    /// (recording its check value if none is recorded yet).
    pub fn check_kek(&self, kek: &Kek) -> Result<(), KeyError> {
        let location = self.db.location().to_owned();
        self.run(async {
            let client = self.db.client().await?;
            client
                .execute(
                    "INSERT INTO kenning_meta (key, value) VALUES ('kek_check', $1) \
                     ON CONFLICT (key) DO NOTHING",
                    &[&kek.check_value()],
                )
                .await?;
            let check: String = client
                .query_one(
                    "SELECT value FROM kenning_meta WHERE key = 'kek_check'",
                    &[],
                )
                .await?
                .get(0);
            if kek.opens(&check) {
                Ok(())
            } else {
                Err(Fail::Key(KeyError::Kek(format!(
                    "the master key (KENNING_MASTER_KEY or --master-key-file) is not the one the \
                     access keys in {location} were sealed with; every node needs the same key"
                ))))
            }
        })
    }
}

async fn bump_version(tx: &deadpool_postgres::Transaction<'_>) -> Res<()> {
    tx.execute(
        "INSERT INTO kenning_meta (key, value) VALUES ('keys_version', '1') \
         ON CONFLICT (key) DO UPDATE SET value = (kenning_meta.value::bigint + 1)::text",
        &[],
    )
    .await?;
    Ok(())
}

fn decode<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Res<T> {
    serde_json::from_value(v).map_err(|e| {
        Fail::Key(KeyError::Invalid(format!(
            "a stored access key or token does not decode: {e}"
        )))
    })
}

fn encode<T: serde::Serialize>(v: &T) -> Res<serde_json::Value> {
    serde_json::to_value(v).map_err(|e| Fail::Key(KeyError::Invalid(e.to_string())))
}

impl KeyVault for PgKeys {
    fn records(&self) -> Result<Vec<KeyRecord>, KeyError> {
        self.run(async {
            let client = self.db.client().await?;
            client
                .query("SELECT record FROM access_keys ORDER BY access_key_id", &[])
                .await?
                .into_iter()
                .map(|r| decode(r.get(0)))
                .collect()
        })
    }

    fn insert(&self, record: KeyRecord, audit: Entry) -> Result<(), KeyError> {
        self.run(async {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            let json = encode(&record)?;
            let inserted = tx
                .execute(
                    "INSERT INTO access_keys (access_key_id, record, root, revoked) \
                     VALUES ($1, $2, $3, false)",
                    &[&record.access_key_id, &json, &record.root],
                )
                .await;
            match inserted {
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) && record.root => {
                    return Err(Fail::Key(KeyError::RootExists))
                }
                other => other?,
            };
            bump_version(&tx).await?;
            audit::append(&tx, audit).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn revoke(&self, access_key_id: &str, at: u64, audit: Entry) -> Result<(), KeyError> {
        self.run(async {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            let row = tx
                .query_opt(
                    "SELECT record FROM access_keys WHERE access_key_id = $1 AND NOT revoked \
                     FOR UPDATE",
                    &[&access_key_id],
                )
                .await?
                .ok_or_else(|| Fail::Key(KeyError::NotFound(access_key_id.into())))?;
            let mut record: KeyRecord = decode(row.get(0))?;
            record.revoked = Some(at);
            let json = encode(&record)?;
            tx.execute(
                "UPDATE access_keys SET record = $2, revoked = true WHERE access_key_id = $1",
                &[&access_key_id, &json],
            )
            .await?;
            bump_version(&tx).await?;
            audit::append(&tx, audit).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, KeyError> {
        self.run(async {
            let client = self.db.client().await?;
            client
                .query("SELECT record FROM api_tokens ORDER BY token_id", &[])
                .await?
                .into_iter()
                .map(|r| decode(r.get(0)))
                .collect()
        })
    }

    fn insert_token(&self, record: TokenRecord, audit: Entry) -> Result<(), KeyError> {
        self.run(async {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            tx.execute(
                "INSERT INTO api_tokens (token_id, record, revoked) VALUES ($1, $2, false)",
                &[&record.token_id, &encode(&record)?],
            )
            .await?;
            bump_version(&tx).await?;
            audit::append(&tx, audit).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn revoke_token(
        &self,
        token_id: &str,
        at: u64,
        audit: &dyn Fn(&TokenInfo) -> Entry,
    ) -> Result<(), KeyError> {
        self.run(async {
            let mut client = self.db.client().await?;
            let tx = client.transaction().await?;
            let row = tx
                .query_opt(
                    "SELECT record FROM api_tokens WHERE token_id = $1 AND NOT revoked FOR UPDATE",
                    &[&token_id],
                )
                .await?
                .ok_or_else(|| Fail::Key(KeyError::NotFound(format!("token {token_id}"))))?;
            let mut record: TokenRecord = decode(row.get(0))?;
            record.revoked = Some(at);
            tx.execute(
                "UPDATE api_tokens SET record = $2, revoked = true WHERE token_id = $1",
                &[&token_id, &encode(&record)?],
            )
            .await?;
            bump_version(&tx).await?;
            audit::append(&tx, audit(&TokenInfo::from(&record))).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn version(&self) -> Result<String, KeyError> {
        self.run(async {
            let client = self.db.client().await?;
            Ok(client
                .query_opt(
                    "SELECT value FROM kenning_meta WHERE key = 'keys_version'",
                    &[],
                )
                .await?
                .map_or_else(|| "0".to_owned(), |r| r.get(0)))
        })
    }

    fn recheck(&self) -> Duration {
        // A round trip per request would be too much; a revocation reaches
        // every node within a second.
        Duration::from_secs(1)
    }

    fn location(&self) -> String {
        self.db.location().to_owned()
    }
}
