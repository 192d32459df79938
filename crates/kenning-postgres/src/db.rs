//! Connections: a pool for writes (the primary) and optionally one for
//! searches (a standby), on the backend's own runtime, and how their
//! failures are reported.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use kenning_store::StoreError;
use tokio_postgres::config::TargetSessionAttrs;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Config, NoTls};

use crate::faces::to_i64;
use crate::ConnectError;

/// How a collection's HNSW index holds its vectors. The table always keeps
/// the full float4 vector, which the exact re-rank uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// `vector(d)`: float4.
    #[default]
    Full,
    /// `halfvec(d)`: float2, half the index size.
    Half,
}

impl Precision {
    /// The pgvector type name.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::Full => "vector",
            Self::Half => "halfvec",
        }
    }

    pub(crate) fn from_type_name(name: &str) -> Option<Self> {
        match name {
            "vector" => Some(Self::Full),
            "halfvec" => Some(Self::Half),
            _ => None,
        }
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "full" | "vector" => Ok(Self::Full),
            "half" | "halfvec" => Ok(Self::Half),
            _ => Err(format!("vector precision must be full or half, not {s:?}")),
        }
    }
}

/// Tuning of the PostgreSQL backend.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// How new collections' indexes hold vectors.
    pub precision: Precision,
    /// `hnsw.ef_search` of a search (raised to the number of candidates
    /// asked for, at most 1000); iterative scans go further when needed.
    pub ef_search: u32,
    /// HNSW `m` of new collections' indexes.
    pub m: u32,
    /// HNSW `ef_construction` of new collections' indexes.
    pub ef_construction: u32,
    /// Connections per pool.
    pub pool_size: usize,
    /// `maintenance_work_mem` (MiB) when a bulk load or an import builds an
    /// HNSW index over loaded rows: enough to hold the whole graph (about
    /// 1 KiB per 128-d face) keeps the build fast.
    pub build_memory_mb: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            precision: Precision::Full,
            ef_search: 200,
            m: 16,
            ef_construction: 64,
            pool_size: 16,
            build_memory_mb: 1024,
        }
    }
}

/// What went wrong inside a database call, before it is reported with the
/// database's (password-free) location.
#[derive(Debug)]
pub(crate) enum Fail {
    Pg(tokio_postgres::Error),
    Pool(String),
    Store(StoreError),
    /// A review queue's own refusal (not found, closed...).
    Review(kenning_accountability::review::ReviewError),
    /// The key vault's own refusal.
    Key(kenning_accountability::keys::KeyError),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl From<PoolError> for Fail {
    /// No connection for the call, whatever the server said when refusing
    /// one (down, restarting, not accepting connections to the database):
    /// the call did not happen, so it is `Unavailable` and may be retried.
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Backend(e) => Fail::Pool(match e.as_db_error() {
                Some(db) => db.message().to_owned(),
                None => e.to_string(),
            }),
            other => Fail::Pool(other.to_string()),
        }
    }
}

pub(crate) type Res<T> = Result<T, Fail>;

/// The URL without its password (user, hosts, ports and database stay), for
/// messages and logs.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let authority = match authority.rsplit_once('@') {
            Some((user, hosts)) => {
                let user = user.split_once(':').map_or(user, |(u, _)| u);
                format!("{user}@{hosts}")
            }
            None => authority.to_owned(),
        };
        let tail = tail
            .split_once('?')
            .map(|(path, query)| {
                let kept: Vec<&str> = query
                    .split('&')
                    .filter(|kv| !kv.to_ascii_lowercase().starts_with("password="))
                    .collect();
                if kept.is_empty() {
                    path.to_owned()
                } else {
                    format!("{path}?{}", kept.join("&"))
                }
            })
            .unwrap_or_else(|| tail.to_owned());
        return format!("{scheme}://{authority}{tail}");
    }
    // key=value form
    url.split_whitespace()
        .filter(|kv| !kv.to_ascii_lowercase().starts_with("password="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A database as the backend uses it.
pub(crate) struct Db {
    rt: tokio::runtime::Runtime,
    write: Pool,
    read: Option<Pool>,
    location: String,
    pub(crate) options: Options,
}

fn pool(url: &str, writes: bool, size: usize) -> Result<Pool, ConnectError> {
    let mut config = Config::from_str(url).map_err(|e| ConnectError::Url {
        url: redact(url),
        message: e.to_string(),
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    if config.get_application_name().is_none() {
        config.application_name("kenning");
    }
    config.keepalives(true);
    if writes {
        // With several hosts, the one that takes writes (the primary).
        config.target_session_attrs(TargetSessionAttrs::ReadWrite);
    }
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .wait_timeout(Some(Duration::from_secs(10)))
        .create_timeout(Some(Duration::from_secs(10)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .map_err(|e| ConnectError::Url {
            url: redact(url),
            message: e.to_string(),
        })
}

impl Db {
    pub(crate) fn connect(
        url: &str,
        read_url: Option<&str>,
        options: Options,
    ) -> Result<Self, ConnectError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kenning-postgres")
            .enable_all()
            .build()?;
        // Pools spawn their connection tasks on the runtime they are built in.
        let _enter = rt.enter();
        let write = pool(url, true, options.pool_size)?;
        let read = read_url
            .map(|u| pool(u, false, options.pool_size))
            .transpose()?;
        drop(_enter);
        let mut location = redact(url);
        if let Some(r) = read_url {
            location = format!("{location} (searches: {})", redact(r));
        }
        Ok(Self {
            rt,
            write,
            read,
            location,
            options,
        })
    }

    /// The database, without password.
    pub(crate) fn location(&self) -> &str {
        &self.location
    }

    /// Runs `f` on the backend's runtime and reports its failure as a store
    /// error.
    pub(crate) fn run<T>(&self, f: impl Future<Output = Res<T>>) -> Result<T, StoreError> {
        self.block_on(f).map_err(|e| self.error(e))
    }

    /// Runs `f` on the backend's runtime, blocking this thread. Called from
    /// a worker of another (multi-threaded) runtime, as the server's request
    /// authentication does, that worker's other tasks move to another
    /// thread while this one waits.
    pub(crate) fn block_on<F: Future>(&self, f: F) -> F::Output {
        tokio::task::block_in_place(|| self.rt.block_on(f))
    }

    /// A connection that takes writes.
    pub(crate) async fn client(&self) -> Res<Object> {
        Ok(self.write.get().await?)
    }

    /// A connection for searches: the read database when there is one.
    pub(crate) async fn reader(&self) -> Res<Object> {
        Ok(self.read.as_ref().unwrap_or(&self.write).get().await?)
    }

    /// How a failure is reported: a lost or refused connection, a standby
    /// that cannot take writes, or a transaction that lost a race is
    /// `Unavailable` (the call did not happen; retry), anything else a
    /// database error.
    pub(crate) fn error(&self, e: Fail) -> StoreError {
        let location = self.location.clone();
        match e {
            Fail::Store(e) => e,
            Fail::Review(e) => StoreError::InvalidParameter(e.to_string()),
            Fail::Key(e) => StoreError::InvalidParameter(e.to_string()),
            Fail::Pool(message) => StoreError::Unavailable { location, message },
            Fail::Pg(e) => match e.as_db_error() {
                Some(db) if retryable(db.code()) => StoreError::Unavailable {
                    location,
                    message: db.message().to_owned(),
                },
                Some(db) => StoreError::Database {
                    location,
                    message: match db.detail() {
                        Some(d) => format!("{} ({d})", db.message()),
                        None => db.message().to_owned(),
                    },
                },
                None => StoreError::Unavailable {
                    location,
                    message: e.to_string(),
                },
            },
        }
    }
}

fn retryable(code: &SqlState) -> bool {
    [
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::READ_ONLY_SQL_TRANSACTION,
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::TOO_MANY_CONNECTIONS,
        SqlState::CONNECTION_FAILURE,
    ]
    .contains(code)
}

/// Gives `owner` the lease on the row of `table` whose `key` column is `id`,
/// until `until_ms`, unless another owner holds one that has not ended at
/// `now_ms`: the one takeover rule video jobs and stream processors share.
/// True when the lease is `owner`'s afterwards.
pub(crate) async fn claim_lease(
    client: &Object,
    table: &str,
    key: &str,
    id: &str,
    owner: &str,
    now_ms: u64,
    until_ms: u64,
) -> Res<bool> {
    let n = client
        .execute(
            &format!(
                "UPDATE {table} SET owner = $2, lease_until_ms = $4 WHERE {key} = $1 \
                 AND (owner IS NULL OR owner = $2 OR lease_until_ms < $3)"
            ),
            &[&id, &owner, &to_i64(now_ms), &to_i64(until_ms)],
        )
        .await?;
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgresql://kenning:s3cret@db1:5432,db2:5433/kenning?target_session_attrs=read-write"),
            "postgresql://kenning@db1:5432,db2:5433/kenning?target_session_attrs=read-write"
        );
        assert_eq!(
            redact("postgres://u@h/d?password=s3cret&sslmode=require"),
            "postgres://u@h/d?sslmode=require"
        );
        assert_eq!(redact("postgresql://h/d?password=x"), "postgresql://h/d");
        assert_eq!(
            redact("host=db user=k password=s3cret dbname=kenning"),
            "host=db user=k dbname=kenning"
        );
    }
}
