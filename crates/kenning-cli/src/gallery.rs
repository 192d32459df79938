//! Collection, face and user subcommands: Rekognition's operations on the
//! data directory, printed as Rekognition-shaped JSON.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context as _, Result};
use base64::Engine as _;
use clap::{Args, Subcommand};
use kenning_accountability::keys::KeyStore;
use kenning_accountability::{Caller, Governor, Grant, Principal};
use kenning_collections::Collections;
use kenning_models::{Pipeline, Recognisers};
use serde_json::{json, Value};

use crate::commands::{wire, Context};
use crate::storage::{self, DatabaseArgs};
use crate::{batch, inputs};

/// A database's video job store.
type JobStore = Arc<dyn kenning_video::JobStore>;

/// Where collections live, and who is acting on them.
#[derive(Args, Clone)]
pub struct DataArgs {
    /// Data directory (collections, faces, indexes, audit trail).
    #[arg(long, global = true, env = "KENNING_DATA", default_value = "data")]
    pub data: PathBuf,
    /// Act as this access key (its secret in KENNING_KEY_SECRET), with its
    /// role and scope. Without it the command acts as the local user, with
    /// the admin role (whoever can read the data directory can do anything).
    #[arg(long, global = true, env = "KENNING_KEY_ID")]
    pub key_id: Option<String>,
    /// Case reference recorded with searches (required by some policies).
    #[arg(long, global = true, env = "KENNING_CASE")]
    pub case: Option<String>,
    /// Purpose recorded with searches.
    #[arg(long, global = true)]
    pub purpose: Option<String>,
    #[command(flatten)]
    pub db: DatabaseArgs,
}

/// A governed data directory and the caller acting on it.
pub struct Session {
    gov: Governor,
    caller: Caller,
}

impl DataArgs {
    /// The principal the command acts as (`keys` opens the key store
    /// when a key is named).
    fn principal(&self, keys: impl FnOnce() -> Result<KeyStore>) -> Result<Principal> {
        let Some(id) = &self.key_id else {
            let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
            return Ok(Principal::new(&format!("local:{user}"), Grant::admin()));
        };
        let secret = std::env::var("KENNING_KEY_SECRET")
            .map_err(|_| anyhow!("--key-id {id} needs its secret in KENNING_KEY_SECRET"))?;
        let key = keys()?
            .active()?
            .remove(id)
            .ok_or_else(|| anyhow!("UnrecognizedClientException: no active access key {id}"))?;
        if !kenning_accountability::keys::same_secret(
            secrecy::ExposeSecret::expose_secret(&key.secret),
            &secret,
        ) {
            bail!("InvalidSignatureException: KENNING_KEY_SECRET is not the secret of {id}");
        }
        Ok(key.principal)
    }

    /// The caller: principal (checked against `keys`) plus case and purpose.
    pub fn caller_in(&self, keys: impl FnOnce() -> Result<KeyStore>) -> Result<Caller> {
        let mut caller = Caller::new(self.principal(keys)?);
        caller.case = self.case.clone();
        caller.purpose = self.purpose.clone();
        Ok(caller)
    }

    /// Opens the data directory (or the database) behind the accountability
    /// rules, with `pipeline`: the governor and the caller acting on it.
    pub fn governor(&self, pipeline: Arc<Pipeline>) -> Result<(Governor, Caller)> {
        self.governor_and_jobs(pipeline).map(|(g, c, _)| (g, c))
    }

    /// As [`DataArgs::governor`], with the database's video job store when
    /// the command runs on one (else jobs are kept in the data directory).
    pub fn governor_and_jobs(
        &self,
        pipeline: Arc<Pipeline>,
    ) -> Result<(Governor, Caller, Option<JobStore>)> {
        let recognisers: Recognisers = pipeline.into();
        let storage = storage::open(&self.db, &self.data, &recognisers)?;
        let caller = self.caller_in(|| Ok(storage.keys.clone()))?;
        let collections = Collections::with_store(storage.faces, recognisers);
        let governor = Governor::new(
            Arc::new(collections),
            storage.reviews,
            storage.keys,
            storage.probes,
            storage.evals,
        )?;
        Ok((governor, caller, storage.jobs))
    }

    /// Opens the data directory (or the database) behind the accountability rules.
    pub fn open(&self, ctx: &Context) -> Result<Session> {
        let (gov, caller) = self.governor(Arc::new(ctx.pipeline()?))?;
        Ok(Session { gov, caller })
    }
}

impl Session {
    /// Runs `op` with request `body` as the caller; errors read
    /// `<Exception>: <message>`.
    pub fn call(&self, op: &str, body: Value) -> Result<Value> {
        self.call_as(&self.caller, op, body)
    }

    fn call_as(&self, caller: &Caller, op: &str, body: Value) -> Result<Value> {
        self.gov
            .call(caller, op, body)
            .map(|(v, _)| v)
            .map_err(|e| anyhow!("{}: {}", e.kind, e.message))
    }

    /// Saves changed indexes.
    pub fn flush(&self) -> Result<()> {
        self.gov.collections().flush().map_err(wire)
    }
}

fn print(value: &Value) -> Result<i32> {
    println!("{}", serde_json::to_string(value)?);
    Ok(0)
}

/// An image file as a request's `{"Bytes": ...}`.
fn image_arg(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(json!({ "Bytes": base64::engine::general_purpose::STANDARD.encode(bytes) }))
}

/// Drops `None` fields so the request carries only what was given.
pub fn body(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    }
}

/// `kenning collection ...`
#[derive(Subcommand)]
pub enum CollectionCommand {
    /// CreateCollection.
    Create {
        /// Collection id.
        id: String,
        /// Policy: a JSON document or @file (see docs/accountability.md).
        #[arg(long)]
        policy: Option<String>,
    },
    /// ListCollections.
    List {
        /// Page size.
        #[arg(long)]
        max_results: Option<u32>,
        /// Token from the previous page.
        #[arg(long)]
        next_token: Option<String>,
    },
    /// DescribeCollection.
    Describe {
        /// Collection id.
        id: String,
    },
    /// DeleteCollection.
    Delete {
        /// Collection id.
        id: String,
    },
}

/// A policy given as JSON text or `@file`.
pub fn policy_arg(text: &str) -> Result<Value> {
    let text = match text.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => text.to_owned(),
    };
    serde_json::from_str(&text).context("the policy is not valid JSON")
}

pub fn collection(ctx: &Context, data: &DataArgs, cmd: CollectionCommand) -> Result<i32> {
    let s = data.open(ctx)?;
    let v = match cmd {
        CollectionCommand::Create { id, policy } => {
            let policy = policy.as_deref().map(policy_arg).transpose()?;
            s.call(
                "CreateCollection",
                body(json!({
                    "CollectionId": id,
                    "Policy": policy,
                    "Recogniser": ctx.recogniser,
                })),
            )?
        }
        CollectionCommand::List {
            max_results,
            next_token,
        } => s.call(
            "ListCollections",
            body(json!({ "MaxResults": max_results, "NextToken": next_token })),
        )?,
        CollectionCommand::Describe { id } => {
            s.call("DescribeCollection", json!({ "CollectionId": id }))?
        }
        CollectionCommand::Delete { id } => {
            s.call("DeleteCollection", json!({ "CollectionId": id }))?
        }
    };
    print(&v)
}

/// Arguments of `kenning index`.
#[derive(Args)]
pub struct IndexArgs {
    /// Collection to add faces to.
    #[arg(long)]
    collection: String,
    /// Images, folders or globs.
    #[arg(required = true)]
    images: Vec<String>,
    /// ExternalImageId for every image (default: each file's name).
    #[arg(long)]
    external_image_id: Option<String>,
    /// Most faces to index per image (the largest).
    #[arg(long)]
    max_faces: Option<usize>,
    /// NONE, AUTO, LOW, MEDIUM or HIGH.
    #[arg(long, default_value = "AUTO")]
    quality_filter: String,
    /// Index an image even when the collection already holds faces with its
    /// ExternalImageId (by default it is skipped, and reported), so a re-run
    /// over the same photos adds nothing twice.
    #[arg(long)]
    again: bool,
}

/// The ExternalImageIds a collection holds faces of.
fn external_ids(s: &Session, collection: &str) -> Result<HashSet<String>> {
    let mut ids = HashSet::new();
    let mut token: Option<String> = None;
    loop {
        let page = s.call(
            "ListFaces",
            body(json!({ "CollectionId": collection, "MaxResults": 4096, "NextToken": token })),
        )?;
        for f in page["Faces"].as_array().into_iter().flatten() {
            if let Some(ext) = f["ExternalImageId"].as_str() {
                ids.insert(ext.to_owned());
            }
        }
        token = page["NextToken"].as_str().map(str::to_owned);
        if token.is_none() {
            return Ok(ids);
        }
    }
}

/// A file name made into a valid ExternalImageId (`[a-zA-Z0-9_.\-:]+`).
fn external_id(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let id: String = name
        .chars()
        .map(|ch| {
            if ch.is_ascii_alphanumeric() || "_.-:".contains(ch) {
                ch
            } else {
                '_'
            }
        })
        .take(255)
        .collect();
    if id.is_empty() {
        "_".into()
    } else {
        id
    }
}

pub fn index(ctx: &Context, data: &DataArgs, args: &IndexArgs) -> Result<i32> {
    args.quality_filter
        .parse::<kenning_collections::QualityFilter>()
        .map_err(wire)?;
    let paths = inputs::expand(&args.images)?;
    let s = data.open(ctx)?;
    s.call(
        "DescribeCollection",
        json!({ "CollectionId": args.collection }),
    )?;
    // Faces already indexed under an ExternalImageId (before this run) are
    // not indexed again unless asked: re-running over the same photos, e.g.
    // after an interruption, is then idempotent.
    let present = if args.again {
        HashSet::new()
    } else {
        external_ids(&s, &args.collection)?
    };
    let skipped = AtomicUsize::new(0);
    let tally = Mutex::new((0usize, 0usize, BTreeMap::<String, usize>::new()));
    let failed = batch::run(&paths, |p| {
        let ext = args
            .external_image_id
            .clone()
            .unwrap_or_else(|| external_id(p));
        if present.contains(&ext) {
            skipped.fetch_add(1, AtomicOrdering::Relaxed);
            return Ok(Some(
                json!({ "File": p, "Skipped": format!("the collection already holds faces with ExternalImageId {ext}") })
                    .to_string(),
            ));
        }
        let mut line = s.call(
            "IndexFaces",
            body(json!({
                "CollectionId": args.collection,
                "Image": image_arg(p)?,
                "ExternalImageId": ext,
                "MaxFaces": args.max_faces,
                "QualityFilter": args.quality_filter,
            })),
        )?;
        let count = |k: &str| line[k].as_array().map_or(0, Vec::len);
        let mut t = tally.lock().map_err(|_| anyhow!("poisoned"))?;
        t.0 += count("FaceRecords");
        t.1 += count("UnindexedFaces");
        for u in line["UnindexedFaces"].as_array().into_iter().flatten() {
            for reason in u["Reasons"].as_array().into_iter().flatten() {
                *t.2.entry(reason.as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
            }
        }
        line["File"] = json!(p);
        Ok(Some(line.to_string()))
    });
    s.flush()?;
    let (indexed, unindexed, reasons) = tally.into_inner().map_err(|_| anyhow!("poisoned"))?;
    let reasons: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
    let skipped = skipped.into_inner();
    eprintln!(
        "kenning: {} images, {failed} failed{}; {indexed} faces indexed, {unindexed} not indexed{}",
        paths.len(),
        if skipped > 0 {
            format!(
                ", {skipped} skipped (already indexed under their ExternalImageId; --again adds them again)"
            )
        } else {
            String::new()
        },
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        }
    );
    Ok(i32::from(failed > 0))
}

/// Arguments of `kenning search`.
#[derive(Args)]
pub struct SearchArgs {
    /// Collection to search.
    #[arg(long)]
    collection: String,
    /// Image whose largest face is searched for (SearchFacesByImage).
    #[arg(required_unless_present = "face_id", conflicts_with = "face_id")]
    image: Option<PathBuf>,
    /// A stored face to search for instead (SearchFaces).
    #[arg(long)]
    face_id: Option<String>,
    /// FaceMatchThreshold: minimum Similarity (0-100).
    #[arg(long)]
    threshold: Option<f64>,
    /// Most matches to return (1-4096).
    #[arg(long)]
    max_faces: Option<usize>,
    /// NONE, AUTO, LOW, MEDIUM or HIGH (for the searched image's face).
    #[arg(long, default_value = "NONE")]
    quality_filter: String,
}

pub fn search(ctx: &Context, data: &DataArgs, args: &SearchArgs) -> Result<i32> {
    let s = data.open(ctx)?;
    let common = json!({
        "CollectionId": args.collection,
        "FaceMatchThreshold": args.threshold,
        "MaxFaces": args.max_faces,
    });
    let v = match (&args.image, &args.face_id) {
        (_, Some(face)) => {
            let mut b = common;
            b["FaceId"] = json!(face);
            s.call("SearchFaces", body(b))?
        }
        (Some(image), None) => {
            let mut b = common;
            b["Image"] = image_arg(image)?;
            b["QualityFilter"] = json!(args.quality_filter);
            s.call("SearchFacesByImage", body(b))?
        }
        (None, None) => bail!("InvalidParameterException: give an image or --face-id"),
    };
    print(&v)
}

/// `kenning faces ...`
#[derive(Subcommand)]
pub enum FacesCommand {
    /// ListFaces.
    List {
        /// Collection id.
        #[arg(long)]
        collection: String,
        /// Only this user's faces.
        #[arg(long)]
        user_id: Option<String>,
        /// Page size (1-4096).
        #[arg(long)]
        max_results: Option<u32>,
        /// Token from the previous page.
        #[arg(long)]
        next_token: Option<String>,
    },
    /// DeleteFaces.
    Delete {
        /// Collection id.
        #[arg(long)]
        collection: String,
        /// FaceIds.
        #[arg(required = true)]
        face_ids: Vec<String>,
    },
}

pub fn faces(ctx: &Context, data: &DataArgs, cmd: FacesCommand) -> Result<i32> {
    let s = data.open(ctx)?;
    let v = match cmd {
        FacesCommand::List {
            collection,
            user_id,
            max_results,
            next_token,
        } => s.call(
            "ListFaces",
            body(json!({
                "CollectionId": collection,
                "UserId": user_id,
                "MaxResults": max_results,
                "NextToken": next_token,
            })),
        )?,
        FacesCommand::Delete {
            collection,
            face_ids,
        } => {
            let v = s.call(
                "DeleteFaces",
                json!({ "CollectionId": collection, "FaceIds": face_ids }),
            )?;
            s.flush()?;
            v
        }
    };
    print(&v)
}

/// `kenning users ...`
#[derive(Subcommand)]
pub enum UsersCommand {
    /// CreateUser.
    Create {
        /// Collection id.
        #[arg(long)]
        collection: String,
        /// UserId.
        user_id: String,
    },
    /// DeleteUser.
    Delete {
        /// Collection id.
        #[arg(long)]
        collection: String,
        /// UserId.
        user_id: String,
    },
    /// ListUsers.
    List {
        /// Collection id.
        #[arg(long)]
        collection: String,
        /// Page size (1-500).
        #[arg(long)]
        max_results: Option<u32>,
        /// Token from the previous page.
        #[arg(long)]
        next_token: Option<String>,
    },
    /// AssociateFaces.
    Associate {
        /// Collection id.
        #[arg(long)]
        collection: String,
        /// UserId.
        #[arg(long)]
        user_id: String,
        /// FaceIds.
        #[arg(required = true)]
        face_ids: Vec<String>,
    },
    /// DisassociateFaces.
    Disassociate {
        /// Collection id.
        #[arg(long)]
        collection: String,
        /// UserId.
        #[arg(long)]
        user_id: String,
        /// FaceIds.
        #[arg(required = true)]
        face_ids: Vec<String>,
    },
    /// SearchUsers (by --user-id or --face-id) or SearchUsersByImage (--image).
    Search {
        /// Collection id.
        #[arg(long)]
        collection: String,
        /// Search with this user's faces.
        #[arg(long)]
        user_id: Option<String>,
        /// Search with this stored face.
        #[arg(long)]
        face_id: Option<String>,
        /// Search with the largest face of this image.
        #[arg(long)]
        image: Option<PathBuf>,
        /// UserMatchThreshold (0-100).
        #[arg(long)]
        threshold: Option<f64>,
        /// Most users to return (1-500).
        #[arg(long)]
        max_users: Option<usize>,
    },
}

pub fn users(ctx: &Context, data: &DataArgs, cmd: UsersCommand) -> Result<i32> {
    let s = data.open(ctx)?;
    let (op, b) = match cmd {
        UsersCommand::Create {
            collection,
            user_id,
        } => (
            "CreateUser",
            json!({ "CollectionId": collection, "UserId": user_id }),
        ),
        UsersCommand::Delete {
            collection,
            user_id,
        } => (
            "DeleteUser",
            json!({ "CollectionId": collection, "UserId": user_id }),
        ),
        UsersCommand::List {
            collection,
            max_results,
            next_token,
        } => (
            "ListUsers",
            json!({ "CollectionId": collection, "MaxResults": max_results, "NextToken": next_token }),
        ),
        UsersCommand::Associate {
            collection,
            user_id,
            face_ids,
        } => (
            "AssociateFaces",
            json!({ "CollectionId": collection, "UserId": user_id, "FaceIds": face_ids }),
        ),
        UsersCommand::Disassociate {
            collection,
            user_id,
            face_ids,
        } => (
            "DisassociateFaces",
            json!({ "CollectionId": collection, "UserId": user_id, "FaceIds": face_ids }),
        ),
        UsersCommand::Search {
            collection,
            user_id,
            face_id,
            image,
            threshold,
            max_users,
        } => {
            let mut b = json!({
                "CollectionId": collection,
                "UserId": user_id,
                "FaceId": face_id,
                "UserMatchThreshold": threshold,
                "MaxUsers": max_users,
            });
            match image {
                Some(img) => {
                    b["Image"] = image_arg(&img)?;
                    ("SearchUsersByImage", b)
                }
                None => ("SearchUsers", b),
            }
        }
    };
    let v = s.call(op, body(b))?;
    if matches!(op, "DeleteUser" | "AssociateFaces" | "DisassociateFaces") {
        s.flush()?;
    }
    print(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_become_valid_external_ids() {
        assert_eq!(
            external_id(Path::new("/a/b/Jane Doe (2).jpg")),
            "Jane_Doe__2_.jpg"
        );
        assert_eq!(external_id(Path::new("x:y-1.png")), "x:y-1.png");
    }
}
