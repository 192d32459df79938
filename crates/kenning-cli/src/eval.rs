//! `kenning eval ...` (verification, identification, detection and
//! demographic differentials on the deployer's own labelled photos) and
//! `kenning calibrate` (build or check a distance-to-FMR table).
//!
//! The metrics live in the kenning-eval crate; this module reads the data
//! folder, runs the pipeline over it (all cores, optional embedding cache)
//! and writes JSON, Markdown and SVG plots.

mod enrol;
mod quality;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context as _, Result};
use kenning_core::fair::MAX_STRENGTH;
use kenning_core::quality::QualityBands;
use kenning_core::PixelBox;
use kenning_eval::formats::{read_boxes, read_identities, read_labels, read_pairs};
use kenning_eval::report::group_rate_chart;
use kenning_eval::svg::{Bar, BarChart, BarGroup};
use kenning_eval::verify::{kfold_accuracy, DEFAULT_FMR_TARGETS};
use kenning_eval::{
    bar_chart_svg, check_calibration_fn, det_svg, evaluate_detection, evaluate_fairness,
    evaluate_identification, evaluate_verification, generate_pairs, split_gallery, ClusterPairs,
    Embeddings, FairCalibration, FairCalibrationConfig, FairCalibrationFit, FairnessConfig,
    GallerySplit, IdentifyConfig, LabelledSet, PairConfig, RegionDomains, ScoredPair, Scoring,
    ThresholdRule, ToMarkdown, VerifyConfig,
};
use kenning_models::calibration::similarity_from_log_fmr;
use kenning_models::pipeline::dlib_rect;
use kenning_models::CalibrationTable;
use serde::Serialize;
use serde_json::json;

use crate::commands::{load, wire, Context};
use crate::gallery::DataArgs;
use crate::{batch, inputs};
use enrol::{resolve, Embedder};

/// `kenning eval ...`
#[derive(clap::Subcommand)]
pub enum EvalCommand {
    /// 1:1 verification on DIR (identities.csv, optional pairs.csv or LFW pairs.txt): FNMR at fixed FMR, EER,
    /// k-fold accuracy, FNMR at calibrated Similarity thresholds, DET curve.
    Verify(VerifyArgs),
    /// 1:N identification on DIR (identities.csv): rank-1/rank-10 hit rates and FNIR at fixed FPIR.
    Identify(IdentifyArgs),
    /// Detection recall and precision against DIR/boxes.csv, per group when labels are given.
    Detect(DetectArgs),
    /// Demographic differentials on DIR (labels.csv): per-group FMR (and FNMR) at one global threshold.
    Fairness(FairnessArgs),
    /// The small-face rule on DIR (identities.csv): fit it (--fit) or check observed/promised FMR per
    /// face-size cell without and with it.
    Quality(quality::QualityArgs),
    /// Publish a `kenning eval fairness --json` report for the console's
    /// accuracy page and the accountability report (in the data directory,
    /// or with --database in the database every node reads), or delete one.
    Publish(PublishArgs),
}

/// `kenning eval publish FILE [--name NAME] | --delete NAME`
#[derive(clap::Args)]
pub struct PublishArgs {
    /// The report (JSON written by `kenning eval fairness --json`).
    #[arg(required_unless_present = "delete")]
    file: Option<PathBuf>,
    /// The name to publish it under (letters, digits, `_`, `.`, `-`;
    /// default: the file's name without `.json`); publishing under a taken
    /// name replaces that report.
    #[arg(long)]
    name: Option<String>,
    /// Delete the published report of this name instead.
    #[arg(long, conflicts_with_all = ["file", "name"])]
    delete: Option<String>,
}

/// Where reports go.
#[derive(clap::Args)]
pub struct OutputArgs {
    /// Write the JSON report here (default: stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a Markdown report here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Write SVG plots into this folder.
    #[arg(long)]
    plots: Option<PathBuf>,
}

/// Embedding options shared by the commands that embed photos.
#[derive(clap::Args)]
pub struct CacheArgs {
    /// Embedding cache (JSON lines). Entries are reused when the photo, the
    /// recogniser and the detector settings match; new ones are appended.
    #[arg(long)]
    cache: Option<PathBuf>,
}

/// Turning the small-face rule off.
#[derive(clap::Args)]
pub struct RuleArgs {
    /// Score without the small-face rule (the service always applies it
    /// when the recogniser has one): the "before" of a study of the rule.
    #[arg(long)]
    no_small_face_rule: bool,
}

/// How verify and identify score --similarity.
#[derive(clap::Args)]
pub struct ScoringArgs {
    /// Score --similarity with this global calibration table instead of the default calibration.
    #[arg(long, conflicts_with = "global_calibration")]
    calibration: Option<PathBuf>,
    /// Score --similarity with the recogniser's global table instead of the default calibration.
    #[arg(long)]
    global_calibration: bool,
    #[command(flatten)]
    rule: RuleArgs,
}

/// What [`ScoringArgs`] choose.
struct ChosenScoring {
    /// The calibration --similarity is scored with, and its description.
    similarity: Option<(SimilarityScoring, String)>,
    /// The small-face rule on top, if any.
    rule: Option<QualityBands>,
    /// The words the report's `scoring` field uses for the rule.
    rule_words: String,
}

impl ScoringArgs {
    /// The calibration and small-face rule these options choose.
    fn resolve(&self, embedder: &Embedder) -> Result<ChosenScoring> {
        let similarity = similarity_scoring(
            self.calibration.as_deref(),
            self.global_calibration,
            embedder,
        )?;
        let (rule, rule_words) = small_face_rule(self.rule.no_small_face_rule, embedder);
        Ok(ChosenScoring {
            similarity,
            rule,
            rule_words,
        })
    }
}

/// Arguments of `kenning eval verify`.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Folder with the photos and identities.csv (file,identity; paths relative to it).
    dir: PathBuf,
    /// Pairs to compare: pairs.csv (file_a,file_b,same[,fold]) or LFW pairs.txt. Default: DIR/pairs.csv or
    /// DIR/pairs.txt if present, else pairs generated from identities.csv.
    #[arg(long)]
    pairs: Option<PathBuf>,
    /// Generated pairs: most impostor pairs to compare (a seeded uniform sample beyond this).
    #[arg(long, default_value_t = PairConfig::default().max_impostors)]
    max_impostors: usize,
    /// Generated pairs: folds for k-fold accuracy (all genuine pairs plus as many sampled impostor pairs).
    #[arg(long, default_value_t = 10)]
    folds: u32,
    /// Seed for pair sampling and fold assignment.
    #[arg(long, default_value_t = PairConfig::default().seed)]
    seed: u64,
    /// FMR targets for the FNMR table.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_FMR_TARGETS.to_vec())]
    fmr: Vec<f64>,
    /// Similarity thresholds (0-100) at which to report FNMR and FMR. Each
    /// pair is scored exactly as CompareFaces and searches score it: with
    /// the default calibration (the recogniser's shipped fair calibration),
    /// unless --calibration or --global-calibration says otherwise, and
    /// then the recogniser's small-face rule with both faces' sizes (faces
    /// under 60 px), unless --no-small-face-rule.
    #[arg(long, value_delimiter = ',', default_values_t = vec![80.0, 90.0, 99.0])]
    similarity: Vec<f64>,
    #[command(flatten)]
    scoring: ScoringArgs,
    #[command(flatten)]
    cache: CacheArgs,
    #[command(flatten)]
    out: OutputArgs,
}

/// Arguments of `kenning eval identify`.
#[derive(clap::Args)]
pub struct IdentifyArgs {
    /// Folder with the photos and identities.csv.
    dir: PathBuf,
    /// Enrol exactly these photos (one path relative to DIR per line); identities without an enrolled photo
    /// become unmated probes. Default: first photo of each identity, with --unenrolled of identities left out.
    #[arg(long)]
    gallery: Option<PathBuf>,
    /// Fraction of identities left out of the gallery, so their photos are unmated searches.
    #[arg(long, default_value_t = 0.2)]
    unenrolled: f64,
    /// Also count each mated probe, searched without its mate, as an unmated search (more unmated searches on
    /// small sets).
    #[arg(long)]
    leave_mate_out: bool,
    /// FPIR targets for the FNIR table.
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.01, 0.003])]
    fpir: Vec<f64>,
    /// Candidate list length for FNIR.
    #[arg(long, default_value_t = 1)]
    candidates: usize,
    /// Seed for choosing the unenrolled identities.
    #[arg(long, default_value_t = 0x6b65_6e6e)]
    seed: u64,
    /// Similarity thresholds (0-100) at which to search as SearchFacesByImage
    /// does: each probe against every gallery face scored with the default
    /// calibration, then the small-face rule with both faces' sizes (unless
    /// --no-small-face-rule), matches at or above the threshold ranked by
    /// Similarity and the first --candidates kept. Reports FNIR and FPIR.
    #[arg(long, value_delimiter = ',', default_values_t = vec![80.0, 90.0])]
    similarity: Vec<f64>,
    #[command(flatten)]
    scoring: ScoringArgs,
    #[command(flatten)]
    cache: CacheArgs,
    #[command(flatten)]
    out: OutputArgs,
}

/// Arguments of `kenning eval detect`.
#[derive(clap::Args)]
pub struct DetectArgs {
    /// Folder with the photos and boxes.csv (file,left,top,width,height[,ignore], pixels).
    dir: PathBuf,
    /// labels.csv for per-group detection rates (default: DIR/labels.csv if present).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Label columns forming the groups.
    #[arg(long, value_delimiter = ',')]
    groups: Vec<String>,
    /// IoU a detection needs with a face box to find it.
    #[arg(long, default_value_t = kenning_eval::detect::DEFAULT_IOU)]
    iou: f64,
    /// Compare the detector's own boxes instead of mapping them to dlib's box convention.
    #[arg(long)]
    raw_boxes: bool,
    #[command(flatten)]
    out: OutputArgs,
}

/// Arguments of `kenning eval fairness`.
#[derive(clap::Args)]
pub struct FairnessArgs {
    /// Folder with the photos and labels.csv (file plus group columns); one photo per person unless
    /// DIR/identities.csv says otherwise.
    dir: PathBuf,
    /// labels.csv (default: DIR/labels.csv).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Label columns forming the groups.
    #[arg(long, value_delimiter = ',', default_values_t = vec!["gender".to_string(), "race".to_string()])]
    groups: Vec<String>,
    /// Overall FMR targets: one global threshold per target.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1e-4, 1e-5])]
    fmr: Vec<f64>,
    /// Also report at these Similarities. Without a calibration option every
    /// threshold (these and --fmr's) is on the default calibration, exactly
    /// as CompareFaces and searches score (the recogniser's shipped fair
    /// calibration, then its small-face rule with both faces' sizes unless
    /// --no-small-face-rule); without --similarity, on the raw distance
    /// (which the rule cannot correct; likewise with the global options).
    #[arg(long, value_delimiter = ',')]
    similarity: Vec<f64>,
    /// Score with the raw distance and give --similarity through this global
    /// calibration table instead of the default calibration.
    #[arg(long, conflicts_with_all = ["global_calibration", "fair_calibration"])]
    calibration: Option<PathBuf>,
    /// Score with the raw distance and give --similarity through the
    /// recogniser's global table instead of the default calibration.
    #[arg(long, conflicts_with = "fair_calibration")]
    global_calibration: bool,
    /// Score with this fair (per-cluster) calibration file (and the small-face rule on top).
    #[arg(long)]
    fair_calibration: Option<PathBuf>,
    #[command(flatten)]
    rule: RuleArgs,
    /// Sets with genuine pairs (identities.csv, optional labels.csv) for FNMR; per group when labelled.
    #[arg(long)]
    genuine: Vec<PathBuf>,
    /// Bootstrap replicates for the confidence intervals.
    #[arg(long, default_value_t = FairnessConfig::default().bootstrap_replicates)]
    bootstrap: usize,
    #[command(flatten)]
    cache: CacheArgs,
    #[command(flatten)]
    out: OutputArgs,
}

/// Runs one `kenning eval` subcommand.
pub fn run(ctx: &Context, data: &crate::gallery::DataArgs, cmd: EvalCommand) -> Result<i32> {
    match cmd {
        EvalCommand::Publish(a) => publish(ctx, data, &a),
        EvalCommand::Verify(a) => verify(ctx, &a),
        EvalCommand::Identify(a) => identify(ctx, &a),
        EvalCommand::Detect(a) => detect(ctx, &a),
        EvalCommand::Fairness(a) => fairness(ctx, &a),
        EvalCommand::Quality(a) => quality::quality(ctx, &a),
    }?;
    Ok(0)
}

/// Publishes (or deletes) a report through the governed PutEvalReport
/// (DeleteEvalReport) operation, so it is checked and audited as the
/// service's is.
fn publish(ctx: &Context, data: &crate::gallery::DataArgs, a: &PublishArgs) -> Result<()> {
    let (op, body) = match (&a.delete, &a.file) {
        (Some(name), _) => ("DeleteEvalReport", json!({ "Name": name })),
        (None, Some(file)) => {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading {}", file.display()))?;
            let name = match &a.name {
                Some(n) => n.clone(),
                None => file
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .map(str::to_owned)
                    .ok_or_else(|| anyhow!("give the report a --name"))?,
            };
            ("PutEvalReport", json!({ "Name": name, "Report": text }))
        }
        (None, None) => bail!("give the report FILE, or --delete NAME"),
    };
    let v = data.open(ctx)?.call(op, body)?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// The command line as run, so every report says how to reproduce it.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("kenning {}", args.join(" "))
}

/// Writes the JSON (file or stdout), Markdown and plots.
fn write_outputs(
    out: &OutputArgs,
    json: &serde_json::Value,
    title: &str,
    md: &str,
    plots: &[(String, String)],
) -> Result<()> {
    let text = serde_json::to_string_pretty(json)?;
    match &out.json {
        Some(p) => {
            std::fs::write(p, text + "\n").with_context(|| format!("writing {}", p.display()))?
        }
        None => println!("{text}"),
    }
    if let Some(p) = &out.markdown {
        let doc = format!("# {title}\n\nCommand: `{}`\n\n{md}", command_line());
        std::fs::write(p, doc).with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(dir) = &out.plots {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, svg) in plots {
            let p = dir.join(name);
            std::fs::write(&p, svg).with_context(|| format!("writing {}", p.display()))?;
        }
    }
    Ok(())
}

/// Header fields every report carries.
fn header(ctx: &Context, embedder: Option<&Embedder>) -> serde_json::Value {
    json!({
        "command": command_line(),
        "kenning_version": env!("CARGO_PKG_VERSION"),
        "recogniser": embedder.map(|e| e.pipeline.recognizer().manifest().name.clone()),
        "working_size": ctx.working_size,
        "min_confidence": ctx.min_confidence,
    })
}

/// Merges `extra` into the header object.
fn with_header(mut head: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    if let (Some(h), serde_json::Value::Object(e)) = (head.as_object_mut(), extra) {
        h.extend(e);
    }
    head
}

/// A labelled set of photos: identities.csv read and resolved.
struct IdentitySet {
    files: Vec<String>,
    paths: Vec<PathBuf>,
    identities: Vec<String>,
}

fn read_identity_set(dir: &Path) -> Result<IdentitySet> {
    let records = read_identities(&dir.join("identities.csv"))?;
    Ok(IdentitySet {
        paths: records.iter().map(|r| resolve(dir, &r.file)).collect(),
        files: records.iter().map(|r| r.file.clone()).collect(),
        identities: records.into_iter().map(|r| r.identity).collect(),
    })
}

/// The enrolled photos of a set: their positions and embedding matrix.
fn enrolled(embeddings: &[Option<Vec<f32>>]) -> Result<(Vec<usize>, Embeddings)> {
    let keep: Vec<usize> = (0..embeddings.len())
        .filter(|&i| embeddings[i].is_some())
        .collect();
    let rows: Vec<Vec<f32>> = embeddings.iter().flatten().cloned().collect();
    if rows.is_empty() {
        bail!("no photo was enrolled (no faces found)");
    }
    Ok((keep, Embeddings::new(&rows)?))
}

/// The calibration table to use: a file, else the recogniser's own.
fn calibration_table(path: Option<&Path>, embedder: &Embedder) -> Result<Option<CalibrationTable>> {
    let table = match path {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let t: CalibrationTable =
                serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
            t.validate().map_err(wire)?;
            Some(t)
        }
        None => embedder.pipeline.recognizer().calibration().cloned(),
    };
    if let Some(t) = table.as_ref().filter(|t| t.impostor_pairs == 0) {
        eprintln!("kenning: warning: the calibration table is a placeholder ({}); Similarity figures mean nothing", t.source);
    }
    Ok(table)
}

/// What scores Similarity in an eval report.
enum SimilarityScoring {
    /// A global distance-to-FMR table.
    Global(CalibrationTable),
    /// A fair (per-region) calibration.
    Fair(FairCalibration),
}

impl SimilarityScoring {
    fn calibration(&self) -> kenning_models::Calibration<'_> {
        match self {
            Self::Global(t) => kenning_models::Calibration::Global(t),
            Self::Fair(f) => kenning_models::Calibration::Fair(f),
        }
    }
}

/// The calibration Similarity is scored with: a global table file, the
/// recogniser's global table (`global`), else the default calibration, the
/// one CompareFaces and searches use (the recogniser's selected
/// calibration: its shipped fair one unless KENNING_CALIBRATION says
/// otherwise). Returns it with a description for the report's `scoring`.
fn similarity_scoring(
    file: Option<&Path>,
    global: bool,
    embedder: &Embedder,
) -> Result<Option<(SimilarityScoring, String)>> {
    let recognizer = embedder.pipeline.recognizer();
    let name = &recognizer.manifest().name;
    if file.is_some() || global {
        return Ok(calibration_table(file, embedder)?.map(|t| {
            let what = format!("global calibration table ({})", t.source);
            (SimilarityScoring::Global(t), what)
        }));
    }
    Ok(recognizer.similarity_calibration().map(|c| match c {
        kenning_models::Calibration::Global(t) => (
            SimilarityScoring::Global(t.clone()),
            format!("global calibration table, the default calibration of {name}"),
        ),
        kenning_models::Calibration::Fair(f) => (
            SimilarityScoring::Fair(f.clone()),
            format!(
                "fair calibration ({} clusters), the default calibration of {name}",
                f.clusters.len()
            ),
        ),
    }))
}

/// The small-face rule a report scores with: the recogniser's, as every
/// operation that scores a pair applies it, unless turned off; with the
/// words the report's `scoring` adds.
fn small_face_rule(off: bool, embedder: &Embedder) -> (Option<QualityBands>, String) {
    match embedder.pipeline.recognizer().quality_bands() {
        None => (None, "the recogniser has no small-face rule".into()),
        Some(q) if off => (
            None,
            format!("{} not applied (--no-small-face-rule)", q.label()),
        ),
        Some(q) => (Some(q.clone()), format!("then the {}", q.label())),
    }
}

/// Scores pairs of rows of one embedding matrix exactly as CompareFaces
/// and searches do: `calibration`, then `rule` with both faces' sizes
/// (each face's region is found once).
struct PairScorer<'a> {
    calibration: kenning_models::Calibration<'a>,
    rule: Option<&'a QualityBands>,
    regions: Vec<usize>,
    pixels: &'a [Option<f32>],
}

impl<'a> PairScorer<'a> {
    fn new(
        calibration: kenning_models::Calibration<'a>,
        rule: Option<&'a QualityBands>,
        emb: &Embeddings,
        pixels: &'a [Option<f32>],
    ) -> Self {
        let regions = (0..emb.len())
            .map(|i| calibration.region(emb.row(i)))
            .collect();
        Self {
            calibration,
            rule,
            regions,
            pixels,
        }
    }

    /// Rows `x` and `y` at `distance`: their Similarity, and whether the
    /// rule changed it.
    fn similarity(&self, x: usize, y: usize, distance: f64) -> (f64, bool) {
        let (r, p) = (
            [self.regions[x], self.regions[y]],
            [self.pixels[x], self.pixels[y]],
        );
        let c = &self.calibration;
        let with = c.log_fmr_of_faces_in_regions(r, distance, self.rule, p);
        let changed =
            self.rule.is_some() && with != c.log_fmr_of_faces_in_regions(r, distance, None, p);
        (similarity_from_log_fmr(with), changed)
    }
}

/// FNMR and FMR at a Similarity threshold.
#[derive(Debug, Clone, Serialize)]
struct SimilarityRow {
    similarity: f64,
    /// FMR the calibration promises at this Similarity.
    predicted_fmr: f64,
    /// The distance threshold of a global table (a fair calibration has one
    /// per pair of regions).
    distance: Option<f64>,
    genuine_pairs: usize,
    fnmr: Option<f64>,
    impostor_pairs: usize,
    false_matches: usize,
    observed_fmr: Option<f64>,
}

/// Rows at Similarity `levels`, each pair's Similarity being `similarity[i]`.
fn similarity_rows(
    scoring: &SimilarityScoring,
    levels: &[f64],
    pairs: &[ScoredPair],
    similarity: &[f64],
) -> Vec<SimilarityRow> {
    let rate = |k: usize, n: usize| (n > 0).then(|| k as f64 / n as f64);
    let genuine = pairs.iter().filter(|p| p.same).count();
    let impostor = pairs.len() - genuine;
    levels
        .iter()
        .map(|&s| {
            let (mut fnm, mut fm) = (0, 0);
            for (p, &ps) in pairs.iter().zip(similarity) {
                match (p.same, ps >= s) {
                    (true, false) => fnm += 1,
                    (false, true) => fm += 1,
                    _ => {}
                }
            }
            SimilarityRow {
                similarity: s,
                predicted_fmr: CalibrationTable::fmr_at_similarity(s),
                distance: match scoring {
                    SimilarityScoring::Global(t) => Some(t.distance_for_similarity(s)),
                    SimilarityScoring::Fair(_) => None,
                },
                genuine_pairs: genuine,
                fnmr: rate(fnm, genuine),
                impostor_pairs: impostor,
                false_matches: fm,
                observed_fmr: rate(fm, impostor),
            }
        })
        .collect()
}

/// A face-size cell's rows at the Similarity thresholds.
#[derive(Debug, Clone, Serialize)]
struct CellRows {
    /// The cell's name, e.g. `<30 x >=60 px`.
    cell: String,
    /// Band of the smaller face, band of the larger.
    bands: [usize; 2],
    rows: Vec<SimilarityRow>,
}

/// [`similarity_rows`] per face-size cell of `bands` (the band of each
/// pair's smaller face and of its larger), over the pairs whose two sizes
/// (`sizes(i)` of pair `i`) are known; cells without pairs are left out.
fn rows_by_cell(
    bands: &QualityBands,
    scoring: &SimilarityScoring,
    levels: &[f64],
    pairs: &[ScoredPair],
    similarity: &[f64],
    sizes: impl Fn(usize) -> [Option<f32>; 2],
) -> Vec<CellRows> {
    let mut by: BTreeMap<[usize; 2], (Vec<ScoredPair>, Vec<f64>)> = BTreeMap::new();
    for (i, (p, &s)) in pairs.iter().zip(similarity).enumerate() {
        if let [Some(a), Some(b)] = sizes(i) {
            let cell = by.entry(bands.cell_of(a, b)).or_default();
            cell.0.push(*p);
            cell.1.push(s);
        }
    }
    by.into_iter()
        .map(|(key, (p, s))| CellRows {
            cell: bands.cell_name(key),
            bands: key,
            rows: similarity_rows(scoring, levels, &p, &s),
        })
        .collect()
}

fn cells_markdown(cells: &[CellRows]) -> String {
    if cells.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "
### By face size

Pairs by the size bands of their two faces (the shorter side of the detector's box).

         | face sizes | Similarity | genuine pairs | FNMR | impostor pairs | observed FMR (false matches) |
         |---|---|---|---|---|---|
",
    );
    let f = kenning_eval::report::fmt_rate;
    for c in cells {
        for r in &c.rows {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} ({}) |
",
                c.cell,
                r.similarity,
                r.genuine_pairs,
                f(r.fnmr),
                r.impostor_pairs,
                f(r.observed_fmr),
                r.false_matches
            ));
        }
    }
    s
}

fn similarity_markdown(rows: &[SimilarityRow], scoring: &str) -> String {
    let mut s = format!(
        "### At calibrated Similarity thresholds\n\nScoring: {scoring}.\n\n\
         | Similarity | promised FMR | distance threshold | FNMR | observed FMR (false matches) |\n|---|---|---|---|---|\n"
    );
    let f = kenning_eval::report::fmt_rate;
    for r in rows {
        s.push_str(&format!(
            "| {} | {:.1e} | {} | {} | {} ({}) |\n",
            r.similarity,
            r.predicted_fmr,
            r.distance
                .map_or_else(|| "per pair".to_owned(), |d| format!("{d:.4}")),
            f(r.fnmr),
            f(r.observed_fmr),
            r.false_matches
        ));
    }
    s.push_str(
        "\nAn observed FMR of 0 is expected when the set has fewer impostor pairs than 1/promised FMR; it does not \
         test the promise.\n",
    );
    s
}

fn verify(ctx: &Context, a: &VerifyArgs) -> Result<()> {
    let ids_path = a.dir.join("identities.csv");
    let pairs_path = a.pairs.clone().or_else(|| {
        ["pairs.csv", "pairs.txt"]
            .iter()
            .map(|f| a.dir.join(f))
            .find(|p| p.is_file())
    });
    let set = if ids_path.is_file() || pairs_path.is_none() {
        Some(read_identity_set(&a.dir)?)
    } else {
        None
    };
    let records = pairs_path.as_deref().map(read_pairs).transpose()?;
    // Photos to embed: those in identities.csv plus any only named by pairs.
    let mut files: Vec<String> = set.as_ref().map_or_else(Vec::new, |s| s.files.clone());
    if let Some(recs) = &records {
        let mut known: std::collections::HashSet<String> = files.iter().cloned().collect();
        for r in recs {
            for f in [&r.file_a, &r.file_b] {
                if known.insert(f.clone()) {
                    files.push(f.clone());
                }
            }
        }
    }
    let paths: Vec<PathBuf> = files.iter().map(|f| resolve(&a.dir, f)).collect();
    let embedder = Embedder::new(ctx, a.cache.cache.clone())?;
    let enrolment = embedder.embed(&files, &paths)?;
    let (keep, emb) = enrolled(&enrolment.embeddings)?;
    let distance = embedder.pipeline.recognizer().manifest().embedding.distance;
    let row_of: HashMap<&str, usize> = keep
        .iter()
        .enumerate()
        .map(|(r, &i)| (files[i].as_str(), r))
        .collect();

    let (pairs, pair_rows, pair_source, excluded, kfold) = if let Some(recs) = records {
        let mut idx = Vec::new();
        let mut meta = Vec::new();
        for r in &recs {
            if let (Some(&x), Some(&y)) =
                (row_of.get(r.file_a.as_str()), row_of.get(r.file_b.as_str()))
            {
                idx.push((x, y));
                meta.push((r.same, r.fold));
            }
        }
        let d = emb.pair_distances(&idx, distance)?;
        let pairs: Vec<ScoredPair> = d
            .iter()
            .zip(&meta)
            .map(|(&score, &(same, fold))| ScoredPair { score, same, fold })
            .collect();
        let src = format!(
            "{} pairs from {}",
            recs.len(),
            pairs_path.as_deref().unwrap_or(Path::new("?")).display()
        );
        let excluded = recs.len() - pairs.len();
        (pairs, idx, src, excluded, None)
    } else {
        let set = set.as_ref().ok_or_else(|| anyhow!("no identities.csv"))?;
        let ids: Vec<&str> = keep.iter().map(|&i| set.identities[i].as_str()).collect();
        let config = PairConfig {
            max_impostors: a.max_impostors,
            folds: a.folds.max(1),
            seed: a.seed,
        };
        let generated = generate_pairs(&ids, config)?;
        let score = |g: &kenning_eval::verify::GeneratedPairs,
                     keep_fold: bool|
         -> Result<Vec<ScoredPair>> {
            let idx: Vec<(usize, usize)> = g
                .pairs
                .iter()
                .map(|p| (p.a as usize, p.b as usize))
                .collect();
            let d = emb.pair_distances(&idx, distance)?;
            Ok(g.pairs
                .iter()
                .zip(d)
                .map(|(p, score)| ScoredPair {
                    score,
                    same: p.same,
                    fold: keep_fold.then_some(p.fold),
                })
                .collect())
        };
        // FNMR at low FMR needs every impostor pair, but accuracy over them
        // would be dominated by impostors, so k-fold accuracy (the LFW
        // protocol) uses all genuine pairs and an equal-sized impostor sample.
        let all = score(&generated, false)?;
        let mut src = generated.describe();
        let kfold = if a.folds >= 2 && generated.genuine > 0 {
            let balanced = generate_pairs(
                &ids,
                PairConfig {
                    max_impostors: generated.genuine,
                    ..config
                },
            )?;
            src.push_str(&format!(
                ". k-fold accuracy uses all {} genuine pairs and a seeded uniform sample of {} impostor pairs in {} folds",
                balanced.genuine, balanced.impostor, a.folds
            ));
            Some(kfold_accuracy(&score(&balanced, true)?)?)
        } else {
            None
        };
        let rows = generated
            .pairs
            .iter()
            .map(|p| (p.a as usize, p.b as usize))
            .collect();
        (all, rows, src, 0, kfold)
    };
    let config = VerifyConfig {
        fmr_targets: a.fmr.clone(),
        pair_source: pair_source.clone(),
        ..Default::default()
    };
    let mut report = evaluate_verification(&pairs, &config)?;
    if kfold.is_some() {
        report.kfold = kfold;
    }
    let ChosenScoring {
        similarity: mut scoring,
        rule,
        rule_words,
    } = a.scoring.resolve(&embedder)?;
    let pixels: Vec<Option<f32>> = keep.iter().map(|&i| enrolment.pixels[i]).collect();
    let sim = scoring
        .as_mut()
        .map(|(sc, what)| {
            let scorer = PairScorer::new(sc.calibration(), rule.as_ref(), &emb, &pixels);
            let scored: Vec<(f64, bool)> = pair_rows
                .iter()
                .zip(&pairs)
                .map(|(&(x, y), p)| scorer.similarity(x, y, f64::from(p.score)))
                .collect();
            let changed = scored.iter().filter(|s| s.1).count();
            let similarity: Vec<f64> = scored.into_iter().map(|s| s.0).collect();
            what.push_str(&format!(", {rule_words}"));
            if rule.is_some() {
                what.push_str(&format!(" (it changed {changed} of {} pairs)", pairs.len()));
            }
            let cells = embedder
                .pipeline
                .recognizer()
                .quality_bands()
                .map(|bands| {
                    rows_by_cell(bands, sc, &a.similarity, &pairs, &similarity, |i| {
                        let (x, y) = pair_rows[i];
                        [pixels[x], pixels[y]]
                    })
                })
                .unwrap_or_default();
            (
                similarity_rows(sc, &a.similarity, &pairs, &similarity),
                cells,
            )
        })
        .unwrap_or_default();
    let (sim, by_size) = sim;

    let name = a
        .dir
        .file_name()
        .map_or("data".into(), |n| n.to_string_lossy().to_string());
    let json = with_header(
        header(ctx, Some(&embedder)),
        json!({
            "data": a.dir,
            "enrolment": enrolment.report,
            "pairs_excluded_for_failed_enrolment": excluded,
            "verification": report,
            "scoring": scoring.as_ref().map(|s| &s.1),
            "similarity": sim,
            "similarity_by_face_size": by_size,
        }),
    );
    let mut md = enrolment.report.to_markdown("Enrolment");
    if excluded > 0 {
        md.push_str(&format!(
            "\n{excluded} listed pairs were left out because a photo was not enrolled.\n"
        ));
    }
    md.push('\n');
    md.push_str(&report.to_markdown());
    if let Some((_, what)) = &scoring {
        md.push('\n');
        md.push_str(&similarity_markdown(&sim, what));
        md.push_str(&cells_markdown(&by_size));
    }
    let plot = det_svg(&format!("DET: {name}"), &[report.det_series(&name)]);
    write_outputs(
        &a.out,
        &json,
        &format!("Verification: {name}"),
        &md,
        &[("det.svg".into(), plot)],
    )
}

fn identify(ctx: &Context, a: &IdentifyArgs) -> Result<()> {
    let set = read_identity_set(&a.dir)?;
    let embedder = Embedder::new(ctx, a.cache.cache.clone())?;
    let enrolment = embedder.embed(&set.files, &set.paths)?;
    let (keep, emb) = enrolled(&enrolment.embeddings)?;
    let files: Vec<&str> = keep.iter().map(|&i| set.files[i].as_str()).collect();
    let ids: Vec<&str> = keep.iter().map(|&i| set.identities[i].as_str()).collect();
    let split = match &a.gallery {
        None => split_gallery(&files, &ids, a.unenrolled, a.seed)?,
        Some(list) => gallery_from_list(list, &files, &ids)?,
    };
    let distance = embedder.pipeline.recognizer().manifest().embedding.distance;
    let config = IdentifyConfig {
        fpir_targets: a.fpir.clone(),
        candidate_list_length: a.candidates,
        leave_mate_out_unmated: a.leave_mate_out,
    };
    let report = evaluate_identification(&emb, &ids, &split, distance, &config)?;
    let ChosenScoring {
        similarity: mut scoring,
        rule,
        rule_words,
    } = a.scoring.resolve(&embedder)?;
    let pixels: Vec<Option<f32>> = keep.iter().map(|&i| enrolment.pixels[i]).collect();
    let searches = scoring
        .as_mut()
        .map(|(sc, what)| {
            let scorer = PairScorer::new(sc.calibration(), rule.as_ref(), &emb, &pixels);
            let (rows, changed) = search_rows(
                &scorer,
                &a.similarity,
                &split,
                &ids,
                a.candidates,
                |q, g| f64::from(emb.distance(q, g, distance)),
            );
            what.push_str(&format!(", {rule_words}"));
            if rule.is_some() {
                let probes = split.mated_probes.len() + split.unmated_probes.len();
                what.push_str(&format!(
                    " (it changed {changed} of {} probe-gallery pairs)",
                    probes * split.gallery.len()
                ));
            }
            rows
        })
        .unwrap_or_default();
    let name = a
        .dir
        .file_name()
        .map_or("data".into(), |n| n.to_string_lossy().to_string());
    let json = with_header(
        header(ctx, Some(&embedder)),
        json!({
            "data": a.dir,
            "enrolment": enrolment.report,
            "identification": report,
            "scoring": scoring.as_ref().map(|s| &s.1),
            "searches_at_similarity": searches,
        }),
    );
    let mut md = format!(
        "{}\nPhotos not enrolled take no part: the gallery photo of an identity is its first enrolled photo.\n\n{}",
        enrolment.report.to_markdown("Enrolment"),
        report.to_markdown()
    );
    if let Some((_, what)) = &scoring {
        md.push_str(&search_markdown(&searches, what));
    }
    let cmc = BarChart {
        title: format!("Cumulative match characteristic: {name}"),
        y_label: "hit rate".into(),
        series: vec![name.clone()],
        groups: report
            .cmc
            .iter()
            .enumerate()
            .map(|(k, &v)| BarGroup {
                label: format!("{}", k + 1),
                bars: vec![Some(Bar {
                    value: v,
                    low: None,
                    high: None,
                })],
            })
            .collect(),
        log_y: false,
        reference: None,
    };
    write_outputs(
        &a.out,
        &json,
        &format!("Identification: {name}"),
        &md,
        &[("cmc.svg".into(), bar_chart_svg(&cmc))],
    )
}

/// Searches at one Similarity threshold, as SearchFacesByImage answers them.
#[derive(Debug, Clone, Serialize)]
struct SearchRow {
    similarity: f64,
    /// FMR the calibration promises per comparison at this Similarity.
    promised_fmr: f64,
    /// Gallery faces x promised FMR: the FalseMatchEstimate's expected
    /// false matches per search.
    expected_false_matches: f64,
    mated_searches: usize,
    /// Mated searches whose returned faces hold none of the probe's identity.
    fnir: Option<f64>,
    unmated_searches: usize,
    /// Unmated searches that returned any face.
    fpir: Option<f64>,
}

/// FNIR and FPIR at each of `levels`: each probe (of `split`'s mated and
/// unmated probes) scored by `scorer` against every gallery face at
/// `distance(probe, face)`, keeping the `candidates` faces of highest
/// Similarity at or above the level. One probe's scores at a time, on all
/// cores; also returns how many pairs the rule changed.
fn search_rows(
    scorer: &PairScorer<'_>,
    levels: &[f64],
    split: &GallerySplit,
    ids: &[&str],
    candidates: usize,
    distance: impl Fn(usize, usize) -> f64 + Sync,
) -> (Vec<SearchRow>, usize) {
    use rayon::prelude::*;
    let rate = |k: usize, n: usize| (n > 0).then(|| k as f64 / n as f64);
    let probes: Vec<(usize, bool)> = split
        .mated_probes
        .iter()
        .map(|&q| (q, true))
        .chain(split.unmated_probes.iter().map(|&q| (q, false)))
        .collect();
    // Per probe: whether each level's search errs (a miss or a false
    // positive), and the pairs the rule changed.
    let outcomes: Vec<(bool, Vec<bool>, usize)> = probes
        .par_iter()
        .map(|&(q, mated)| {
            let mut changed = 0;
            let mut found: Vec<(usize, f64)> = split
                .gallery
                .iter()
                .map(|&g| {
                    let (s, c) = scorer.similarity(q, g, distance(q, g));
                    changed += usize::from(c);
                    (g, s)
                })
                .collect();
            found.sort_by(|x, y| y.1.total_cmp(&x.1));
            let errs = levels
                .iter()
                .map(|&level| {
                    let kept = found
                        .iter()
                        .take(candidates.max(1))
                        .take_while(|f| f.1 >= level);
                    if mated {
                        !kept.into_iter().any(|&(g, _)| ids[g] == ids[q])
                    } else {
                        kept.count() > 0
                    }
                })
                .collect();
            (mated, errs, changed)
        })
        .collect();
    let mated = split.mated_probes.len();
    let unmated = probes.len() - mated;
    let rows = levels
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let errors = |m: bool| outcomes.iter().filter(|o| o.0 == m && o.1[k]).count();
            let promised = CalibrationTable::fmr_at_similarity(s);
            SearchRow {
                similarity: s,
                promised_fmr: promised,
                expected_false_matches: promised * split.gallery.len() as f64,
                mated_searches: mated,
                fnir: rate(errors(true), mated),
                unmated_searches: unmated,
                fpir: rate(errors(false), unmated),
            }
        })
        .collect();
    (rows, outcomes.iter().map(|o| o.2).sum())
}

fn search_markdown(rows: &[SearchRow], scoring: &str) -> String {
    let mut s = format!(
        "\n### Searches at calibrated Similarity thresholds\n\nScoring: {scoring}.\n\n\
         | Similarity | promised FMR | expected false matches per search | FNIR | FPIR |\n|---|---|---|---|---|\n"
    );
    let f = kenning_eval::report::fmt_rate;
    for r in rows {
        s.push_str(&format!(
            "| {} | {:.1e} | {:.2e} | {} of {} | {} of {} |\n",
            r.similarity,
            r.promised_fmr,
            r.expected_false_matches,
            f(r.fnir),
            r.mated_searches,
            f(r.fpir),
            r.unmated_searches
        ));
    }
    s
}

/// A gallery given as a list of files: identities with an enrolled photo
/// are mated, the rest unmated.
fn gallery_from_list(list: &Path, files: &[&str], ids: &[&str]) -> Result<GallerySplit> {
    let text =
        std::fs::read_to_string(list).with_context(|| format!("reading {}", list.display()))?;
    let wanted: std::collections::HashSet<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let mut split = GallerySplit {
        gallery: Vec::new(),
        mated_probes: Vec::new(),
        unmated_probes: Vec::new(),
        description: format!("gallery: the enrolled photos listed in {}", list.display()),
    };
    let enrolled_ids: std::collections::HashSet<&str> = files
        .iter()
        .zip(ids)
        .filter(|(f, _)| wanted.contains(**f))
        .map(|(_, id)| *id)
        .collect();
    for (i, (f, id)) in files.iter().zip(ids).enumerate() {
        if wanted.contains(f) {
            split.gallery.push(i);
        } else if enrolled_ids.contains(id) {
            split.mated_probes.push(i);
        } else {
            split.unmated_probes.push(i);
        }
    }
    Ok(split)
}

fn detect(ctx: &Context, a: &DetectArgs) -> Result<()> {
    let truth = read_boxes(&a.dir.join("boxes.csv"))?;
    let files: Vec<String> = truth.keys().cloned().collect();
    let paths: Vec<PathBuf> = files.iter().map(|f| resolve(&a.dir, f)).collect();
    let pipeline = ctx.pipeline()?;
    let found: Mutex<BTreeMap<String, Vec<PixelBox>>> = Mutex::new(BTreeMap::new());
    let name_of: HashMap<&PathBuf, &String> = paths.iter().zip(&files).collect();
    let failed = batch::run(&paths, |p| {
        let dets = pipeline.detector().detect(&load(p)?).map_err(wire)?;
        let boxes = dets
            .iter()
            .map(|d| {
                if a.raw_boxes {
                    d.bbox
                } else {
                    dlib_rect(d).to_pixel_box()
                }
            })
            .collect();
        found
            .lock()
            .map_err(|_| anyhow!("poisoned"))?
            .insert(name_of[p].clone(), boxes);
        Ok(None)
    });
    if failed > 0 {
        bail!("{failed} images could not be read");
    }
    let found = found.into_inner().map_err(|_| anyhow!("poisoned"))?;
    let labels_path = a
        .labels
        .clone()
        .or_else(|| Some(a.dir.join("labels.csv")).filter(|p| p.is_file()));
    let groups = match (&labels_path, a.groups.is_empty()) {
        (Some(p), false) => {
            let labels = read_labels(p)?;
            let cols = labels.column_indices(&a.groups)?;
            Some(
                files
                    .iter()
                    .filter_map(|f| labels.group_of(f, &cols).map(|g| (f.clone(), g)))
                    .collect::<BTreeMap<_, _>>(),
            )
        }
        (None, false) => bail!("--groups needs labels.csv (in DIR or with --labels)"),
        _ => None,
    };
    let mut report = evaluate_detection(&truth, &found, groups.as_ref(), a.iou);
    report.rule = format!(
        "{}; {}",
        if a.raw_boxes {
            "the detector's own boxes are compared"
        } else {
            "each detection is first mapped to dlib's box convention (the square box dlib's 5-point landmarks expect, \
             computed from the detector's eye and mouth points by kenning_models::pipeline::dlib_rect; dlib rectangles \
             include their last row and column), the convention of dlib's annotations"
        },
        report.rule
    );
    let json = with_header(
        header(ctx, None),
        json!({ "data": a.dir, "detector": kenning_models::detector::CENTERFACE_FILE, "detection": report }),
    );
    let name = a
        .dir
        .file_name()
        .map_or("data".into(), |n| n.to_string_lossy().to_string());
    let mut plots = Vec::new();
    if !report.per_group.is_empty() {
        let chart = BarChart {
            title: format!("Detection rate by group: {name}"),
            y_label: "detection rate".into(),
            series: vec!["recall".into()],
            groups: report
                .per_group
                .iter()
                .map(|g| BarGroup {
                    label: g.group.clone(),
                    bars: vec![g.recall.map(|value| Bar {
                        value,
                        low: None,
                        high: None,
                    })],
                })
                .collect(),
            log_y: false,
            reference: None,
        };
        plots.push(("detection-by-group.svg".into(), bar_chart_svg(&chart)));
    }
    write_outputs(
        &a.out,
        &json,
        &format!("Detection: {name}"),
        &report.to_markdown(),
        &plots,
    )
}

fn fairness(ctx: &Context, a: &FairnessArgs) -> Result<()> {
    let labels_path = a.labels.clone().unwrap_or_else(|| a.dir.join("labels.csv"));
    let labels = read_labels(&labels_path)?;
    let cols = labels.column_indices(&a.groups)?;
    let files: Vec<String> = labels.rows.keys().cloned().collect();
    // One photo per person unless identities.csv says who is who.
    let ids_path = a.dir.join("identities.csv");
    let subject_of: HashMap<String, String> = if ids_path.is_file() {
        read_identities(&ids_path)?
            .into_iter()
            .map(|r| (r.file, r.identity))
            .collect()
    } else {
        HashMap::new()
    };
    let paths: Vec<PathBuf> = files.iter().map(|f| resolve(&a.dir, f)).collect();
    let embedder = Embedder::new(ctx, a.cache.cache.clone())?;
    let enrolment = embedder.embed(&files, &paths)?;
    let (keep, emb) = enrolled(&enrolment.embeddings)?;
    let subjects: Vec<String> = keep
        .iter()
        .map(|&i| {
            subject_of
                .get(&files[i])
                .cloned()
                .unwrap_or_else(|| format!("photo:{}", files[i]))
        })
        .collect();
    let groups: Vec<Option<String>> = keep
        .iter()
        .map(|&i| labels.group_of(&files[i], &cols))
        .collect();
    let pixels: Vec<Option<f32>> = keep.iter().map(|&i| enrolment.pixels[i]).collect();
    let impostors = LabelledSet::new(&emb, &subjects, &groups)?.with_pixels(pixels)?;

    // Genuine sets: concatenated, subjects kept apart by set.
    let (mut g_rows, mut g_subjects, mut g_groups, mut g_pixels, mut g_reports) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for dir in &a.genuine {
        let set = read_identity_set(dir)?;
        let lp = dir.join("labels.csv");
        let glabels = if lp.is_file() {
            Some(read_labels(&lp)?)
        } else {
            None
        };
        let gcols = glabels
            .as_ref()
            .and_then(|l| l.column_indices(&a.groups).ok());
        let e = embedder.embed(&set.files, &set.paths)?;
        for (i, emb) in e.embeddings.into_iter().enumerate() {
            if let Some(v) = emb {
                g_rows.push(v);
                g_pixels.push(e.pixels[i]);
                g_subjects.push(format!("{}:{}", dir.display(), set.identities[i]));
                g_groups.push(
                    glabels
                        .as_ref()
                        .zip(gcols.as_ref())
                        .and_then(|(l, c)| l.group_of(&set.files[i], c)),
                );
            }
        }
        g_reports.push((dir.display().to_string(), e.report, gcols.is_some()));
    }
    let g_emb = Embeddings::new(&g_rows)?;
    let genuine = if a.genuine.is_empty() {
        None
    } else {
        Some(LabelledSet::new(&g_emb, &g_subjects, &g_groups)?.with_pixels(g_pixels)?)
    };

    // --similarity without a calibration option scores everything with the
    // default calibration; a fair calibration file does the same with it.
    let default = if a.fair_calibration.is_none()
        && a.calibration.is_none()
        && !a.global_calibration
        && !a.similarity.is_empty()
    {
        similarity_scoring(None, false, &embedder)?
    } else {
        None
    };
    let (fair, described) = match (&a.fair_calibration, default) {
        (Some(p), _) => (
            Some(FairCalibration::from_json(
                &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            )?),
            None,
        ),
        (None, Some((SimilarityScoring::Fair(f), what))) => (Some(f), Some(what)),
        _ => (None, None),
    };
    // The rule corrects a calibrated score, so only a fair calibration's.
    let (rule, rule_words) = small_face_rule(a.rule.no_small_face_rule, &embedder);
    let scoring = match (&fair, &rule) {
        (Some(f), Some(q)) => Scoring::FairWithRule(f, q),
        (Some(f), None) => Scoring::Fair(f),
        (None, _) => {
            Scoring::Distance(embedder.pipeline.recognizer().manifest().embedding.distance)
        }
    };
    let mut thresholds: Vec<ThresholdRule> = a
        .fmr
        .iter()
        .map(|&t| ThresholdRule::OverallFmr(t))
        .collect();
    let mut references: Vec<f64> = a.fmr.clone();
    if !a.similarity.is_empty() {
        let table = match &fair {
            Some(_) => None,
            None => calibration_table(a.calibration.as_deref(), &embedder)?,
        };
        for &s in &a.similarity {
            let log_fmr = (40.0 - s) / 10.0;
            // A fair calibration scores pairs by log10 FMR; the global table by distance.
            let score = match (&fair, &table) {
                (Some(_), _) => log_fmr as f32,
                (None, Some(t)) => t.distance_for_log_fmr(log_fmr) as f32,
                (None, None) => bail!("--similarity needs a calibration table"),
            };
            thresholds.push(ThresholdRule::Fixed {
                label: format!(
                    "Similarity {s} (calibrated FMR {:.1e})",
                    10f64.powf(log_fmr)
                ),
                score,
            });
            references.push(10f64.powf(log_fmr));
        }
    }
    let config = FairnessConfig {
        thresholds,
        bootstrap_replicates: a.bootstrap,
        ..Default::default()
    };
    let mut report = evaluate_fairness(&impostors, genuine.as_ref(), scoring, &config)?;
    let base = match (described, &fair) {
        (Some(what), _) => what,
        (None, Some(f)) => Scoring::Fair(f).describe(),
        (None, None) => report.scoring.clone(),
    };
    report.scoring = match (&report.small_face_rule, fair.is_some()) {
        (Some(e), _) => format!(
            "{base}, then the {} (it changed {} of {} impostor pairs and {} of {} genuine pairs)",
            e.rule,
            e.impostor_pairs_changed,
            report.impostor_pairs,
            e.genuine_pairs_changed,
            report.genuine_pairs
        ),
        (None, true) => format!("{base}, {rule_words}"),
        (None, false) if rule.is_some() => format!(
            "{base}; the small-face rule corrects calibrated scores and is not applied to raw distances"
        ),
        (None, false) => base,
    };

    let genuine_json: Vec<serde_json::Value> = g_reports
        .iter()
        .map(|(d, r, labelled)| json!({"data": d, "labelled": labelled, "enrolment": r}))
        .collect();
    let json = with_header(
        header(ctx, Some(&embedder)),
        json!({
            "data": a.dir,
            "groups": a.groups,
            "enrolment": enrolment.report,
            "genuine_sets": genuine_json,
            "fairness": report,
        }),
    );
    let mut md = enrolment.report.to_markdown("Impostor set");
    for (d, r, labelled) in &g_reports {
        md.push('\n');
        md.push_str(&r.to_markdown(&format!(
            "Genuine set {d}{}",
            if *labelled {
                ""
            } else {
                " (no group labels: FNMR overall only)"
            }
        )));
    }
    md.push('\n');
    md.push_str(&report.to_markdown());
    let mut plots = Vec::new();
    for (k, (t, reference)) in report.thresholds.iter().zip(&references).enumerate() {
        if t.threshold.is_none() {
            continue;
        }
        let run = [(report.scoring.as_str(), t)];
        let fmr_chart = group_rate_chart(
            &format!("Same-group FMR at {}", t.label),
            &run,
            false,
            Some((*reference, "target".into())),
        );
        plots.push((format!("fmr-{}.svg", k + 1), bar_chart_svg(&fmr_chart)));
        if !t.fnmr_by_group.is_empty() {
            let chart = group_rate_chart(&format!("FNMR at {}", t.label), &run, true, None);
            plots.push((format!("fnmr-{}.svg", k + 1), bar_chart_svg(&chart)));
        }
    }
    let name = a
        .dir
        .file_name()
        .map_or("data".into(), |n| n.to_string_lossy().to_string());
    write_outputs(
        &a.out,
        &json,
        &format!("Demographic differentials: {name}"),
        &md,
        &plots,
    )
}

/// Arguments of `kenning calibrate`.
#[derive(clap::Args)]
pub struct CalibrateArgs {
    /// Photos of different people (one person per photo unless --identities says otherwise).
    #[arg(required_unless_present = "collection")]
    images: Vec<String>,
    /// Fit collection C's own calibration on its gallery (pairs of faces of
    /// different people: different UserId, or different ExternalImageId when
    /// the collection has no users) and put it in force for every search of
    /// C (admin; audited). Refused below 1,000 labelled faces, when the
    /// shipped calibration stays. With --check, only report observed/promised
    /// FMR on the gallery; with --reset, go back to the shipped calibration.
    #[arg(long, value_name = "C", conflicts_with_all = ["domains", "fair", "out", "list", "identities"])]
    collection: Option<String>,
    /// With --collection: put the recogniser's shipped calibration back in force.
    #[arg(long, requires = "collection", conflicts_with = "check")]
    reset: bool,
    /// identities.csv (file,identity): pairs of the same identity are left out.
    #[arg(long)]
    identities: Option<PathBuf>,
    /// domains.csv (file,domain): pool several photo sets (domains) into one
    /// calibration in which only pairs within a domain count and every
    /// domain weighs alike (the mean of their log10 FMRs), however many
    /// photos it has, so the promise lands between the domains.
    #[arg(long, conflicts_with = "check")]
    domains: Option<PathBuf>,
    /// With --fair and --domains: where the domains weigh alike. `final`:
    /// in the overall score-to-FMR map only (each region's table adds up
    /// the pairs of every domain, so the largest domain shapes it);
    /// `within-cluster`: in every region's table too; `mixture`: in every
    /// region's table too, each pair weighing by its domain's pair count
    /// (see --mixture-power).
    #[arg(long, value_enum, default_value_t = DomainWeighting::Final, requires_all = ["fair", "domains"])]
    domain_weighting: DomainWeighting,
    /// With --domain-weighting mixture: each pair inside a region weighs
    /// (largest domain's pairs / its domain's pairs)^P. 1 is the equal
    /// mixture of the domains, 0 adds the pairs up as `final` does; in
    /// between, a small domain counts more without its few pairs setting a
    /// region's tail alone.
    #[arg(long, value_name = "P", default_value = "1", value_parser = mixture_power)]
    mixture_power: f64,
    /// With --domain-weighting within-cluster: the impostor pairs a domain
    /// needs inside one region for a curve of its own there (fewer are
    /// added to the region's largest domain).
    #[arg(long, value_name = "N", default_value_t = 1000)]
    domain_min_pairs: u64,
    /// Where to write the table (JSON). Required unless --check or --collection is given.
    #[arg(long, required_unless_present_any = ["check", "collection"])]
    out: Option<PathBuf>,
    /// Instead of building a table, report how well this existing table (or
    /// fair calibration) predicts the FMR of the given impostor photos. With
    /// --collection (no file): report observed/promised FMR of the
    /// calibration in force on the collection's gallery at the policy
    /// threshold and at Similarity 70, 80 and 90, changing nothing.
    #[arg(long, num_args = 0..=1, value_name = "FILE")]
    check: Option<Option<PathBuf>>,
    /// With --check: the factor within which observed FMR must match the promise.
    #[arg(long, default_value_t = 3.0)]
    factor: f64,
    /// Step between table points in log10 FMR.
    #[arg(long, default_value_t = 0.05)]
    step: f64,
    /// Description stored in the table's "source" field.
    #[arg(long, default_value = "")]
    source: String,
    /// Leave out pairs closer than this: copies of one photo in the set,
    /// which are not comparisons of different people.
    #[arg(long, default_value_t = 0.0)]
    exclude_below: f64,
    /// Build a fair (per-region) calibration with this many k-means clusters
    /// instead of a global table; written to --out as JSON.
    #[arg(long, value_name = "K", conflicts_with = "check")]
    fair: Option<usize>,
    /// With --fair: which impostor pairs calibrate a cluster (pairs within it,
    /// or pairs involving it).
    #[arg(long, value_enum, default_value_t = FairPairs::Within)]
    fair_pairs: FairPairs,
    /// With --fair: seed for k-means.
    #[arg(long, default_value_t = FairCalibrationConfig::default().seed)]
    fair_seed: u64,
    /// With --fair: how far the per-region tables move Similarity away from
    /// one global threshold (0: global, 1: equal false matches per region;
    /// in between trades false-match evenness for miss evenness).
    #[arg(long, default_value_t = 1.0, value_parser = fair_strength)]
    fair_strength: f64,
    /// Use only the photos listed in this file (one path per line, relative to
    /// the single folder given as IMAGES), e.g. one half of a split.
    #[arg(long)]
    list: Option<PathBuf>,
    #[command(flatten)]
    cache: CacheArgs,
    /// With --check: write the JSON report here (default: stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// With --check: write a Markdown report here.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

/// `kenning calibrate`: builds a recogniser's distance-to-FMR table from the
/// impostor pairs of a photo set, or checks an existing table against one.
pub fn calibrate(ctx: &Context, data: &DataArgs, args: &CalibrateArgs) -> Result<i32> {
    if let Some(collection) = &args.collection {
        return calibrate_collection(ctx, data, collection, args);
    }
    if matches!(args.check, Some(None)) {
        bail!("--check needs a calibration file (or --collection)");
    }
    let paths = match &args.list {
        Some(list) => {
            let [root] = args.images.as_slice() else {
                bail!("--list needs exactly one folder as IMAGES");
            };
            read_list(list)?
                .iter()
                .map(|f| resolve(Path::new(root), f))
                .collect()
        }
        None => inputs::expand(&args.images)?,
    };
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let identities = match &args.identities {
        Some(csv) => Some(identity_lookup(csv)?),
        None => None,
    };
    let embedder = Embedder::new(ctx, args.cache.cache.clone())?;
    let recognizer = embedder.pipeline.recognizer();
    let enrolment = embedder.embed(&names, &paths)?;
    let failed = enrolment.report.photos - enrolment.report.enrolled;
    let embeddings: Vec<(String, &Vec<f32>)> = paths
        .iter()
        .zip(&enrolment.embeddings)
        .filter_map(|(p, e)| {
            let id = identities
                .as_ref()
                .and_then(|m| find_identity(m, p))
                .unwrap_or_else(|| p.display().to_string());
            e.as_ref().map(|e| (id, e))
        })
        .collect();
    let domains: Vec<String> = match &args.domains {
        Some(csv) => {
            let labels = kenning_eval::formats::read_labels(csv)?;
            let column = labels.column_indices(&["domain"])?;
            let lookup: HashMap<PathBuf, String> = labels
                .rows
                .keys()
                .filter_map(|f| Some((PathBuf::from(f), labels.group_of(f, &column)?)))
                .collect();
            paths
                .iter()
                .zip(&enrolment.embeddings)
                .filter(|(_, e)| e.is_some())
                .map(|(p, _)| {
                    find_identity(&lookup, p).ok_or_else(|| {
                        anyhow!(
                            "{}: no domain for {} in {}",
                            "--domains",
                            p.display(),
                            csv.display()
                        )
                    })
                })
                .collect::<Result<_>>()?
        }
        None => Vec::new(),
    };
    if let Some(k) = args.fair {
        return calibrate_fair(
            args,
            &embedder,
            &embeddings,
            &domains,
            k,
            paths.len(),
            failed,
        );
    }
    if !domains.is_empty() {
        return calibrate_pooled(args, &embedder, &embeddings, &domains);
    }
    let mut distances: Vec<f32> = {
        use rayon::prelude::*;
        (0..embeddings.len())
            .into_par_iter()
            .flat_map_iter(|i| {
                let (id_a, a) = &embeddings[i];
                embeddings[i + 1..].iter().filter_map(move |(id_b, b)| {
                    let d = recognizer.distance(a, b) as f32;
                    (id_a != id_b && f64::from(d) >= args.exclude_below).then_some(d)
                })
            })
            .collect()
    };
    if let Some(Some(check)) = &args.check {
        let text = std::fs::read_to_string(check)
            .with_context(|| format!("reading {}", check.display()))?;
        let result = if text.contains("\"centroids\"") {
            // A fair calibration: each pair's promise depends on its clusters.
            let fc = FairCalibration::from_json(&text)
                .with_context(|| format!("parsing {}", check.display()))?;
            let clusters: Vec<usize> = embeddings.iter().map(|(_, e)| fc.assign(e)).collect();
            let predicted: Vec<f64> = {
                use rayon::prelude::*;
                (0..embeddings.len())
                    .into_par_iter()
                    .flat_map_iter(|i| {
                        let (id_a, a) = &embeddings[i];
                        let (fc, clusters) = (&fc, &clusters);
                        embeddings[i + 1..]
                            .iter()
                            .enumerate()
                            .filter_map(move |(j, (id_b, b))| {
                                let d = recognizer.distance(a, b) as f32;
                                (id_a != id_b && f64::from(d) >= args.exclude_below).then(|| {
                                    10f64.powf(fc.log_fmr_for_clusters(
                                        clusters[i],
                                        clusters[i + 1 + j],
                                        d,
                                    ))
                                })
                            })
                    })
                    .collect()
            };
            let description = format!(
                "fair calibration {} ({} clusters; {}) against {} impostor pairs of {} enrolled photos",
                check.display(),
                fc.clusters(),
                fc.source,
                predicted.len(),
                embeddings.len()
            );
            kenning_eval::check_calibration(
                &predicted,
                &kenning_eval::calibrate::DEFAULT_CHECK_FMRS,
                args.factor,
                &description,
            )
        } else {
            let table: CalibrationTable = serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", check.display()))?;
            table.validate().map_err(wire)?;
            let description = format!(
                "table {} ({}) against {} impostor pairs of {} enrolled photos",
                check.display(),
                table.source,
                distances.len(),
                embeddings.len()
            );
            check_calibration_fn(
                &distances,
                |d| table.fmr(f64::from(d)),
                &kenning_eval::calibrate::DEFAULT_CHECK_FMRS,
                args.factor,
                &description,
            )
        };
        let json = with_header(
            header(ctx, Some(&embedder)),
            json!({ "enrolment": enrolment.report, "check": result }),
        );
        let out = OutputArgs {
            json: args.json.clone(),
            markdown: args.markdown.clone(),
            plots: None,
        };
        let md = format!(
            "{}\n{}",
            enrolment.report.to_markdown("Impostor set"),
            result.to_markdown()
        );
        write_outputs(&out, &json, "Calibration check", &md, &[])?;
        return Ok(0);
    }
    let out = args
        .out
        .as_ref()
        .ok_or_else(|| anyhow!("--out is required"))?;
    let source = if args.source.is_empty() {
        format!(
            "{} photos, {failed} without a face, {} impostor pairs (pairs closer than {} left out as copies)",
            paths.len(),
            distances.len(),
            args.exclude_below
        )
    } else {
        args.source.clone()
    };
    let table = CalibrationTable::build(
        &recognizer.manifest().name,
        &source,
        &mut distances,
        args.step,
    )
    .map_err(wire)?;
    std::fs::write(out, table.to_json()).with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "kenning: {} impostor pairs from {} faces; FMR 1e-4 at distance {:.4}, 1e-5 at {:.4}",
        table.impostor_pairs,
        embeddings.len(),
        table.distance_for_log_fmr(-4.0),
        table.distance_for_log_fmr(-5.0)
    );
    Ok(0)
}

/// Which pairs calibrate a cluster, on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FairPairs {
    /// Pairs with both photos in the cluster.
    Within,
    /// Pairs with at least one photo in the cluster.
    Involving,
}

/// Where the domains of a pooled fair fit weigh alike, on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DomainWeighting {
    /// In the overall score-to-FMR map only.
    Final,
    /// In every region's table as well: each domain with enough pairs in
    /// the region has its own curve, the curves weighing alike in log FMR.
    WithinCluster,
    /// In every region's table as well: each pair weighs one over its
    /// domain's pair count (an equal mixture of the domains).
    Mixture,
}

/// `--fair-strength`: a number from 0 to [`MAX_STRENGTH`].
fn fair_strength(s: &str) -> std::result::Result<f64, String> {
    number_from_zero_to(s, MAX_STRENGTH)
}

/// `--mixture-power`: a number from 0 to 1.
fn mixture_power(s: &str) -> std::result::Result<f64, String> {
    number_from_zero_to(s, 1.0)
}

/// A command-line number from 0 to `most`.
fn number_from_zero_to(s: &str, most: f64) -> std::result::Result<f64, String> {
    let t: f64 = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    if (0.0..=most).contains(&t) {
        Ok(t)
    } else {
        Err(format!("must be from 0 to {most}, not {t}"))
    }
}

/// Lines of a list file (blank lines and `#` comments skipped).
fn read_list(list: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(list).with_context(|| format!("reading {}", list.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// `kenning calibrate --fair K`: fits a fair calibration from the impostor
/// pairs of the enrolled photos (no labels beyond who is who).
fn calibrate_fair(
    args: &CalibrateArgs,
    embedder: &Embedder,
    embeddings: &[(String, &Vec<f32>)],
    domains: &[String],
    k: usize,
    photos: usize,
    failed: usize,
) -> Result<i32> {
    let out = args
        .out
        .as_ref()
        .ok_or_else(|| anyhow!("--out is required"))?;
    let rows: Vec<Vec<f32>> = embeddings.iter().map(|(_, e)| (*e).clone()).collect();
    let subjects: Vec<&str> = embeddings.iter().map(|(id, _)| id.as_str()).collect();
    let emb = Embeddings::new(&rows)?;
    let recognizer = embedder.pipeline.recognizer();
    let config = FairCalibrationConfig {
        k,
        seed: args.fair_seed,
        pairs: match args.fair_pairs {
            FairPairs::Within => ClusterPairs::Within,
            FairPairs::Involving => ClusterPairs::Involving,
        },
        exclude_below: args.exclude_below,
        strength: args.fair_strength,
        region_domains: match args.domain_weighting {
            DomainWeighting::Final => RegionDomains::Summed,
            DomainWeighting::WithinCluster => RegionDomains::MeanLog,
            DomainWeighting::Mixture => RegionDomains::Mixture,
        },
        domain_min_pairs: match args.domain_weighting {
            DomainWeighting::WithinCluster => args.domain_min_pairs.max(1),
            _ => 0,
        },
        mixture_power: match args.domain_weighting {
            DomainWeighting::Mixture => args.mixture_power,
            _ => 1.0,
        },
        ..Default::default()
    };
    let domains: Vec<&str> = domains.iter().map(String::as_str).collect();
    let mut fc = FairCalibration::fit_pooled(
        &emb,
        Some(&subjects),
        &domains,
        recognizer.manifest().embedding.distance,
        config,
    )?;
    fc.recogniser = recognizer.manifest().name.clone();
    fc.source = if args.source.is_empty() {
        format!(
            "{photos} photos, {failed} without a face, {} impostor pairs (pairs closer than {} left out as copies)",
            fc.impostor_pairs, args.exclude_below
        )
    } else {
        args.source.clone()
    };
    std::fs::write(out, fc.to_json()?).with_context(|| format!("writing {}", out.display()))?;
    let sizes: Vec<usize> = fc.clusters.iter().map(|c| c.photos).collect();
    eprintln!(
        "kenning: fair calibration, {k} clusters (photos {sizes:?}) from {} impostor pairs of {} faces",
        fc.impostor_pairs,
        embeddings.len()
    );
    Ok(0)
}

/// `kenning calibrate --domains`: one global table per domain from the
/// pairs within it, pooled so every domain weighs alike in log10 FMR.
fn calibrate_pooled(
    args: &CalibrateArgs,
    embedder: &Embedder,
    embeddings: &[(String, &Vec<f32>)],
    domains: &[String],
) -> Result<i32> {
    use rayon::prelude::*;
    let out = args
        .out
        .as_ref()
        .ok_or_else(|| anyhow!("--out is required"))?;
    let recognizer = embedder.pipeline.recognizer();
    let name = &recognizer.manifest().name;
    let mut names: Vec<&String> = domains.iter().collect();
    names.sort();
    names.dedup();
    let mut tables = Vec::new();
    for domain in &names {
        let members: Vec<&(String, &Vec<f32>)> = embeddings
            .iter()
            .zip(domains)
            .filter(|(_, d)| d == domain)
            .map(|(e, _)| e)
            .collect();
        let mut distances: Vec<f32> = (0..members.len())
            .into_par_iter()
            .flat_map_iter(|i| {
                let (id_a, a) = members[i];
                members[i + 1..].iter().filter_map(move |(id_b, b)| {
                    let d = recognizer.distance(a, b) as f32;
                    (id_a != id_b && f64::from(d) >= args.exclude_below).then_some(d)
                })
            })
            .collect();
        let table = CalibrationTable::build(name, domain, &mut distances, args.step)
            .map_err(wire)
            .with_context(|| format!("domain {domain}"))?;
        eprintln!(
            "kenning: domain {domain}: {} photos, {} impostor pairs, FMR 1e-4 at distance {:.4}",
            members.len(),
            table.impostor_pairs,
            table.distance_for_log_fmr(-4.0)
        );
        tables.push(table);
    }
    let deepest = tables
        .iter()
        .filter_map(|t| t.points.last().map(|p| p.0))
        .fold(0.0, f64::min);
    let levels: Vec<f64> = (0u32..)
        .map(|i| (-f64::from(i) * args.step * 1e9).round() / 1e9 + 0.0)
        .take_while(|&l| l >= deepest - 1e-9)
        .collect();
    let curves: Vec<_> = tables.iter().map(|t| move |d: f64| t.log_fmr(d)).collect();
    let curves: Vec<&(dyn Fn(f64) -> f64 + Sync)> = curves
        .iter()
        .map(|c| c as &(dyn Fn(f64) -> f64 + Sync))
        .collect();
    let points: Vec<(f64, f64)> = kenning_eval::mean_curve_points(&curves, 0.0, 4.0, &levels)
        .into_iter()
        .map(|(d, l)| (l, d))
        .collect();
    let pairs: u64 = tables.iter().map(|t| t.impostor_pairs).sum();
    let source = if args.source.is_empty() {
        format!(
            "{} domains ({}) pooled, each weighing alike; {pairs} impostor pairs within domains (pairs closer than {} left out as copies)",
            names.len(),
            names.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
            args.exclude_below
        )
    } else {
        args.source.clone()
    };
    let table = CalibrationTable {
        recogniser: name.clone(),
        source,
        impostor_pairs: pairs,
        points,
    };
    table.validate().map_err(wire)?;
    std::fs::write(out, table.to_json()).with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "kenning: pooled table from {} domains: FMR 1e-4 at distance {:.4}, 1e-5 at {:.4}",
        names.len(),
        table.distance_for_log_fmr(-4.0),
        table.distance_for_log_fmr(-5.0)
    );
    Ok(0)
}

/// `kenning calibrate --collection C [--check | --reset]`: CalibrateCollection
/// through the accountability rules; the response as JSON on stdout and
/// the observed/promised table on stderr.
fn calibrate_collection(
    ctx: &Context,
    data: &DataArgs,
    id: &str,
    args: &CalibrateArgs,
) -> Result<i32> {
    if matches!(args.check, Some(Some(_))) {
        bail!("with --collection, --check takes no file: it checks the collection's gallery");
    }
    let action = match (args.reset, args.check.is_some()) {
        (true, _) => "RESET",
        (false, true) => "CHECK",
        (false, false) => "FIT",
    };
    let session = data.open(ctx)?;
    let v = session.call(
        "CalibrateCollection",
        json!({ "CollectionId": id, "Action": action }),
    )?;
    println!("{}", serde_json::to_string_pretty(&v)?);
    for (key, what) in [("Before", "before the fit"), ("Check", "in force")] {
        let Some(check) = v.get(key).filter(|c| !c.is_null()) else {
            continue;
        };
        eprintln!(
            "kenning: {what}: {} on {} faces of {} people, {} impostor pairs ({} left out as copies)",
            check["Calibration"].as_str().unwrap_or("?"),
            check["Photos"],
            check["People"],
            check["ImpostorPairs"],
            check["CopiesLeftOut"]
        );
        for r in check["Rows"].as_array().into_iter().flatten() {
            eprintln!(
                "kenning:   Similarity {:>5}: promised FMR {:.1e}, observed {:.2e} ({} pairs), observed/promised {:.2}{}",
                r["Similarity"].as_f64().unwrap_or(f64::NAN),
                r["PromisedFalseMatchRate"].as_f64().unwrap_or(f64::NAN),
                r["ObservedFalseMatchRate"].as_f64().unwrap_or(f64::NAN),
                r["FalseMatches"],
                r["Ratio"].as_f64().unwrap_or(f64::NAN),
                if r["Measurable"].as_bool() == Some(false) {
                    " (too few pairs to test)"
                } else {
                    ""
                }
            );
        }
    }
    Ok(0)
}

/// identities.csv as a map from its file column to the identity.
fn identity_lookup(csv: &Path) -> Result<HashMap<PathBuf, String>> {
    Ok(read_identities(csv)?
        .into_iter()
        .map(|r| (PathBuf::from(r.file), r.identity))
        .collect())
}

/// The identity of a photo whose path ends with a file named in identities.csv.
fn find_identity(map: &HashMap<PathBuf, String>, p: &Path) -> Option<String> {
    let comps: Vec<_> = p.components().collect();
    (0..comps.len()).find_map(|k| map.get(&comps[k..].iter().collect::<PathBuf>()).cloned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_match_by_path_suffix() {
        let map: HashMap<PathBuf, String> = [("images/s1/1.pgm", "a"), ("2.pgm", "b")]
            .into_iter()
            .map(|(f, id)| (PathBuf::from(f), id.to_string()))
            .collect();
        let got = |p: &str| find_identity(&map, Path::new(p));
        assert_eq!(got("../data/orl/images/s1/1.pgm").as_deref(), Some("a"));
        assert_eq!(got("/x/2.pgm").as_deref(), Some("b"));
        assert_eq!(got("images/s2/1.pgm"), None);
    }

    #[test]
    fn a_listed_gallery_makes_the_rest_mated_or_unmated() {
        let list = std::env::temp_dir().join(format!("kenning-gallery-{}.txt", std::process::id()));
        std::fs::write(&list, "a1.jpg\n\nb1.jpg\n").unwrap();
        let files = ["a1.jpg", "a2.jpg", "b1.jpg", "c1.jpg", "c2.jpg"];
        let ids = ["a", "a", "b", "c", "c"];
        let split = gallery_from_list(&list, &files, &ids).unwrap();
        std::fs::remove_file(&list).unwrap();
        assert_eq!(split.gallery, [0, 2]);
        assert_eq!(split.mated_probes, [1]);
        assert_eq!(split.unmated_probes, [3, 4]);
    }

    #[test]
    fn similarity_rows_count_errors_at_the_table_distance() {
        // log10 FMR 0 at distance 1, -4 at 0.5: Similarity 80 is distance 0.5.
        let table = CalibrationTable {
            recogniser: "t".into(),
            source: "test".into(),
            impostor_pairs: 1000,
            points: vec![(0.0, 1.0), (-4.0, 0.5)],
        };
        let p = |score, same| ScoredPair {
            score,
            same,
            fold: None,
        };
        let pairs = [p(0.4, true), p(0.6, true), p(0.45, false), p(0.9, false)];
        let similarity: Vec<f64> = pairs
            .iter()
            .map(|q| table.similarity(f64::from(q.score)))
            .collect();
        let scoring = SimilarityScoring::Global(table);
        let rows = similarity_rows(&scoring, &[80.0], &pairs, &similarity);
        assert!((rows[0].distance.unwrap() - 0.5).abs() < 1e-9);
        assert_eq!(rows[0].fnmr, Some(0.5));
        assert_eq!(
            (rows[0].false_matches, rows[0].observed_fmr),
            (1, Some(0.5))
        );
    }
}
