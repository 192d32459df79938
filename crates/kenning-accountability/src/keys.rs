//! Access keys, stored encrypted at rest, and the API tokens issued for them.
//!
//! SigV4 verification recomputes an HMAC with the caller's secret, so the
//! server needs the raw secret: a one-way hash (as for passwords) cannot
//! work. Secrets are therefore sealed with ChaCha20-Poly1305 under a random
//! 256-bit key kept in `keys.key` beside `keys.json` in the data directory,
//! with the access key id as associated data (so a sealed secret cannot be
//! moved to another key's record), all files mode 0600. This protects the
//! secrets in backups and copies of `keys.json` made without the key file;
//! it does not protect them from someone who can read the whole data
//! directory, who can also read every face in it.
//!
//! API tokens (the REST API's and the console's bearer credential) are
//! separate from SigV4 secrets: random, shown once, and stored only as an
//! HMAC-SHA256 under a key derived from `keys.key` (a keyed hash suits
//! 190-bit random tokens; a password hash's deliberate slowness would only
//! slow every request). A token speaks for its access key, with that key's
//! role and scope, and stops working when either is revoked.
//!
//! Every change to a key file is a read-modify-write under an exclusive lock
//! on `keys.lock`, written to a temporary file and renamed into place, so
//! two processes cannot lose each other's changes or leave a torn file.
//!
//! Where the sealed records live is a [`KeyVault`]: [`FileVault`] keeps the
//! files above; a database keeps them in tables, sealed with a [`Kek`] from
//! `KENNING_MASTER_KEY` or a key file that every node is given and that is
//! never stored with them. Each change is written together with its audit
//! record.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kenning_audit::{AuditLog, Entry};

use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::roles::{Grant, Principal, Role};

/// What the key store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing a key file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A key file is not what Kenning wrote.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No such access key.
    #[error("no access key {0}")]
    NotFound(String),
    /// The access key id or secret does not have the expected form.
    #[error("{0}")]
    Invalid(String),
    /// The audit record of the change could not be written, so it was not made.
    #[error("the key change was not made because its audit record could not be written: {0}")]
    Audit(String),
    /// A bearer token is malformed, unknown, revoked or expired, or its key
    /// is no longer active (one message for all, so a caller learns nothing).
    #[error("the API token is not valid")]
    BadToken,
    /// A live root key exists already (another node generated it first).
    #[error("a root key exists already")]
    RootExists,
    /// The database holding the keys failed or cannot be reached.
    #[error("key store {location}: {message}")]
    Database {
        /// The database, without password.
        location: String,
        /// What failed.
        message: String,
    },
    /// The key-encryption key is missing, malformed, or not the one the keys
    /// were sealed with.
    #[error("{0}")]
    Kek(String),
}

/// One stored key, its secret sealed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// The access key id.
    pub access_key_id: String,
    /// Hex ChaCha20-Poly1305 nonce.
    pub nonce: String,
    /// Hex ciphertext of the secret.
    pub secret: String,
    /// Sealing version: 1 binds the access key id as associated data; 0
    /// (keys written before) has none.
    #[serde(default)]
    pub sealed: u8,
    /// Seconds since the epoch.
    pub created: u64,
    /// Seconds since the epoch, when revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<u64>,
    /// The root key generated on first start.
    #[serde(default)]
    pub root: bool,
    /// What the key may do; keys written before roles existed are admin keys.
    #[serde(default)]
    pub role: Role,
    /// Collections the key may touch (`None`: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collections: Option<Vec<String>>,
    /// Operations the key may run, within its role (`None`: all of the role's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operations: Option<Vec<String>>,
}

impl KeyRecord {
    fn grant(&self) -> Grant {
        Grant {
            role: self.role,
            collections: self.collections.clone(),
            operations: self.operations.clone(),
        }
    }
}

/// An access key as listed (never with its secret).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyInfo {
    /// The access key id.
    pub access_key_id: String,
    /// Creation time, seconds since the epoch.
    pub created: u64,
    /// Revocation time, if revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked: Option<u64>,
    /// Whether this is the generated root key.
    pub root: bool,
    /// Role and scope.
    #[serde(flatten)]
    pub grant: Grant,
}

/// A newly issued key pair.
#[derive(Clone)]
pub struct NewKey {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key (shown once).
    pub secret_access_key: SecretString,
}

impl NewKey {
    /// The pair as `{"AccessKeyId", "SecretAccessKey"}`, for showing once.
    pub fn reveal(&self) -> serde_json::Value {
        serde_json::json!({
            "AccessKeyId": self.access_key_id,
            "SecretAccessKey": self.secret_access_key.expose_secret(),
        })
    }
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewKey")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[REDACTED]")
            .finish()
    }
}

/// Whether `a` and `b` are the same secret, in time that does not depend on
/// where they differ (so a caller cannot find a secret byte by byte).
pub fn same_secret(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// A key that may sign requests.
#[derive(Debug, Clone)]
pub struct ActiveKey {
    /// The secret access key (redacted in Debug output, wiped on drop).
    pub secret: SecretString,
    /// Who the key speaks for.
    pub principal: Principal,
}

/// One stored API token (its hash, never itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// The token's id (its second part, not secret).
    pub token_id: String,
    /// The access key it speaks for.
    pub access_key_id: String,
    /// Hex HMAC-SHA256 of the whole token under the token key.
    pub hash: String,
    /// Seconds since the epoch.
    pub created: u64,
    /// Expiry, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    /// Revocation time, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<u64>,
    /// A label given at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Where sealed key records and token hashes are kept.
pub trait KeyVault: Send + Sync {
    /// Every stored key, revoked ones included.
    fn records(&self) -> Result<Vec<KeyRecord>, KeyError>;
    /// Stores a new key with the audit record of its creation, both or
    /// neither; a second live root key is refused with [`KeyError::RootExists`].
    fn insert(&self, record: KeyRecord, audit: Entry) -> Result<(), KeyError>;
    /// Marks live key `access_key_id` revoked at `at` (seconds), with the
    /// audit record of the change.
    fn revoke(&self, access_key_id: &str, at: u64, audit: Entry) -> Result<(), KeyError>;
    /// Every stored API token, revoked and expired ones included.
    fn tokens(&self) -> Result<Vec<TokenRecord>, KeyError>;
    /// Stores a new token with the audit record of its creation.
    fn insert_token(&self, record: TokenRecord, audit: Entry) -> Result<(), KeyError>;
    /// Marks live token `token_id` revoked at `at`, with the audit record
    /// `audit` gives for it.
    fn revoke_token(
        &self,
        token_id: &str,
        at: u64,
        audit: &dyn Fn(&TokenInfo) -> Entry,
    ) -> Result<(), KeyError>;
    /// A value that changes whenever keys or tokens do, so servers know to
    /// reload.
    fn version(&self) -> Result<String, KeyError>;
    /// How long a server may go on with what it loaded before it asks
    /// [`KeyVault::version`] again (zero: every request; the check is cheap).
    fn recheck(&self) -> Duration;
    /// Where the keys are, for messages.
    fn location(&self) -> String;
}

/// The 256-bit key-encryption key that seals access-key secrets (and from
/// which the API tokens' hash key is derived).
#[derive(Clone)]
pub struct Kek(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek([REDACTED])")
    }
}

/// What a check value seals: a database keeps one, so a node started with
/// another key-encryption key is refused instead of sealing keys that the
/// other nodes cannot open.
const KEK_CHECK: &[u8] = b"kenning key-encryption key check v1";

impl Kek {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != 32 {
            return Err(KeyError::Kek(format!(
                "a key-encryption key is 32 bytes, not {}",
                bytes.len()
            )));
        }
        Ok(Kek(Zeroizing::new(bytes.to_vec())))
    }

    /// A key written as 64 hex digits or base64 (as `KENNING_MASTER_KEY` or
    /// a key file holds it; surrounding whitespace is ignored), or a key file
    /// of 32 raw bytes.
    pub fn parse(text: &[u8]) -> Result<Self, KeyError> {
        use base64::Engine as _;
        if text.len() == 32 {
            return Self::from_bytes(text);
        }
        let malformed = || {
            KeyError::Kek(
                "the master key must be 32 bytes, written as 64 hex digits or base64 \
                 (e.g. `openssl rand -hex 32`)"
                    .into(),
            )
        };
        let t = std::str::from_utf8(text).map_err(|_| malformed())?.trim();
        let bytes = Zeroizing::new(
            hex::decode(t)
                .ok()
                .filter(|b| b.len() == 32)
                .or_else(|| base64::engine::general_purpose::STANDARD.decode(t).ok())
                .ok_or_else(malformed)?,
        );
        Self::from_bytes(&bytes)
    }

    fn cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(Key::from_slice(&self.0))
    }

    /// A sealed check value for this key (hex nonce and ciphertext).
    pub fn check_value(&self) -> String {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = self
            .cipher()
            .encrypt(&nonce, KEK_CHECK)
            .expect("sealing a constant cannot fail");
        format!("{}:{}", hex::encode(nonce), hex::encode(ct))
    }

    /// Whether `check` was made by [`Kek::check_value`] with this key.
    pub fn opens(&self, check: &str) -> bool {
        let Some((nonce, ct)) = check.split_once(':') else {
            return false;
        };
        match (hex::decode(nonce), hex::decode(ct)) {
            (Ok(n), Ok(c)) if n.len() == 12 => {
                self.cipher()
                    .decrypt(Nonce::from_slice(&n), c.as_slice())
                    .ok()
                    .as_deref()
                    == Some(KEK_CHECK)
            }
            _ => false,
        }
    }
}

/// An API token as listed (never the token itself).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TokenInfo {
    /// The token's id (its second part, not secret).
    pub token_id: String,
    /// The access key the token speaks for.
    pub access_key_id: String,
    /// Creation time, seconds since the epoch.
    pub created: u64,
    /// Expiry, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    /// Revocation time, if revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked: Option<u64>,
    /// A label given at creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl From<&TokenRecord> for TokenInfo {
    fn from(r: &TokenRecord) -> Self {
        Self {
            token_id: r.token_id.clone(),
            access_key_id: r.access_key_id.clone(),
            created: r.created,
            expires: r.expires,
            revoked: r.revoked,
            name: r.name.clone(),
        }
    }
}

/// A newly issued API token.
pub struct NewToken {
    /// What was stored about it.
    pub info: TokenInfo,
    /// The token (shown once).
    pub token: SecretString,
}

impl NewToken {
    /// The token and its details, for showing once.
    pub fn reveal(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(&self.info).unwrap_or_default();
        v["Token"] = self.token.expose_secret().into();
        v
    }
}

/// The stored tokens and the key their hashes are made with: what a server
/// keeps in memory to check bearer tokens without reading files each time.
pub struct TokenSet {
    hash_key: Zeroizing<[u8; 32]>,
    records: Vec<TokenRecord>,
}

/// Every API token starts with this, so it is recognisable in a leak scan.
pub const TOKEN_PREFIX: &str = "kntk";

impl TokenSet {
    fn mac(&self, token: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.hash_key.as_slice())
            .expect("HMAC takes any key length");
        mac.update(token.as_bytes());
        mac
    }

    /// The token's details if `token` is one of these, not revoked and not
    /// expired at `now` (seconds since the epoch). Whether its access key is
    /// still active is the caller's check.
    pub fn verify(&self, token: &str, now: u64) -> Result<TokenInfo, KeyError> {
        let mut parts = token.split('_');
        let (Some(TOKEN_PREFIX), Some(id), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(KeyError::BadToken);
        };
        let r = self
            .records
            .iter()
            .find(|r| r.token_id == id)
            .ok_or(KeyError::BadToken)?;
        let stored = hex::decode(&r.hash).map_err(|_| KeyError::BadToken)?;
        self.mac(token)
            .verify_slice(&stored)
            .map_err(|_| KeyError::BadToken)?;
        if r.revoked.is_some() || r.expires.is_some_and(|e| now >= e) {
            return Err(KeyError::BadToken);
        }
        Ok(TokenInfo::from(r))
    }
}

/// Access keys and API tokens: issued, listed, revoked and opened,
/// whichever [`KeyVault`] keeps them.
#[derive(Clone)]
pub struct KeyStore {
    vault: Arc<dyn KeyVault>,
    kek: KekSource,
}

/// Where the key-encryption key comes from.
#[derive(Clone)]
enum KekSource {
    /// `keys.key` in the data directory, created on first use.
    File(PathBuf),
    /// Given (the master key of a shared database).
    Given(Kek),
}

/// The vault of one data directory: `keys.json` and `tokens.json`, changed
/// under `keys.lock`, with each change's audit record appended to the
/// directory's trail first.
#[derive(Debug, Clone)]
pub struct FileVault {
    keys: PathBuf,
    tokens: PathBuf,
    lock: PathBuf,
    audit: PathBuf,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes `bytes` to `path` atomically with mode 0600 (callers hold the
/// store's lock, so one temporary name is enough).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    // The rename itself must survive a crash too.
    if let Some(dir) = path.parent() {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const SECRET_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn random_string(alphabet: &[u8], len: usize) -> String {
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let mut b = [0u8; 1];
        OsRng.fill_bytes(&mut b);
        // Rejection sampling keeps the characters uniform.
        let limit = 256 - 256 % alphabet.len();
        if usize::from(b[0]) < limit {
            out.push(char::from(alphabet[usize::from(b[0]) % alphabet.len()]));
        }
    }
    out
}

/// Checks the form of an access key id (`[A-Z0-9]{16,128}`).
pub fn validate_access_key_id(id: &str) -> Result<(), KeyError> {
    if (16..=128).contains(&id.len()) && id.bytes().all(|b| ALNUM.contains(&b)) {
        Ok(())
    } else {
        Err(KeyError::Invalid(format!(
            "access key id {id:?} must be 16-128 characters A-Z and 0-9"
        )))
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, KeyError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| KeyError::Corrupt {
            path: path.to_owned(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(KeyError::Io {
            path: path.to_owned(),
            source: e,
        }),
    }
}

fn write_json<T: Serialize>(path: &Path, records: &[T]) -> Result<(), KeyError> {
    let json = serde_json::to_vec_pretty(records).map_err(|e| KeyError::Corrupt {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    write_private(path, &json)
}

/// Runs `f` holding the exclusive lock on the file `lock` (released when the
/// file closes, also if the process dies).
fn locked<T>(lock: &Path, f: impl FnOnce() -> Result<T, KeyError>) -> Result<T, KeyError> {
    if let Some(dir) = lock.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options.open(lock).map_err(io(lock))?;
    file.lock().map_err(io(lock))?;
    let out = f();
    drop(file);
    out
}

fn mtime(path: &Path) -> String {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or_else(|| "none".into(), |d| d.as_nanos().to_string())
}

impl FileVault {
    /// The vault of `data_dir` (created on first write).
    pub fn new(data_dir: &Path) -> Self {
        Self {
            keys: data_dir.join("keys.json"),
            tokens: data_dir.join("tokens.json"),
            lock: data_dir.join("keys.lock"),
            audit: data_dir.join(kenning_store::AUDIT_FILE),
        }
    }

    /// Path of `keys.json`.
    pub fn path(&self) -> &Path {
        &self.keys
    }

    /// Path of `tokens.json`.
    pub fn tokens_path(&self) -> &Path {
        &self.tokens
    }

    fn locked<T>(&self, f: impl FnOnce() -> Result<T, KeyError>) -> Result<T, KeyError> {
        locked(&self.lock, f)
    }

    fn record(&self, entry: Entry) -> Result<(), KeyError> {
        AuditLog::open(&self.audit)
            .and_then(|log| log.append(entry))
            .map(|_| ())
            .map_err(|e| KeyError::Audit(e.to_string()))
    }
}

impl KeyVault for FileVault {
    fn records(&self) -> Result<Vec<KeyRecord>, KeyError> {
        read_json(&self.keys)
    }

    fn insert(&self, record: KeyRecord, audit: Entry) -> Result<(), KeyError> {
        self.locked(|| {
            let mut records = self.records()?;
            if records
                .iter()
                .any(|r| r.access_key_id == record.access_key_id)
            {
                return Err(KeyError::Invalid(format!(
                    "access key {} exists already",
                    record.access_key_id
                )));
            }
            if record.root && records.iter().any(|r| r.root && r.revoked.is_none()) {
                return Err(KeyError::RootExists);
            }
            records.push(record);
            self.record(audit)?;
            write_json(&self.keys, &records)
        })
    }

    fn revoke(&self, access_key_id: &str, at: u64, audit: Entry) -> Result<(), KeyError> {
        self.locked(|| {
            let mut records = self.records()?;
            let r = records
                .iter_mut()
                .find(|r| r.access_key_id == access_key_id && r.revoked.is_none())
                .ok_or_else(|| KeyError::NotFound(access_key_id.into()))?;
            r.revoked = Some(at);
            self.record(audit)?;
            write_json(&self.keys, &records)
        })
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, KeyError> {
        read_json(&self.tokens)
    }

    fn insert_token(&self, record: TokenRecord, audit: Entry) -> Result<(), KeyError> {
        self.locked(|| {
            let mut records = self.tokens()?;
            records.push(record);
            self.record(audit)?;
            write_json(&self.tokens, &records)
        })
    }

    fn revoke_token(
        &self,
        token_id: &str,
        at: u64,
        audit: &dyn Fn(&TokenInfo) -> Entry,
    ) -> Result<(), KeyError> {
        self.locked(|| {
            let mut records = self.tokens()?;
            let r = records
                .iter_mut()
                .find(|r| r.token_id == token_id && r.revoked.is_none())
                .ok_or_else(|| KeyError::NotFound(format!("token {token_id}")))?;
            r.revoked = Some(at);
            self.record(audit(&TokenInfo::from(&*r)))?;
            write_json(&self.tokens, &records)
        })
    }

    fn version(&self) -> Result<String, KeyError> {
        Ok(format!("{}/{}", mtime(&self.keys), mtime(&self.tokens)))
    }

    fn recheck(&self) -> Duration {
        Duration::ZERO
    }

    fn location(&self) -> String {
        self.keys.display().to_string()
    }
}

impl KeyStore {
    /// The key store of `data_dir` (created on first write).
    pub fn new(data_dir: &Path) -> Self {
        Self {
            vault: Arc::new(FileVault::new(data_dir)),
            kek: KekSource::File(data_dir.join("keys.key")),
        }
    }

    /// Keys kept in `vault`, sealed with `kek`.
    pub fn with_vault(vault: Arc<dyn KeyVault>, kek: Kek) -> Self {
        Self {
            vault,
            kek: KekSource::Given(kek),
        }
    }

    /// Where the sealed records are kept.
    pub fn vault(&self) -> &dyn KeyVault {
        self.vault.as_ref()
    }

    fn cipher(&self) -> Result<ChaCha20Poly1305, KeyError> {
        Ok(ChaCha20Poly1305::new(Key::from_slice(
            self.master()?.as_slice(),
        )))
    }

    /// The 32 bytes of the key-encryption key (`keys.key`, created on first
    /// use, or the given master key).
    fn master(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let key_file = match &self.kek {
            KekSource::Given(k) => return Ok(k.0.clone()),
            KekSource::File(f) => f,
        };
        if key_file.exists() {
            return read_key_file(key_file);
        }
        // Created under the key files' lock, so two processes (or threads)
        // starting at once cannot each make, and seal with, their own key.
        locked(&key_file.with_file_name("keys.lock"), || {
            read_key_file(key_file)
        })
    }
}

/// Reads `keys.key`, creating it if missing.
fn read_key_file(key_file: &Path) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    match std::fs::read(key_file).map(Zeroizing::new) {
        Ok(bytes) if bytes.len() == 32 => Ok(bytes),
        Ok(_) => Err(KeyError::Corrupt {
            path: key_file.to_owned(),
            message: "expected 32 bytes".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = key_file.parent() {
                std::fs::create_dir_all(dir).map_err(io(dir))?;
            }
            let key = Zeroizing::new(ChaCha20Poly1305::generate_key(&mut OsRng).to_vec());
            write_private(key_file, &key)?;
            Ok(key)
        }
        Err(e) => Err(KeyError::Io {
            path: key_file.to_owned(),
            source: e,
        }),
    }
}

impl KeyStore {
    fn seal(
        &self,
        access_key_id: &str,
        secret: &str,
        root: bool,
        grant: &Grant,
    ) -> Result<KeyRecord, KeyError> {
        let cipher = self.cipher()?;
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.as_bytes(),
                    aad: access_key_id.as_bytes(),
                },
            )
            .map_err(|_| KeyError::Invalid("encryption failed".into()))?;
        Ok(KeyRecord {
            access_key_id: access_key_id.into(),
            nonce: hex::encode(nonce),
            secret: hex::encode(ct),
            sealed: 1,
            created: now(),
            revoked: None,
            root,
            role: grant.role,
            collections: grant.collections.clone(),
            operations: grant.operations.clone(),
        })
    }

    /// Opens a record's secret.
    fn open(&self, cipher: &ChaCha20Poly1305, r: &KeyRecord) -> Result<SecretString, KeyError> {
        let corrupt = |message: &str| KeyError::Corrupt {
            path: PathBuf::from(self.vault.location()),
            message: format!("key {}: {message}", r.access_key_id),
        };
        let nonce = hex::decode(&r.nonce).map_err(|_| corrupt("bad nonce"))?;
        if nonce.len() != 12 {
            return Err(corrupt("bad nonce"));
        }
        let ct = hex::decode(&r.secret).map_err(|_| corrupt("bad secret"))?;
        let aad: &[u8] = if r.sealed >= 1 {
            r.access_key_id.as_bytes()
        } else {
            b""
        };
        let secret = cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: ct.as_slice(),
                    aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| {
                corrupt(
                    "cannot decrypt (was the key-encryption key replaced, or the record moved?)",
                )
            })?;
        Ok(std::str::from_utf8(&secret)
            .map_err(|_| corrupt("secret is not UTF-8"))?
            .into())
    }

    /// Issues a new key pair with `grant` and stores it (`root`: the key
    /// generated on the service's first start), with the audit record
    /// `audit` gives for it.
    pub fn create(
        &self,
        root: bool,
        grant: &Grant,
        audit: impl FnOnce(&KeyInfo) -> Entry,
    ) -> Result<NewKey, KeyError> {
        grant.validate().map_err(KeyError::Invalid)?;
        let key = NewKey {
            access_key_id: format!("AKKN{}", random_string(ALNUM, 16)),
            secret_access_key: random_string(SECRET_CHARS, 40).into(),
        };
        let record = self.seal(
            &key.access_key_id,
            key.secret_access_key.expose_secret(),
            root,
            grant,
        )?;
        let entry = audit(&KeyInfo {
            access_key_id: key.access_key_id.clone(),
            created: record.created,
            revoked: None,
            root,
            grant: grant.clone(),
        });
        self.vault.insert(record, entry)?;
        Ok(key)
    }

    /// Every key, revoked ones included.
    pub fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        Ok(self
            .vault
            .records()?
            .into_iter()
            .map(|r| KeyInfo {
                grant: r.grant(),
                access_key_id: r.access_key_id,
                created: r.created,
                revoked: r.revoked,
                root: r.root,
            })
            .collect())
    }

    /// Revokes a key, with the audit record `audit`; requests signed with
    /// it (and its API tokens) are refused from then on.
    pub fn revoke(&self, access_key_id: &str, audit: Entry) -> Result<(), KeyError> {
        self.vault.revoke(access_key_id, now(), audit)
    }

    /// The stored root key's id, if one was generated and is not revoked.
    pub fn root(&self) -> Result<Option<String>, KeyError> {
        Ok(self
            .vault
            .records()?
            .into_iter()
            .find(|r| r.root && r.revoked.is_none())
            .map(|r| r.access_key_id))
    }

    /// Every key not revoked, by access key id: its secret and who it is.
    pub fn active(&self) -> Result<HashMap<String, ActiveKey>, KeyError> {
        let records = self.vault.records()?;
        if records.is_empty() {
            return Ok(HashMap::new());
        }
        let cipher = self.cipher()?;
        let mut out = HashMap::new();
        for r in records.into_iter().filter(|r| r.revoked.is_none()) {
            let secret = self.open(&cipher, &r)?;
            let principal = Principal::new(&r.access_key_id, r.grant());
            out.insert(r.access_key_id.clone(), ActiveKey { secret, principal });
        }
        Ok(out)
    }

    /// Every key (revoked ones included) with its secret sealed again under
    /// `to`, everything else unchanged: the records a store sealed with `to`
    /// (a database's master key) takes over.
    pub fn resealed(&self, to: &Kek) -> Result<Vec<KeyRecord>, KeyError> {
        let records = self.vault.records()?;
        if records.is_empty() {
            return Ok(records);
        }
        let from = self.cipher()?;
        let target = KeyStore {
            vault: self.vault.clone(),
            kek: KekSource::Given(to.clone()),
        };
        records
            .into_iter()
            .map(|r| {
                let secret = self.open(&from, &r)?;
                let mut sealed =
                    target.seal(&r.access_key_id, secret.expose_secret(), r.root, &r.grant())?;
                sealed.created = r.created;
                sealed.revoked = r.revoked;
                Ok(sealed)
            })
            .collect()
    }

    /// Whether `kek` is this store's key-encryption key, so its API tokens'
    /// hashes stay valid in a store sealed with `kek`.
    pub fn sealed_with(&self, kek: &Kek) -> Result<bool, KeyError> {
        Ok(self.master()?.as_slice().ct_eq(kek.0.as_slice()).into())
    }

    /// The key API tokens are hashed with, derived from the key-encryption
    /// key (moving tokens to another store needs the same master key).
    fn token_hash_key(&self) -> Result<Zeroizing<[u8; 32]>, KeyError> {
        let master = self.master()?;
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&master).expect("HMAC takes any key length");
        mac.update(b"kenning api token hash key v1");
        let mut hash_key = Zeroizing::new([0u8; 32]);
        hash_key.copy_from_slice(&mac.finalize().into_bytes());
        Ok(hash_key)
    }

    /// The stored tokens with their hash key, for checking bearer tokens.
    pub fn tokens(&self) -> Result<TokenSet, KeyError> {
        Ok(TokenSet {
            hash_key: self.token_hash_key()?,
            records: self.vault.tokens()?,
        })
    }

    /// Issues an API token for `access_key_id` (which the caller has checked
    /// is an active key), valid for `valid_secs` if given, stored with the
    /// audit record `audit` gives for it.
    pub fn create_token(
        &self,
        access_key_id: &str,
        name: Option<String>,
        valid_secs: Option<u64>,
        audit: impl FnOnce(&TokenInfo) -> Entry,
    ) -> Result<NewToken, KeyError> {
        validate_access_key_id(access_key_id)?;
        let token_id = random_string(ALNUM, 16);
        let token: SecretString = format!(
            "{TOKEN_PREFIX}_{token_id}_{}",
            random_string(SECRET_CHARS, 32)
        )
        .into();
        let created = now();
        let set = TokenSet {
            hash_key: self.token_hash_key()?,
            records: Vec::new(),
        };
        let record = TokenRecord {
            token_id,
            access_key_id: access_key_id.into(),
            hash: hex::encode(set.mac(token.expose_secret()).finalize().into_bytes()),
            created,
            expires: valid_secs.map(|s| created.saturating_add(s)),
            revoked: None,
            name,
        };
        let info = TokenInfo::from(&record);
        self.vault.insert_token(record, audit(&info))?;
        Ok(NewToken { info, token })
    }

    /// Every token, revoked and expired ones included (never the tokens).
    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>, KeyError> {
        Ok(self.vault.tokens()?.iter().map(TokenInfo::from).collect())
    }

    /// Revokes a token, with the audit record `audit` gives for it.
    pub fn revoke_token(
        &self,
        token_id: &str,
        audit: impl Fn(&TokenInfo) -> Entry,
    ) -> Result<(), KeyError> {
        self.vault.revoke_token(token_id, now(), &audit)
    }

    /// Who a bearer token speaks for: the principal (role and scope) of its
    /// access key, if the token is valid and the key stored and active.
    /// This is the check the REST API and the console sign users in with.
    pub fn token_principal(&self, token: &str) -> Result<Principal, KeyError> {
        let info = self.tokens()?.verify(token, now())?;
        self.active()?
            .remove(&info.access_key_id)
            .map(|k| k.principal)
            .ok_or(KeyError::BadToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn entry(op: &str) -> Entry {
        Entry {
            operation: op.into(),
            outcome: "ok".into(),
            ..Entry::default()
        }
    }

    #[test]
    fn create_list_revoke_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let store = KeyStore::new(dir);
        let k = store
            .create(false, &Grant::admin(), |_| entry("CreateAccessKey"))
            .unwrap();
        validate_access_key_id(&k.access_key_id).unwrap();
        let secret = k.secret_access_key.expose_secret();
        assert_eq!(secret.len(), 40);
        let secrets = store.active().unwrap();
        assert_eq!(secrets[&k.access_key_id].secret.expose_secret(), secret);
        assert!(!format!("{:?} {k:?}", secrets[&k.access_key_id]).contains(secret));
        let raw = std::fs::read_to_string(dir.join("keys.json")).unwrap();
        assert!(!raw.contains(secret), "secret stored in clear");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("keys.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // A trail that cannot be appended to (its last line was tampered
        // with) stops the change.
        let trail = dir.join(kenning_store::AUDIT_FILE);
        let good = std::fs::read(&trail).unwrap();
        std::fs::write(&trail, [good.as_slice(), b"{\"hash\":1}\n"].concat()).unwrap();
        assert!(matches!(
            store.revoke(&k.access_key_id, entry("RevokeAccessKey")),
            Err(KeyError::Audit(_))
        ));
        assert_eq!(
            store.active().unwrap().len(),
            1,
            "an unaudited revocation changes nothing"
        );
        std::fs::write(&trail, &good).unwrap();
        store
            .revoke(&k.access_key_id, entry("RevokeAccessKey"))
            .unwrap();
        assert!(store.active().unwrap().is_empty());
        assert!(matches!(
            store.revoke(&k.access_key_id, entry("RevokeAccessKey")),
            Err(KeyError::NotFound(_))
        ));
        assert_eq!(store.list().unwrap().len(), 1);
        assert_eq!(kenning_audit::verify(&trail).unwrap().records, 2);
    }

    #[test]
    fn master_keys_parse_and_check() {
        let hex_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
        let k = Kek::parse(hex_key.as_bytes()).unwrap();
        let check = k.check_value();
        assert!(k.opens(&check));
        let other = Kek::parse(format!("{}\n", "11".repeat(32)).as_bytes()).unwrap();
        assert!(!other.opens(&check));
        assert!(Kek::parse(b"too short").is_err());
        assert!(Kek::parse(&[7u8; 32]).is_ok(), "a raw 32-byte key file");
    }
}

#[cfg(test)]
mod token_tests {
    use super::tests::entry;
    use super::*;

    #[test]
    fn a_sealed_secret_moved_to_another_record_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        let a = store
            .create(false, &Grant::admin(), |_| entry("C"))
            .unwrap();
        let b = store
            .create(false, &Grant::admin(), |_| entry("C"))
            .unwrap();
        let vault = FileVault::new(dir.path());
        let mut records = vault.records().unwrap();
        let (nonce, secret) = (records[0].nonce.clone(), records[0].secret.clone());
        records[1].nonce = nonce;
        records[1].secret = secret;
        write_json(vault.path(), &records).unwrap();
        let err = store.active().unwrap_err().to_string();
        assert!(err.contains(&b.access_key_id), "{err}");
        assert!(!err.contains(a.secret_access_key.expose_secret()));
    }

    #[test]
    fn tokens_verify_until_revoked_or_expired_and_are_stored_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        let grant = Grant {
            role: crate::Role::Operator,
            collections: Some(vec!["cases-*".into()]),
            operations: None,
        };
        let k = store.create(false, &grant, |_| entry("C")).unwrap();
        let t = store
            .create_token(&k.access_key_id, Some("ci".into()), None, |_| entry("T"))
            .unwrap();
        let token = t.token.expose_secret();
        assert!(token.starts_with("kntk_") && token.len() > 50, "{token}");
        let p = store.token_principal(token).unwrap();
        assert_eq!(p.access_key, k.access_key_id);
        assert_eq!(p.role(), crate::Role::Operator);
        let raw = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
        assert!(!raw.contains(token.rsplit('_').next().unwrap()));
        // Neither the SigV4 secret nor a changed token is a token.
        assert!(store
            .token_principal(k.secret_access_key.expose_secret())
            .is_err());
        let mut changed = token.to_owned().into_bytes();
        let last = changed.len() - 1;
        changed[last] = if changed[last] == b'A' { b'B' } else { b'A' };
        assert!(matches!(
            store.token_principal(std::str::from_utf8(&changed).unwrap()),
            Err(KeyError::BadToken)
        ));
        // Expiry.
        let short = store
            .create_token(&k.access_key_id, None, Some(60), |_| entry("T"))
            .unwrap();
        let set = store.tokens().unwrap();
        let s = short.token.expose_secret();
        assert!(set.verify(s, now()).is_ok());
        assert!(set.verify(s, now() + 61).is_err());
        // Revoking the token, or its key, ends it.
        store
            .revoke_token(&t.info.token_id, |_| entry("R"))
            .unwrap();
        assert!(store.token_principal(token).is_err());
        store.revoke(&k.access_key_id, entry("R")).unwrap();
        assert!(store.token_principal(s).is_err());
        assert_eq!(store.list_tokens().unwrap().len(), 2);
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..5 {
                        store
                            .create(false, &Grant::admin(), |_| entry("C"))
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(store.list().unwrap().len(), 40);
        assert_eq!(store.active().unwrap().len(), 40);
    }
}
