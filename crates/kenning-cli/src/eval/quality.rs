//! `kenning eval quality`: fits the small-face rule (kenning_core::quality)
//! on a labelled folder of faces of known size, or checks observed against
//! promised FMR per face-size cell with and without it.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _, Result};
use kenning_core::quality::QualityBands;
use kenning_eval::quality::{check_quality_bands, fit_quality_bands, QualityFitConfig, SizedFaces};
use kenning_eval::Embeddings;
use serde_json::json;

use super::enrol::Embedder;
use super::{header, read_identity_set, with_header, write_outputs, CacheArgs, OutputArgs};
use crate::commands::Context;

/// Arguments of `kenning eval quality`.
#[derive(clap::Args)]
pub struct QualityArgs {
    /// Folder with the photos and identities.csv (photos of one identity are
    /// never impostors, e.g. a photo and its downscaled copies).
    dir: PathBuf,
    /// Fit the rule on DIR's impostor pairs and write it here.
    #[arg(long)]
    fit: Option<PathBuf>,
    /// Check this rule file (default: the recogniser's own).
    #[arg(long, conflicts_with = "fit")]
    bands: Option<PathBuf>,
    /// Band edges in pixels for --fit.
    #[arg(long, value_delimiter = ',', default_values_t = QualityFitConfig::default().edges)]
    edges: Vec<f32>,
    /// What the fit is recorded as having been fitted on.
    #[arg(long, default_value = "")]
    source: String,
    /// Similarity thresholds for the check.
    #[arg(long, value_delimiter = ',', default_values_t = vec![70.0, 80.0, 90.0])]
    similarity: Vec<f64>,
    #[command(flatten)]
    cache: CacheArgs,
    #[command(flatten)]
    out: OutputArgs,
}

/// Runs `kenning eval quality`.
pub fn quality(ctx: &Context, a: &QualityArgs) -> Result<()> {
    let set = read_identity_set(&a.dir)?;
    let embedder = Embedder::new(ctx, a.cache.cache.clone())?;
    let enrolled = embedder.embed(&set.files, &set.paths)?;
    // Faces with an embedding and a size (a cache line without a size is
    // re-embedded only when its photo changes: such faces are left out).
    let keep: Vec<usize> = (0..set.files.len())
        .filter(|&i| enrolled.embeddings[i].is_some() && enrolled.pixels[i].is_some())
        .collect();
    if keep.len() < enrolled.report.enrolled {
        eprintln!(
            "kenning: {} enrolled photos have no recorded face size (cache lines from before sizes); left out",
            enrolled.report.enrolled - keep.len()
        );
    }
    let rows: Vec<Vec<f32>> = keep
        .iter()
        .filter_map(|&i| enrolled.embeddings[i].clone())
        .collect();
    let embeddings = Embeddings::new(&rows)?;
    let pixels: Vec<f32> = keep.iter().filter_map(|&i| enrolled.pixels[i]).collect();
    let identities: Vec<String> = keep.iter().map(|&i| set.identities[i].clone()).collect();
    let recognizer = embedder.pipeline.recognizer();
    let faces = SizedFaces {
        embeddings: &embeddings,
        pixels: &pixels,
        identities: &identities,
        distance: recognizer.manifest().embedding.distance,
    };
    let head = header(ctx, Some(&embedder));
    // Pairs are scored as the operations score them: by the recogniser's
    // default calibration (a fair one assigns each face its region once).
    let calibration = recognizer
        .similarity_calibration()
        .ok_or_else(|| anyhow!("the recogniser has no calibration"))?;
    if rows.is_empty() {
        bail!("no face was enrolled");
    }
    let regions: Vec<usize> = rows.iter().map(|r| calibration.region(r)).collect();
    if let Some(path) = &a.fit {
        let config = QualityFitConfig {
            edges: a.edges.clone(),
            ..QualityFitConfig::default()
        };
        let q = fit_quality_bands(
            &faces,
            &config,
            &recognizer.manifest().name,
            &a.source,
            |i, j, d| calibration.log_fmr_in_regions(regions[i], regions[j], d),
        )?;
        std::fs::write(path, q.to_json()?)
            .with_context(|| format!("writing {}", path.display()))?;
        let report = with_header(head, json!({ "faces": keep.len(), "bands": q }));
        return write_outputs(&a.out, &report, "Small-face rule fit", "", &[]);
    }
    let rule = match &a.bands {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            QualityBands::from_json(&text)?
        }
        None => recognizer
            .quality_bands()
            .cloned()
            .ok_or_else(|| anyhow!("the recogniser has no quality bands; give --bands"))?,
    };
    let table = check_quality_bands(&faces, &rule, &a.similarity, |i, j, d| {
        calibration.log_fmr_in_regions(regions[i], regions[j], d)
    })?;
    let md = markdown(&rule, &table);
    let report = with_header(
        head,
        json!({
            "faces": keep.len(),
            "scoring": format!("default calibration ({}), without and with {}",
                recognizer.loaded().selected.as_str(), rule.label()),
            "rows": table,
        }),
    );
    write_outputs(&a.out, &report, "Small-face rule check", &md, &[])?;
    println!("{md}");
    Ok(())
}

/// One table: a column per cell, "before -> after" observed/promised.
fn markdown(rule: &QualityBands, rows: &[kenning_eval::quality::QualityRow]) -> String {
    let Some(first) = rows.first() else {
        return String::new();
    };
    let mut s = String::from("| Similarity | promised FMR |");
    for c in &first.cells {
        s.push_str(&format!(" {} |", rule.cell_name(c.bands)));
    }
    s.push_str("\n|---|---|");
    s.push_str(&"---|".repeat(first.cells.len()));
    for r in rows {
        s.push_str(&format!("\n| {} | {:.0e} |", r.similarity, r.promised_fmr));
        for c in &r.cells {
            let ratio = |n: u64| n as f64 / c.pairs.max(1) as f64 / r.promised_fmr;
            s.push_str(&format!(
                " {:.2}x -> {:.2}x ({} -> {} / {}) |",
                ratio(c.false_matches_before),
                ratio(c.false_matches_after),
                c.false_matches_before,
                c.false_matches_after,
                c.pairs
            ));
        }
    }
    s.push('\n');
    s
}
