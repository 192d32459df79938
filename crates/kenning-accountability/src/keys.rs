//! Access keys, stored encrypted at rest.
//!
//! SigV4 verification recomputes an HMAC with the caller's secret, so the
//! server needs the raw secret: a one-way hash (as for passwords) cannot
//! work. Secrets are therefore encrypted with ChaCha20-Poly1305 under a
//! random 256-bit key kept in `keys.key` beside `keys.json` in the data
//! directory, both written with mode 0600. This protects the secrets in
//! backups and copies of `keys.json` made without the key file; it does not
//! protect them from someone who can read the whole data directory, who can
//! also read every face in it.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};

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
}

/// One stored key as kept in `keys.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyRecord {
    access_key_id: String,
    /// Hex ChaCha20-Poly1305 nonce.
    nonce: String,
    /// Hex ciphertext of the secret.
    secret: String,
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
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NewKey {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key (shown once).
    pub secret_access_key: String,
}

/// Whether `a` and `b` are the same secret, in time that does not depend on
/// where they differ (so a caller cannot find a secret byte by byte).
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A key that may sign requests.
#[derive(Debug, Clone)]
pub struct ActiveKey {
    /// The secret access key.
    pub secret: String,
    /// Who the key speaks for.
    pub principal: Principal,
}

/// The key store of one data directory.
#[derive(Debug, Clone)]
pub struct KeyStore {
    keys: PathBuf,
    key_file: PathBuf,
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

/// Writes `bytes` to `path` atomically with mode 0600.
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
    std::fs::rename(&tmp, path).map_err(io(path))
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
        }
    }

    /// Path of `keys.json`, whose modification time tells a server to reload.
    pub fn path(&self) -> &Path {
        &self.keys
    }

    fn cipher(&self) -> Result<ChaCha20Poly1305, KeyError> {
        match std::fs::read(&self.key_file) {
            Ok(bytes) if bytes.len() == 32 => Ok(ChaCha20Poly1305::new(Key::from_slice(&bytes))),
            Ok(_) => Err(KeyError::Corrupt {
                path: self.key_file.clone(),
                message: "expected 32 bytes".into(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if let Some(dir) = self.key_file.parent() {
                    std::fs::create_dir_all(dir).map_err(io(dir))?;
                }
                let key = ChaCha20Poly1305::generate_key(&mut OsRng);
                write_private(&self.key_file, key.as_slice())?;
                Ok(ChaCha20Poly1305::new(&key))
            }
            Err(e) => Err(KeyError::Io {
                path: self.key_file.clone(),
                source: e,
            }),
        }
    }

    fn read(&self) -> Result<Vec<KeyRecord>, KeyError> {
        match std::fs::read(&self.keys) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| KeyError::Corrupt {
                path: self.keys.clone(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(KeyError::Io {
                path: self.keys.clone(),
                source: e,
            }),
        }
    }

    fn write(&self, records: &[KeyRecord]) -> Result<(), KeyError> {
        let json = serde_json::to_vec_pretty(records).map_err(|e| KeyError::Corrupt {
            path: self.keys.clone(),
            message: e.to_string(),
        })?;
        write_private(&self.keys, &json)
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
            .encrypt(&nonce, secret.as_bytes())
            .map_err(|_| KeyError::Invalid("encryption failed".into()))?;
        let mut records = self.read()?;
        records.push(KeyRecord {
            access_key_id: access_key_id.into(),
            nonce: hex::encode(nonce),
            secret: hex::encode(ct),
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
            secret_access_key: random_string(SECRET_CHARS, 40),
        };
        audit(&KeyInfo {
            access_key_id: key.access_key_id.clone(),
            created: now(),
            revoked: None,
            root,
            grant: grant.clone(),
        })
        .map_err(KeyError::Audit)?;
        self.insert(&key.access_key_id, &key.secret_access_key, root, grant)?;
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
        let mut records = self.read()?;
        let r = records
            .iter_mut()
            .find(|r| r.access_key_id == access_key_id && r.revoked.is_none())
            .ok_or_else(|| KeyError::NotFound(access_key_id.into()))?;
        r.revoked = Some(now());
        audit().map_err(KeyError::Audit)?;
        self.write(&records)
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
            let secret = cipher
                .decrypt(Nonce::from_slice(&nonce), ct.as_slice())
                .map_err(|_| corrupt("cannot decrypt (was keys.key replaced?)"))?;
            let secret = String::from_utf8(secret).map_err(|_| corrupt("secret is not UTF-8"))?;
            let principal = Principal::new(&r.access_key_id, r.grant());
            out.insert(r.access_key_id.clone(), ActiveKey { secret, principal });
        }
        Ok(out)
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
        assert_eq!(k.secret_access_key.len(), 40);
        let secrets = store.active().unwrap();
        assert_eq!(secrets[&k.access_key_id].secret, k.secret_access_key);
        let raw = std::fs::read_to_string(store.path()).unwrap();
        assert!(
            !raw.contains(&k.secret_access_key),
            "secret stored in clear"
        );
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
