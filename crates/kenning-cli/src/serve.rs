//! `kenning serve` and `kenning keys`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};

fn hex_string(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
use kenning_accountability::keys::{KeyInfo, KeyStore};
use kenning_accountability::{Caller, Governor, Grant, Role};
use kenning_audit::Entry;
use kenning_models::Recognisers;
use kenning_server::{Credentials, RootKey, ServerConfig};

use crate::commands::{wire, Context};
use crate::gallery::DataArgs;
use crate::storage;

/// Arguments of `kenning serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "KENNING_LISTEN", default_value = "127.0.0.1:8470")]
    listen: SocketAddr,
    /// Accept unsigned requests (signed ones are still verified). Refused on
    /// a non-loopback address unless --allow-anonymous-remote is also given.
    #[arg(long)]
    allow_anonymous: bool,
    /// Allow --allow-anonymous on a non-loopback address: anyone who can
    /// reach the port can then read and change every collection.
    #[arg(long, requires = "allow_anonymous")]
    allow_anonymous_remote: bool,
    /// Seconds a request may take before it is answered with 503.
    #[arg(long, default_value_t = 30)]
    request_timeout: u64,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 8 << 20)]
    body_limit: usize,
    /// Requests running the pipeline at once (default: 2 x cores).
    #[arg(long)]
    max_concurrent: Option<usize>,
    /// Log format.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Minutes between retention passes (0: only `kenning retention run`
    /// and the RunRetention operation).
    #[arg(long, default_value_t = 60)]
    retention_interval: u64,
    /// Serve HTTPS with this PEM certificate chain (re-read on SIGHUP).
    #[arg(long, env = "KENNING_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "KENNING_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds a client may take to send a request's headers or finish the
    /// TLS handshake before the connection is closed.
    #[arg(long, default_value_t = 10)]
    header_timeout: u64,
    #[command(flatten)]
    video: VideoServeArgs,
    #[command(flatten)]
    streams: StreamServeArgs,
    /// Requests per second each access key may make, sustained (0: no
    /// limit); over it: ThrottlingException with Retry-After.
    #[arg(long, default_value_t = 200.0)]
    key_rate: f64,
    /// Requests each access key may make at once above --key-rate.
    #[arg(long, default_value_t = 400.0)]
    key_burst: f64,
    /// Requests of one access key served at once (default 4 x cores; 0: no
    /// limit); over it: ProvisionedThroughputExceededException.
    #[arg(long)]
    key_concurrency: Option<usize>,
    /// Seconds without a request after which a console session ends.
    #[arg(long, default_value_t = 900)]
    console_idle_timeout: u64,
    /// Do not serve the web console at /console/.
    #[arg(long)]
    no_console: bool,
}

/// `kenning tls ...`
#[derive(Subcommand)]
pub enum TlsCommand {
    /// Write a self-signed certificate and key for development (cert.pem,
    /// key.pem with mode 0600). Clients must be told to trust cert.pem
    /// (boto3 `verify=`, aws `--ca-bundle`, curl `--cacert`).
    DevCert {
        /// Folder to write cert.pem and key.pem into.
        #[arg(long)]
        out: PathBuf,
        /// Host names and IP addresses the certificate is for.
        #[arg(long, value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
        names: Vec<String>,
    },
}

pub fn tls(cmd: TlsCommand) -> Result<i32> {
    let TlsCommand::DevCert { out, names } = cmd;
    let generated = rcgen::generate_simple_self_signed(names.clone())
        .context("generating a self-signed certificate")?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let cert = out.join("cert.pem");
    let key = out.join("key.pem");
    std::fs::write(&cert, generated.cert.pem())
        .with_context(|| format!("writing {}", cert.display()))?;
    write_owner_only(&key, generated.key_pair.serialize_pem().as_bytes(), false)?;
    println!(
        "{}",
        serde_json::json!({ "Certificate": cert, "Key": key, "Names": names })
    );
    Ok(0)
}

/// Stored-video options of `kenning serve`.
#[derive(Args)]
struct VideoServeArgs {
    /// A bucket videos are read from: NAME=DIR (repeatable; also
    /// KENNING_BUCKETS=NAME=DIR,...). Files are read in place.
    #[arg(long = "bucket", value_name = "NAME=DIR")]
    buckets: Vec<String>,
    /// Where a NotificationChannel's SNS topic is delivered: ARN=URL, an
    /// http:// webhook receiving Rekognition's completion JSON signed with
    /// HMAC-SHA-256 (repeatable).
    #[arg(long = "notify", value_name = "ARN=URL")]
    notify: Vec<String>,
    /// The webhooks' signing key (default: one made and kept in the data
    /// directory, printed at start when a webhook is configured).
    #[arg(long, env = "KENNING_NOTIFY_SECRET", hide_env_values = true)]
    notify_secret: Option<String>,
    /// Video jobs analysed at once.
    #[arg(long, default_value_t = 1)]
    video_workers: usize,
    /// Video jobs in progress beyond which a Start is refused (LimitExceededException).
    #[arg(long, default_value_t = 20)]
    video_max_jobs: usize,
    /// Frames analysed per second of video.
    #[arg(long, default_value_t = 5.0)]
    video_fps: f64,
    /// Largest video accepted, in bytes.
    #[arg(long, default_value_t = 10_000_000_000)]
    video_max_bytes: u64,
    /// Longest video accepted, in seconds.
    #[arg(long, default_value_t = 6 * 3600)]
    video_max_seconds: u64,
    /// Days a video job and its results are kept.
    #[arg(long, default_value_t = 7)]
    video_retention_days: u64,
    /// With --database: seconds a node's claim on a video job lasts unless
    /// renewed; a job whose node died is resumed by another node after this.
    #[arg(long, default_value_t = 30)]
    video_lease_seconds: u64,
}

impl VideoServeArgs {
    fn service(
        &self,
        data: &std::path::Path,
        jobs: Option<Arc<dyn kenning_video::JobStore>>,
        governor: Arc<Governor>,
        threads: usize,
    ) -> Result<Arc<kenning_video::VideoService>> {
        let mut buckets = kenning_video::Buckets::new();
        if let Ok(list) = std::env::var("KENNING_BUCKETS") {
            buckets.add_list(&list).map_err(wire)?;
        }
        for spec in &self.buckets {
            let (name, dir) = kenning_video::bucket::parse_spec(spec).map_err(wire)?;
            buckets.add(&name, &dir).map_err(wire)?;
        }
        let mut notify = kenning_video::Notify::default();
        for spec in &self.notify {
            let (arn, hook) = kenning_video::notify::parse_route(spec).map_err(wire)?;
            notify.routes.insert(arn, hook);
        }
        notify.secret = self.notify_secret.as_ref().map(|s| s.as_bytes().to_vec());
        anyhow::ensure!(
            self.video_fps > 0.0 && self.video_fps <= 60.0,
            "--video-fps must be between 0 and 60"
        );
        let mut config = kenning_video::VideoConfig {
            workers: self.video_workers.max(1),
            max_jobs: self.video_max_jobs.max(1),
            retention: Duration::from_secs(self.video_retention_days.max(1) * 86_400),
            lease: Duration::from_secs(self.video_lease_seconds.max(3)),
            ..Default::default()
        };
        config.sampling.fps = self.video_fps;
        config.analysis.threads = threads.max(1);
        config.limits.max_bytes = self.video_max_bytes;
        config.limits.max_duration_ms = self.video_max_seconds.saturating_mul(1000);
        let service = match jobs {
            Some(store) => {
                kenning_video::VideoService::with_store(store, governor, buckets, notify, config)
            }
            None => kenning_video::VideoService::open(data, governor, buckets, notify, config),
        }
        .map_err(wire)?;
        Ok(service)
    }
}

/// Live-stream options of `kenning serve`.
#[derive(Args)]
struct StreamServeArgs {
    /// Enable stream processors (off by default: without it every stream
    /// operation is refused with AccessDeniedException).
    #[arg(long)]
    enable_streams: bool,
    /// A live source a processor's Input.KinesisVideoStream.Arn may name by
    /// its stream name: NAME=URL with an rtsp://, rtsps://, http(s)://
    /// (MPEG-TS, HLS, MJPEG) URL, or a video file inside a --bucket
    /// directory played in real time (`#loop` at the end: again and again).
    #[arg(
        long = "stream-source",
        value_name = "NAME=URL",
        requires = "enable_streams"
    )]
    sources: Vec<String>,
    /// Where records for Output.KinesisDataStream.Arn's stream name go:
    /// NAME=sse (GET /v1/stream-outputs/NAME/events), NAME=http://... (an
    /// HMAC-signed webhook, signed with the --notify-secret key) or
    /// NAME=FILE (rotating JSON lines, matched faces only); repeatable,
    /// several sinks per name.
    #[arg(
        long = "stream-output",
        value_name = "NAME=sse|URL|FILE",
        requires = "enable_streams"
    )]
    outputs: Vec<String>,
    /// Frames analysed per second of a live stream.
    #[arg(long, default_value_t = 5.0)]
    stream_fps: f64,
    /// Most stream processors that may exist (LimitExceededException beyond).
    #[arg(long, default_value_t = 20)]
    stream_max_processors: usize,
    /// Records a webhook or file output holds while it is behind; beyond
    /// it the oldest are dropped (and counted in /metrics).
    #[arg(long, default_value_t = 1000)]
    stream_queue: usize,
    /// A file output is rotated when it would grow past this many bytes.
    #[arg(long, default_value_t = 64 << 20)]
    stream_file_max_bytes: u64,
    /// Rotated files a file output keeps (FILE.1 ... FILE.N).
    #[arg(long, default_value_t = 5)]
    stream_file_keep: usize,
    /// Scheduling niceness (0-19) of stream processors and their ffmpeg, so
    /// photo requests go first.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=19))]
    stream_niceness: i32,
    /// With --database: seconds a node's hold on a running stream processor
    /// lasts unless renewed; a processor whose node died is taken over by
    /// another node after this.
    #[arg(long, default_value_t = 30)]
    stream_lease_seconds: u64,
}

impl StreamServeArgs {
    fn service(
        &self,
        data: &std::path::Path,
        processors: Option<Arc<dyn kenning_streams::store::ProcessorStore>>,
        governor: Arc<Governor>,
        video: &kenning_video::VideoService,
        key_active: kenning_streams::KeyCheck,
    ) -> Result<Option<Arc<kenning_streams::StreamService>>> {
        if !self.enable_streams {
            return Ok(None);
        }
        anyhow::ensure!(
            self.stream_fps > 0.0 && self.stream_fps <= 30.0,
            "--stream-fps must be between 0 and 30"
        );
        let mut config = kenning_streams::StreamConfig {
            max_processors: self.stream_max_processors.max(1),
            queue: self.stream_queue.max(1),
            file_max_bytes: self.stream_file_max_bytes.max(1),
            file_keep: self.stream_file_keep,
            niceness: self.stream_niceness,
            lease: Duration::from_secs(self.stream_lease_seconds.max(3)),
            webhook_secret: video.notification_secret().to_vec(),
            ..Default::default()
        };
        config.live.fps = self.stream_fps;
        for spec in &self.sources {
            let (name, input) =
                kenning_streams::config::parse_source(spec, video.buckets()).map_err(wire)?;
            anyhow::ensure!(
                config.sources.insert(name.clone(), input).is_none(),
                "--stream-source {name} is given twice"
            );
        }
        for spec in &self.outputs {
            let (name, sink) = kenning_streams::config::parse_output(spec).map_err(wire)?;
            config.outputs.entry(name).or_default().push(sink);
        }
        let service = match processors {
            Some(store) => {
                kenning_streams::StreamService::with_store(store, governor, config, key_active)
            }
            None => kenning_streams::StreamService::open(data, governor, config, key_active),
        }
        .map_err(wire)?;
        Ok(Some(service))
    }
}

/// `kenning keys ...`
#[derive(Subcommand)]
pub enum KeysCommand {
    /// Issue a new access key (the secret is printed once).
    Create {
        /// admin, operator, reviewer or auditor.
        #[arg(long, default_value = "admin")]
        role: Role,
        /// Collections the key may use, comma-separated (a trailing * matches
        /// a prefix); default all.
        #[arg(long, value_delimiter = ',')]
        collections: Option<Vec<String>>,
        /// Operations the key may run, comma-separated, within its role;
        /// default all of the role's.
        #[arg(long, value_delimiter = ',')]
        operations: Option<Vec<String>>,
    },
    /// List access keys (never their secrets).
    List,
    /// Revoke an access key (and with it every API token issued for it).
    Revoke {
        /// The access key id.
        access_key_id: String,
    },
    /// API tokens: bearer credentials for the REST API and the console,
    /// separate from SigV4 secrets.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `kenning keys token ...`
#[derive(Subcommand)]
pub enum TokenCommand {
    /// Issue an API token for an access key; it carries the key's role and
    /// scope and is printed once (only its keyed hash is stored).
    Create {
        /// The access key the token speaks for.
        access_key_id: String,
        /// A label to tell tokens apart in `list`.
        #[arg(long)]
        name: Option<String>,
        /// Days until the token expires (default: until revoked).
        #[arg(long)]
        expires_days: Option<u64>,
    },
    /// List API tokens (never the tokens themselves).
    List,
    /// Revoke an API token.
    Revoke {
        /// The token's id (the part after `kntk_`).
        token_id: String,
    },
}

fn env_root() -> Result<Option<(String, secrecy::SecretString)>> {
    match (
        std::env::var("KENNING_ACCESS_KEY_ID")
            .ok()
            .filter(|s| !s.is_empty()),
        std::env::var("KENNING_SECRET_ACCESS_KEY")
            .ok()
            .filter(|s| !s.is_empty()),
    ) {
        (Some(id), Some(secret)) => Ok(Some((id, secret.into()))),
        (None, None) => Ok(None),
        _ => anyhow::bail!(
            "set both KENNING_ACCESS_KEY_ID and KENNING_SECRET_ACCESS_KEY, or neither"
        ),
    }
}

/// The audit record of a key change by `caller`.
fn key_change(caller: &Caller, op: &str, details: serde_json::Value) -> Entry {
    let mut entry = caller.entry(op);
    entry.details = Some(details);
    entry
}

fn key_details(k: &KeyInfo) -> serde_json::Value {
    serde_json::to_value(k).unwrap_or_default()
}

/// The caller, who must be an admin to change keys.
fn admin(data: &DataArgs, keys: &KeyStore) -> Result<Caller> {
    let caller = data.caller_in(|| Ok(keys.clone()))?;
    anyhow::ensure!(
        caller.principal.role() == Role::Admin,
        "AccessDeniedException: only an admin may issue or revoke keys"
    );
    Ok(caller)
}

pub fn keys(data: &DataArgs, cmd: KeysCommand) -> Result<i32> {
    let store = storage::keys(&data.db, &data.data)?;
    match cmd {
        KeysCommand::Create {
            role,
            collections,
            operations,
        } => {
            let caller = admin(data, &store)?;
            let grant = Grant {
                role,
                collections,
                operations,
            };
            let k = store.create(false, &grant, |info| {
                key_change(&caller, "CreateAccessKey", key_details(info))
            })?;
            println!("{}", k.reveal());
        }
        KeysCommand::List => {
            for k in store.list()? {
                println!("{}", serde_json::to_string(&k)?);
            }
        }
        KeysCommand::Revoke { access_key_id } => {
            let caller = admin(data, &store)?;
            store.revoke(
                &access_key_id,
                key_change(
                    &caller,
                    "RevokeAccessKey",
                    serde_json::json!({ "AccessKeyId": access_key_id }),
                ),
            )?;
            println!("{}", serde_json::json!({ "Revoked": access_key_id }));
        }
        KeysCommand::Token(cmd) => token(data, &store, cmd)?,
    }
    Ok(0)
}

fn token(data: &DataArgs, store: &KeyStore, cmd: TokenCommand) -> Result<()> {
    match cmd {
        TokenCommand::Create {
            access_key_id,
            name,
            expires_days,
        } => {
            let caller = admin(data, store)?;
            // A stored active key, or the root key the server takes from
            // the environment.
            let env_root = env_root()?.map(|(id, _)| id);
            anyhow::ensure!(
                store.active()?.contains_key(&access_key_id)
                    || env_root.as_deref() == Some(access_key_id.as_str()),
                "UnrecognizedClientException: no active access key {access_key_id}"
            );
            let t = store.create_token(
                &access_key_id,
                name,
                expires_days.map(|d| d.saturating_mul(86_400)),
                |info| {
                    key_change(
                        &caller,
                        "CreateApiToken",
                        serde_json::to_value(info).unwrap_or_default(),
                    )
                },
            )?;
            println!("{}", t.reveal());
        }
        TokenCommand::List => {
            for t in store.list_tokens()? {
                println!("{}", serde_json::to_string(&t)?);
            }
        }
        TokenCommand::Revoke { token_id } => {
            let caller = admin(data, store)?;
            store.revoke_token(&token_id, |info| {
                key_change(
                    &caller,
                    "RevokeApiToken",
                    serde_json::to_value(info).unwrap_or_default(),
                )
            })?;
            println!("{}", serde_json::json!({ "Revoked": token_id }));
        }
    }
    Ok(())
}

/// Writes a file only its owner can read (mode 0600 from the start, so no
/// other user can open it in between); `new`: refuse to replace one.
fn write_owner_only(path: &std::path::Path, bytes: &[u8], new: bool) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write as _;
    options
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .with_context(|| format!("writing {}", path.display()))
}

/// Shows a newly generated root secret once: on the terminal, or, when
/// stdout is not one (a service manager's log, a pipe), in a file only the
/// service's user can read, so the secret never lands in a log.
fn reveal_root(
    k: &kenning_accountability::keys::NewKey,
    data: &std::path::Path,
    stored_in: &str,
) -> Result<()> {
    use secrecy::ExposeSecret as _;
    println!("root access key id:     {}", k.access_key_id);
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        println!(
            "root secret access key: {}",
            k.secret_access_key.expose_secret()
        );
        println!("(the secret is shown only now; it is stored encrypted in {stored_in})");
        return Ok(());
    }
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let path = data.join("root-credentials.json");
    write_owner_only(&path, format!("{}\n", k.reveal()).as_bytes(), true)?;
    println!(
        "root secret access key: written to {} (mode 0600; stdout is not a terminal, so it is not printed); delete the file once the secret is kept elsewhere",
        path.display()
    );
    Ok(())
}

pub fn serve(ctx: &Context, data: &DataArgs, args: &ServeArgs) -> Result<i32> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if args.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    if args.allow_anonymous && !args.listen.ip().is_loopback() && !args.allow_anonymous_remote {
        anyhow::bail!(
            "--allow-anonymous on the non-loopback address {} needs --allow-anonymous-remote as well",
            args.listen
        );
    }
    let tls_files = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let files = kenning_server::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            // Before the models load, so a bad pair fails at once.
            files.load()?;
            Some(files)
        }
        _ => None,
    };
    // With a database nothing is kept here but stream processors (with
    // --enable-streams); without one, everything.
    if !data.data.exists() {
        std::fs::create_dir_all(&data.data)
            .with_context(|| format!("creating {}", data.data.display()))?;
        // Faces, vectors, video results and the audit trail: readable by the
        // service's user only.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&data.data, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    // Video jobs run their own detector sessions beside the requests', so a
    // long job never holds the sessions a photo request waits for.
    let recognisers: Recognisers =
        Arc::new(ctx.pipeline_with_sessions(ctx.threads.max(1) * 2)?).into();
    let storage = storage::open(&data.db, &data.data, &recognisers)?;
    let root = kenning_server::root_key(&storage.keys, env_root()?, |info| {
        key_change(
            &Caller::system("serve"),
            "CreateAccessKey",
            key_details(info),
        )
    })?;
    let store = storage.keys;
    let jobs = storage.jobs;
    let processors = storage.processors;
    let collections = kenning_server::open_collections(storage.faces, recognisers);
    let governor = Arc::new(Governor::new(
        Arc::new(collections),
        storage.reviews,
        store.clone(),
        storage.probes,
        storage.evals,
    )?);
    let video = args
        .video
        .service(&data.data, jobs, governor.clone(), ctx.threads)?;
    let key_active: kenning_streams::KeyCheck = {
        let store = store.clone();
        let env_root = match &root {
            RootKey::FromEnv { access_key_id, .. } => Some(access_key_id.clone()),
            _ => None,
        };
        let anonymous = args.allow_anonymous;
        Arc::new(move |key: &str| {
            env_root.as_deref() == Some(key)
                || (anonymous && key == "anonymous")
                || store.active().is_ok_and(|k| k.contains_key(key))
        })
    };
    let streams =
        args.streams
            .service(&data.data, processors, governor.clone(), &video, key_active)?;
    let mut config = ServerConfig::new(args.listen);
    config.allow_anonymous = args.allow_anonymous;
    config.allow_anonymous_remote = args.allow_anonymous_remote;
    config.request_timeout = Duration::from_secs(args.request_timeout.max(1));
    config.body_limit = args.body_limit;
    if let Some(n) = args.max_concurrent {
        config.max_concurrent = n.max(1);
    }
    config.retention_interval =
        (args.retention_interval > 0).then(|| Duration::from_secs(args.retention_interval * 60));
    config.header_timeout = Duration::from_secs(args.header_timeout.max(1));
    config.limits.rate = args.key_rate.max(0.0);
    config.limits.burst = args.key_burst.max(1.0);
    if let Some(n) = args.key_concurrency {
        config.limits.concurrency = n;
    }
    config.tls = tls_files;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let store_location = store.vault().location();
    if !args.no_console {
        let mut console = kenning_console::ConsoleConfig::new(data.data.clone());
        console.idle_timeout = Duration::from_secs(args.console_idle_timeout.max(1));
        console.body_limit = args.body_limit;
        console.secure_cookies = config.tls.is_some();
        config.console = Some(console);
    }
    let credentials = Credentials::new(store, &root);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The services may hold the last handles on the database, whose own
    // runtime cannot be dropped inside this one: they go after it.
    let _services = (video.clone(), streams.clone());
    runtime.block_on(async move {
        let services = kenning_server::Services {
            video: Some(video.clone()),
            streams: streams.clone(),
        };
        let server = kenning_server::bind(config, governor, credentials, services).await?;
        let addr = server.local_addr()?;
        println!("Kenning is serving Rekognition's API at {scheme}://{addr}");
        match &root {
            RootKey::FromEnv { access_key_id, .. } => {
                println!("access key id: {access_key_id} (secret from KENNING_SECRET_ACCESS_KEY)");
            }
            RootKey::Generated(k) => reveal_root(k, &data.data, &store_location)?,
            RootKey::Stored { access_key_id } => {
                println!("root access key id: {access_key_id} (its secret was printed on first start; `kenning keys create` issues another)");
            }
        }
        if args.allow_anonymous {
            println!("WARNING: unsigned requests are accepted (--allow-anonymous)");
        }
        let buckets: Vec<&str> = video.buckets().names().collect();
        if !buckets.is_empty() {
            println!("video buckets: {}", buckets.join(", "));
        }
        // Stream outputs to webhooks are signed with the same key.
        let webhooks = !args.video.notify.is_empty()
            || args.streams.outputs.iter().any(|o| o.contains("://"));
        if webhooks && args.video.notify_secret.is_none() {
            println!(
                "webhook signing key (set KENNING_NOTIFY_SECRET to choose your own): {}",
                hex_string(video.notification_secret())
            );
        }
        if streams.is_some() {
            // Names only: a source's URL may carry a camera's password.
            let names = |specs: &[String]| {
                let mut n: Vec<&str> = specs.iter().filter_map(|s| s.split('=').next()).collect();
                n.dedup();
                n.join(", ")
            };
            println!(
                "stream processors enabled; sources: {}; outputs: {}",
                names(&args.streams.sources),
                names(&args.streams.outputs),
            );
        }
        if scheme == "http" && !addr.ip().is_loopback() {
            let warning = format!(
                "WARNING: serving plain HTTP on the non-loopback address {addr}: access keys' \
                 signatures, bearer tokens and face images travel in clear; use --tls-cert and --tls-key"
            );
            println!("{warning}");
            eprintln!("{warning}");
        }
        if !args.no_console {
            println!("console: {scheme}://{addr}/console/ (sign in with an access key id and its secret, or an API token)");
        }
        println!("try: aws rekognition list-collections --endpoint-url {scheme}://{addr} --region us-east-1");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        server.run(kenning_server::shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    Ok(0)
}
