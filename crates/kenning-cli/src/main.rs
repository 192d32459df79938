//! `kenning`: face detection, embedding and comparison from the command line.

#![forbid(unsafe_code)]

mod accountable;
mod batch;
mod commands;
mod eval;
mod gallery;
mod inputs;
mod migrate;
mod model_dirs;
mod report;
mod serve;
mod storage;
mod video;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Kenning: self-hosted face recognition with calibrated, accountable matching.
#[derive(Parser)]
#[command(name = "kenning", version, about)]
struct Cli {
    /// Folder with the model files and ONNX Runtime (installed by
    /// scripts/setup-models.sh). Default: `models/` next to the executable, then
    /// the per-user data directory's `kenning/models`, then `./models`.
    #[arg(long, global = true, env = "KENNING_MODELS")]
    models: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Detector working resolution: the longer image side is scaled down to this.
    #[arg(long, global = true, default_value_t = kenning_models::DetectorConfig::default().max_side)]
    working_size: u32,
    /// Minimum detector confidence (0-100) for a face.
    #[arg(long, global = true, default_value_t = kenning_models::DetectorConfig::default().min_score * 100.0)]
    min_confidence: f32,
    #[command(flatten)]
    data: gallery::DataArgs,
    /// Recogniser manifest file (overrides --recogniser).
    #[arg(long, global = true)]
    manifest: Option<PathBuf>,
    /// Built-in recogniser for new collections and for detect, embed,
    /// compare, calibrate and eval: sface-2021dec (default) or
    /// dlib-resnet-v1. Existing collections always use their own.
    #[arg(long, global = true, env = "KENNING_RECOGNISER")]
    recogniser: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Detect faces; one JSON line per image: {"File", "FaceDetails"}.
    Detect {
        /// Image files, folders or glob patterns.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Detect and embed faces; one JSON line per image: {"File", "Faces"}.
    Embed {
        /// Image files, folders or glob patterns.
        #[arg(required = true)]
        images: Vec<String>,
        /// Only the largest face of each image.
        #[arg(long)]
        largest: bool,
    },
    /// Compare the largest face of SOURCE with the faces of TARGET (CompareFaces).
    Compare {
        /// Image with the face to look for.
        source: PathBuf,
        /// Image to look in.
        target: PathBuf,
        /// Minimum Similarity (0-100) for a match.
        #[arg(long, default_value_t = kenning_models::compare::DEFAULT_SIMILARITY_THRESHOLD)]
        threshold: f64,
    },
    /// Build a distance-to-false-match-rate table from impostor photos, or
    /// calibrate a collection on its own gallery (--collection).
    Calibrate(eval::CalibrateArgs),
    /// Measure accuracy and demographic differentials on labelled photos.
    #[command(subcommand)]
    Eval(eval::EvalCommand),
    /// Create, list, describe or delete collections.
    #[command(subcommand)]
    Collection(gallery::CollectionCommand),
    /// Add the faces of images to a collection (IndexFaces).
    Index(gallery::IndexArgs),
    /// Search a collection by image (SearchFacesByImage) or by FaceId (SearchFaces).
    Search(gallery::SearchArgs),
    /// List or delete a collection's faces.
    #[command(subcommand)]
    Faces(gallery::FacesCommand),
    /// Users: create, delete, list, associate, disassociate, search.
    #[command(subcommand)]
    Users(gallery::UsersCommand),
    /// Work with model files.
    #[command(subcommand)]
    Models(commands::ModelsCommand),
    /// Serve Rekognition's API (AWS JSON 1.1 with SigV4), the REST API, /healthz and /metrics.
    Serve(serve::ServeArgs),
    /// Issue, list or revoke access keys (with roles and scopes).
    #[command(subcommand)]
    Keys(serve::KeysCommand),
    /// TLS helpers: a self-signed certificate for development.
    #[command(subcommand)]
    Tls(serve::TlsCommand),
    /// Show or set a collection's policy (purpose binding, review, retention).
    #[command(subcommand)]
    Policy(accountable::PolicyCommand),
    /// The human review queue: list, confirm or reject candidates.
    #[command(subcommand)]
    Review(accountable::ReviewCommand),
    /// Verify or export the hash-chained audit trail.
    #[command(subcommand)]
    Audit(accountable::AuditCommand),
    /// Apply the collections' retention policies now.
    #[command(subcommand)]
    Retention(accountable::RetentionCommand),
    /// Stored video: detect faces, or search a collection for the people in a video.
    #[command(subcommand)]
    Video(video::VideoCommand),
    /// The accountability report for a period, from the audit trail.
    Report(report::ReportArgs),
    /// Copy a data directory (collections, faces, users, reviews, keys, the
    /// audit chain) into a PostgreSQL database.
    Migrate(migrate::MigrateArgs),
}

fn main() {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("kenning: {e:#}");
            std::process::exit(2);
        }
    }
}

fn run(cli: Cli) -> Result<i32> {
    if let Some(n) = cli.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()?;
    }
    let ctx = commands::Context {
        models: cli.models,
        threads: cli.threads.unwrap_or_else(rayon::current_num_threads),
        working_size: cli.working_size,
        min_confidence: cli.min_confidence,
        manifest: cli.manifest,
        recogniser: cli.recogniser,
    };
    match cli.command {
        Command::Detect { images } => commands::detect(&ctx, &images),
        Command::Embed { images, largest } => commands::embed(&ctx, &images, largest),
        Command::Compare {
            source,
            target,
            threshold,
        } => commands::compare(&ctx, &source, &target, threshold),
        Command::Calibrate(args) => eval::calibrate(&ctx, &cli.data, &args),
        Command::Eval(cmd) => eval::run(&ctx, &cli.data, cmd),
        Command::Collection(cmd) => gallery::collection(&ctx, &cli.data, cmd),
        Command::Index(args) => gallery::index(&ctx, &cli.data, &args),
        Command::Search(args) => gallery::search(&ctx, &cli.data, &args),
        Command::Faces(cmd) => gallery::faces(&ctx, &cli.data, cmd),
        Command::Users(cmd) => gallery::users(&ctx, &cli.data, cmd),
        Command::Models(cmd) => commands::models(&ctx, cmd),
        Command::Serve(args) => serve::serve(&ctx, &cli.data, &args),
        Command::Keys(cmd) => serve::keys(&cli.data, cmd),
        Command::Tls(cmd) => serve::tls(cmd),
        Command::Policy(cmd) => accountable::policy(&ctx, &cli.data, cmd),
        Command::Review(cmd) => accountable::review(&ctx, &cli.data, cmd),
        Command::Audit(cmd) => accountable::audit(&ctx, &cli.data, cmd),
        Command::Retention(cmd) => accountable::retention(&ctx, &cli.data, cmd),
        Command::Video(cmd) => video::run(&ctx, &cli.data, cmd),
        Command::Report(args) => report::report(&ctx, &cli.data, &args),
        Command::Migrate(args) => migrate::migrate(&ctx, &cli.data.db, &args),
    }
}
