//! Collection, face and user subcommands: Rekognition's operations on the
//! data directory, printed as Rekognition-shaped JSON.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context as _, Result};
use clap::{Args, Subcommand};
use kenning_collections::{Collections, QualityFilter};
use serde::Serialize;
use serde_json::json;

use crate::commands::{wire, Context};
use crate::{batch, inputs};

/// Where collections live.
#[derive(Args, Clone)]
pub struct DataArgs {
    /// Data directory (collections, faces, indexes).
    #[arg(long, global = true, env = "KENNING_DATA", default_value = "data")]
    pub data: PathBuf,
}

impl DataArgs {
    fn open(&self, ctx: &Context) -> Result<Collections> {
        let pipeline = Arc::new(ctx.pipeline()?);
        Collections::open(&self.data, pipeline).map_err(wire)
    }
}

fn print<T: Serialize>(value: &T) -> Result<i32> {
    println!("{}", serde_json::to_string(value)?);
    Ok(0)
}

fn read_image(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// `kenning collection ...`
#[derive(Subcommand)]
pub enum CollectionCommand {
    /// CreateCollection.
    Create {
        /// Collection id.
        id: String,
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

pub fn collection(ctx: &Context, data: &DataArgs, cmd: CollectionCommand) -> Result<i32> {
    let c = data.open(ctx)?;
    match cmd {
        CollectionCommand::Create { id } => print(&c.create_collection(&id).map_err(wire)?),
        CollectionCommand::List {
            max_results,
            next_token,
        } => print(
            &c.list_collections(next_token.as_deref(), max_results)
                .map_err(wire)?,
        ),
        CollectionCommand::Describe { id } => print(&c.describe_collection(&id).map_err(wire)?),
        CollectionCommand::Delete { id } => {
            print(&json!({ "StatusCode": c.delete_collection(&id).map_err(wire)? }))
        }
    }
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
    let quality: QualityFilter = args.quality_filter.parse().map_err(wire)?;
    let paths = inputs::expand(&args.images)?;
    let c = data.open(ctx)?;
    c.describe_collection(&args.collection).map_err(wire)?;
    let tally = Mutex::new((0usize, 0usize, BTreeMap::<String, usize>::new()));
    let failed = batch::run(&paths, |p| {
        let ext = args
            .external_image_id
            .clone()
            .unwrap_or_else(|| external_id(p));
        let r = c
            .index_faces(
                &args.collection,
                &read_image(p)?,
                Some(&ext),
                args.max_faces,
                quality,
            )
            .map_err(wire)?;
        let mut t = tally.lock().map_err(|_| anyhow!("poisoned"))?;
        t.0 += r.face_records.len();
        t.1 += r.unindexed_faces.len();
        for u in &r.unindexed_faces {
            for reason in &u.reasons {
                *t.2.entry(
                    serde_json::to_value(reason)?
                        .as_str()
                        .unwrap_or("?")
                        .to_owned(),
                )
                .or_default() += 1;
            }
        }
        let mut line = serde_json::to_value(&r)?;
        line["File"] = json!(p);
        Ok(Some(line.to_string()))
    });
    c.flush().map_err(wire)?;
    let (indexed, unindexed, reasons) = tally.into_inner().map_err(|_| anyhow!("poisoned"))?;
    let reasons: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
    eprintln!(
        "kenning: {} images, {failed} failed; {indexed} faces indexed, {unindexed} not indexed{}",
        paths.len(),
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
    let c = data.open(ctx)?;
    match (&args.image, &args.face_id) {
        (_, Some(face)) => print(
            &c.search_faces(&args.collection, face, args.threshold, args.max_faces)
                .map_err(wire)?,
        ),
        (Some(image), None) => {
            let quality: QualityFilter = args.quality_filter.parse().map_err(wire)?;
            let r = c
                .search_faces_by_image(
                    &args.collection,
                    &read_image(image)?,
                    args.threshold,
                    args.max_faces,
                    quality,
                )
                .map_err(wire)?;
            print(&r)
        }
        (None, None) => Err(anyhow!(
            "InvalidParameterException: give an image or --face-id"
        )),
    }
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
    let c = data.open(ctx)?;
    match cmd {
        FacesCommand::List {
            collection,
            user_id,
            max_results,
            next_token,
        } => print(
            &c.list_faces(
                &collection,
                user_id.as_deref(),
                next_token.as_deref(),
                max_results,
            )
            .map_err(wire)?,
        ),
        FacesCommand::Delete {
            collection,
            face_ids,
        } => {
            let r = c.delete_faces(&collection, &face_ids).map_err(wire)?;
            c.flush().map_err(wire)?;
            print(&r)
        }
    }
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
    let c = data.open(ctx)?;
    match cmd {
        UsersCommand::Create {
            collection,
            user_id,
        } => {
            c.create_user(&collection, &user_id).map_err(wire)?;
            print(&json!({}))
        }
        UsersCommand::Delete {
            collection,
            user_id,
        } => {
            c.delete_user(&collection, &user_id).map_err(wire)?;
            print(&json!({}))
        }
        UsersCommand::List {
            collection,
            max_results,
            next_token,
        } => print(
            &c.list_users(&collection, next_token.as_deref(), max_results)
                .map_err(wire)?,
        ),
        UsersCommand::Associate {
            collection,
            user_id,
            face_ids,
        } => print(
            &c.associate_faces(&collection, &user_id, &face_ids)
                .map_err(wire)?,
        ),
        UsersCommand::Disassociate {
            collection,
            user_id,
            face_ids,
        } => print(
            &c.disassociate_faces(&collection, &user_id, &face_ids)
                .map_err(wire)?,
        ),
        UsersCommand::Search {
            collection,
            user_id,
            face_id,
            image,
            threshold,
            max_users,
        } => match image {
            Some(img) => print(
                &c.search_users_by_image(
                    &collection,
                    &read_image(&img)?,
                    threshold,
                    max_users,
                    QualityFilter::None,
                )
                .map_err(wire)?,
            ),
            None => print(
                &c.search_users(
                    &collection,
                    user_id.as_deref(),
                    face_id.as_deref(),
                    threshold,
                    max_users,
                )
                .map_err(wire)?,
            ),
        },
    }
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
