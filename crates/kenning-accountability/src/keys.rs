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

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

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
}

/// One stored key as kept in `keys.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyRecord {
    access_key_id: String,
    /// Hex ChaCha20-Poly1305 nonce.
    nonce: String,
    /// Hex ciphertext of the secret.
    secret: String,
    /// Sealing version: 1 binds the access key id as associated data; 0
    /// (keys written before) has none.
    #[serde(default)]
    sealed: u8,
    /// Seconds since the epoch.
    created: u64,
    /// Seconds since the epoch, when revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked: Option<u64>,
    /// The root key generated on first start.
    #[serde(default)]
    root: bool,
    /// What the key may do; keys written before roles existed are admin keys.
    #[serde(default)]
    role: Role,
    /// Collections the key may touch (`None`: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    collections: Option<Vec<String>>,
    /// Operations the key may run, within its role (`None`: all of the role's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    operations: Option<Vec<String>>,
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

/// One stored API token as kept in `tokens.json` (its hash, never itself).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenRecord {
    token_id: String,
    access_key_id: String,
    /// Hex HMAC-SHA256 of the whole token under the token key.
    hash: String,
    created: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
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

/// The key store of one data directory.
#[derive(Debug, Clone)]
pub struct KeyStore {
    keys: PathBuf,
    key_file: PathBuf,
    tokens: PathBuf,
    lock: PathBuf,
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

/// The records of a key file (none when it does not exist yet).
fn read_list<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, KeyError> {
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

/// Replaces a key file's records (callers hold the store's lock).
fn write_list<T: Serialize>(path: &Path, records: &[T]) -> Result<(), KeyError> {
    let json = serde_json::to_vec_pretty(records).map_err(|e| KeyError::Corrupt {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    write_private(path, &json)
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

impl KeyStore {
    /// The key store of `data_dir` (created on first write).
    pub fn new(data_dir: &Path) -> Self {
        Self {
            keys: data_dir.join("keys.json"),
            key_file: data_dir.join("keys.key"),
            tokens: data_dir.join("tokens.json"),
            lock: data_dir.join("keys.lock"),
        }
    }

    /// Runs `f` holding the store's exclusive file lock (released when the
    /// file closes, also if the process dies).
    fn locked<T>(&self, f: impl FnOnce() -> Result<T, KeyError>) -> Result<T, KeyError> {
        if let Some(dir) = self.lock.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(&self.lock).map_err(io(&self.lock))?;
        file.lock().map_err(io(&self.lock))?;
        let out = f();
        drop(file);
        out
    }

    /// Path of `keys.json`, whose modification time tells a server to reload.
    pub fn path(&self) -> &Path {
        &self.keys
    }

    fn cipher(&self) -> Result<ChaCha20Poly1305, KeyError> {
        Ok(ChaCha20Poly1305::new(Key::from_slice(
            self.master()?.as_slice(),
        )))
    }

    /// The 32 bytes of `keys.key`, created on first use.
    fn master(&self) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        match std::fs::read(&self.key_file).map(Zeroizing::new) {
            Ok(bytes) if bytes.len() == 32 => Ok(bytes),
            Ok(_) => Err(KeyError::Corrupt {
                path: self.key_file.clone(),
                message: "expected 32 bytes".into(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = self.key_file.parent() {
                    std::fs::create_dir_all(dir).map_err(io(dir))?;
                }
                let key = Zeroizing::new(ChaCha20Poly1305::generate_key(&mut OsRng).to_vec());
                write_private(&self.key_file, &key)?;
                Ok(key)
            }
            Err(e) => Err(KeyError::Io {
                path: self.key_file.clone(),
                source: e,
            }),
        }
    }

    fn read(&self) -> Result<Vec<KeyRecord>, KeyError> {
        read_list(&self.keys)
    }

    fn write(&self, records: &[KeyRecord]) -> Result<(), KeyError> {
        write_list(&self.keys, records)
    }

    fn insert(
        &self,
        access_key_id: &str,
        secret: &str,
        root: bool,
        grant: &Grant,
    ) -> Result<(), KeyError> {
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
        let mut records = self.read()?;
        if records.iter().any(|r| r.access_key_id == access_key_id) {
            return Err(KeyError::Invalid(format!(
                "access key {access_key_id} exists already"
            )));
        }
        records.push(KeyRecord {
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
        });
        self.write(&records)
    }

    /// Issues a new key pair with `grant` and stores it (`root`: the key
    /// generated on the service's first start). `audit` sees the new key
    /// before it is stored and can veto it.
    pub fn create(
        &self,
        root: bool,
        grant: &Grant,
        audit: impl FnOnce(&KeyInfo) -> Result<(), String>,
    ) -> Result<NewKey, KeyError> {
        grant.validate().map_err(KeyError::Invalid)?;
        let key = NewKey {
            access_key_id: format!("AKKN{}", random_string(ALNUM, 16)),
            secret_access_key: random_string(SECRET_CHARS, 40).into(),
        };
        audit(&KeyInfo {
            access_key_id: key.access_key_id.clone(),
            created: now(),
            revoked: None,
            root,
            grant: grant.clone(),
        })
        .map_err(KeyError::Audit)?;
        self.locked(|| {
            self.insert(
                &key.access_key_id,
                key.secret_access_key.expose_secret(),
                root,
                grant,
            )
        })?;
        Ok(key)
    }

    /// Every key, revoked ones included.
    pub fn list(&self) -> Result<Vec<KeyInfo>, KeyError> {
        Ok(self
            .read()?
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

    /// Revokes a key; requests signed with it are refused from then on.
    /// `audit` runs before the change is stored and can veto it.
    pub fn revoke(
        &self,
        access_key_id: &str,
        audit: impl FnOnce() -> Result<(), String>,
    ) -> Result<(), KeyError> {
        self.locked(|| {
            let mut records = self.read()?;
            let r = records
                .iter_mut()
                .find(|r| r.access_key_id == access_key_id && r.revoked.is_none())
                .ok_or_else(|| KeyError::NotFound(access_key_id.into()))?;
            r.revoked = Some(now());
            audit().map_err(KeyError::Audit)?;
            self.write(&records)
        })
    }

    /// The stored root key's id, if one was generated and is not revoked.
    pub fn root(&self) -> Result<Option<String>, KeyError> {
        Ok(self
            .read()?
            .into_iter()
            .find(|r| r.root && r.revoked.is_none())
            .map(|r| r.access_key_id))
    }

    /// Every key not revoked, by access key id: its secret and who it is.
    pub fn active(&self) -> Result<HashMap<String, ActiveKey>, KeyError> {
        let records = self.read()?;
        if records.is_empty() {
            return Ok(HashMap::new());
        }
        let cipher = self.cipher()?;
        let mut out = HashMap::new();
        for r in records.into_iter().filter(|r| r.revoked.is_none()) {
            let corrupt = |message: &str| KeyError::Corrupt {
                path: self.keys.clone(),
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
                    corrupt("cannot decrypt (was keys.key replaced, or the record moved?)")
                })?;
            let secret = std::str::from_utf8(&secret)
                .map_err(|_| corrupt("secret is not UTF-8"))?
                .into();
            let principal = Principal::new(&r.access_key_id, r.grant());
            out.insert(r.access_key_id.clone(), ActiveKey { secret, principal });
        }
        Ok(out)
    }
}

impl KeyStore {
    fn read_tokens(&self) -> Result<Vec<TokenRecord>, KeyError> {
        read_list(&self.tokens)
    }

    fn write_tokens(&self, records: &[TokenRecord]) -> Result<(), KeyError> {
        write_list(&self.tokens, records)
    }

    /// Path of `tokens.json`, whose modification time tells a server to reload.
    pub fn tokens_path(&self) -> &Path {
        &self.tokens
    }

    /// The stored tokens with their hash key, for checking bearer tokens.
    pub fn tokens(&self) -> Result<TokenSet, KeyError> {
        let master = self.master()?;
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&master).expect("HMAC takes any key length");
        mac.update(b"kenning api token hash key v1");
        let mut hash_key = Zeroizing::new([0u8; 32]);
        hash_key.copy_from_slice(&mac.finalize().into_bytes());
        Ok(TokenSet {
            hash_key,
            records: self.read_tokens()?,
        })
    }

    /// Issues an API token for `access_key_id` (which the caller has checked
    /// is an active key), valid for `valid_secs` if given. `audit` sees it
    /// before it is stored and can veto it.
    pub fn create_token(
        &self,
        access_key_id: &str,
        name: Option<String>,
        valid_secs: Option<u64>,
        audit: impl FnOnce(&TokenInfo) -> Result<(), String>,
    ) -> Result<NewToken, KeyError> {
        validate_access_key_id(access_key_id)?;
        let token_id = random_string(ALNUM, 16);
        let token: SecretString = format!(
            "{TOKEN_PREFIX}_{token_id}_{}",
            random_string(SECRET_CHARS, 32)
        )
        .into();
        let created = now();
        let set = self.tokens()?;
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
        audit(&info).map_err(KeyError::Audit)?;
        self.locked(|| {
            let mut records = self.read_tokens()?;
            records.push(record);
            self.write_tokens(&records)
        })?;
        Ok(NewToken { info, token })
    }

    /// Every token, revoked and expired ones included (never the tokens).
    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>, KeyError> {
        Ok(self.read_tokens()?.iter().map(TokenInfo::from).collect())
    }

    /// Revokes a token; `audit` runs before the change is stored.
    pub fn revoke_token(
        &self,
        token_id: &str,
        audit: impl FnOnce(&TokenInfo) -> Result<(), String>,
    ) -> Result<(), KeyError> {
        self.locked(|| {
            let mut records = self.read_tokens()?;
            let r = records
                .iter_mut()
                .find(|r| r.token_id == token_id && r.revoked.is_none())
                .ok_or_else(|| KeyError::NotFound(format!("token {token_id}")))?;
            r.revoked = Some(now());
            audit(&TokenInfo::from(&*r)).map_err(KeyError::Audit)?;
            self.write_tokens(&records)
        })
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

    #[test]
    fn create_list_revoke_round_trip() {
        let dir = std::env::temp_dir().join(format!("kenning-keys-{}", uuid::Uuid::new_v4()));
        let store = KeyStore::new(&dir);
        let k = store.create(false, &Grant::admin(), |_| Ok(())).unwrap();
        validate_access_key_id(&k.access_key_id).unwrap();
        let secret = k.secret_access_key.expose_secret();
        assert_eq!(secret.len(), 40);
        let secrets = store.active().unwrap();
        assert_eq!(secrets[&k.access_key_id].secret.expose_secret(), secret);
        assert!(!format!("{:?} {k:?}", secrets[&k.access_key_id]).contains(secret));
        let raw = std::fs::read_to_string(store.path()).unwrap();
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
        assert!(matches!(
            store.revoke(&k.access_key_id, || Err("audit down".into())),
            Err(KeyError::Audit(_))
        ));
        assert_eq!(
            store.active().unwrap().len(),
            1,
            "a vetoed revocation changes nothing"
        );
        store.revoke(&k.access_key_id, || Ok(())).unwrap();
        assert!(store.active().unwrap().is_empty());
        assert!(matches!(
            store.revoke(&k.access_key_id, || Ok(())),
            Err(KeyError::NotFound(_))
        ));
        assert_eq!(store.list().unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[cfg(test)]
mod token_tests {
    use super::*;

    #[test]
    fn a_sealed_secret_moved_to_another_record_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        let a = store.create(false, &Grant::admin(), |_| Ok(())).unwrap();
        let b = store.create(false, &Grant::admin(), |_| Ok(())).unwrap();
        let mut records = store.read().unwrap();
        let (nonce, secret) = (records[0].nonce.clone(), records[0].secret.clone());
        records[1].nonce = nonce;
        records[1].secret = secret;
        store.write(&records).unwrap();
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
        let k = store.create(false, &grant, |_| Ok(())).unwrap();
        let t = store
            .create_token(&k.access_key_id, Some("ci".into()), None, |_| Ok(()))
            .unwrap();
        let token = t.token.expose_secret();
        assert!(token.starts_with("kntk_") && token.len() > 50, "{token}");
        let p = store.token_principal(token).unwrap();
        assert_eq!(p.access_key, k.access_key_id);
        assert_eq!(p.role(), crate::Role::Operator);
        let raw = std::fs::read_to_string(store.tokens_path()).unwrap();
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
            .create_token(&k.access_key_id, None, Some(60), |_| Ok(()))
            .unwrap();
        let set = store.tokens().unwrap();
        let s = short.token.expose_secret();
        assert!(set.verify(s, now()).is_ok());
        assert!(set.verify(s, now() + 61).is_err());
        // Revoking the token, or its key, ends it.
        store.revoke_token(&t.info.token_id, |_| Ok(())).unwrap();
        assert!(store.token_principal(token).is_err());
        store.revoke(&k.access_key_id, || Ok(())).unwrap();
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
                        store.create(false, &Grant::admin(), |_| Ok(())).unwrap();
                    }
                });
            }
        });
        assert_eq!(store.list().unwrap().len(), 40);
        assert_eq!(store.active().unwrap().len(), 40);
    }
}
