//! Embeds the photos of an evaluation set on all cores, with an optional
//! on-disk cache, and records which photos failed to enrol.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, Context as _, Result};
use kenning_models::Pipeline;
use serde::{Deserialize, Serialize};

use crate::batch;
use crate::commands::{load, wire, Context};

/// What a cached embedding depends on besides the photo: a cache line is
/// reused only when all of these match the current run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Settings {
    recogniser: String,
    recogniser_version: String,
    working_size: u32,
    min_confidence: f32,
}

/// One line of the cache file (JSON lines, appended to by every run).
#[derive(Serialize, Deserialize)]
struct CacheLine {
    /// Canonical path of the photo.
    file: String,
    /// Its size in bytes, so an edited photo is embedded again.
    bytes: u64,
    #[serde(flatten)]
    settings: Settings,
    /// `null` when no face was found (so that is not recomputed either).
    embedding: Option<Vec<f32>>,
    /// The face's size in pixels (kenning_core::quality); absent in lines
    /// written before sizes were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pixels: Option<f32>,
}

/// An embedding, or `None` when no face was found, with the face's size
/// when known.
type Embedding = (Option<Vec<f32>>, Option<f32>);

/// Who enrolled and who did not.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EnrolmentReport {
    /// Photos given.
    pub photos: usize,
    /// Photos with an embedding.
    pub enrolled: usize,
    /// Photos in which no face was found (failures to enrol).
    pub no_face: Vec<String>,
    /// Photos that could not be read, with the reason (also failures to enrol).
    pub unreadable: Vec<(String, String)>,
    /// (no_face + unreadable) / photos.
    pub failure_to_enrol_rate: f64,
    /// Embeddings taken from the cache.
    pub from_cache: usize,
    /// The rule, in words.
    pub rule: String,
}

impl EnrolmentReport {
    /// One Markdown paragraph.
    pub fn to_markdown(&self, what: &str) -> String {
        let mut s = format!(
            "{what}: {} photos, {} enrolled; failure to enrol {:.2}% ({} without a face found, {} unreadable). {}\n",
            self.photos,
            self.enrolled,
            self.failure_to_enrol_rate * 100.0,
            self.no_face.len(),
            self.unreadable.len(),
            self.rule
        );
        let listed: Vec<&str> = self
            .no_face
            .iter()
            .map(String::as_str)
            .chain(self.unreadable.iter().map(|u| u.0.as_str()))
            .collect();
        if !listed.is_empty() {
            let more = listed.len().saturating_sub(20);
            s.push_str(&format!(
                "\nNot enrolled: {}{}\n",
                listed[..listed.len().min(20)].join(", "),
                if more > 0 {
                    format!(" and {more} more (all listed in the JSON)")
                } else {
                    String::new()
                }
            ));
        }
        s
    }
}

/// A set of photos with their embeddings (`None` = failed to enrol).
pub struct Enrolled {
    /// Per photo, in input order.
    pub embeddings: Vec<Option<Vec<f32>>>,
    /// Per photo, the embedded face's size in pixels (`None` when no face
    /// was found or the cache line predates sizes).
    pub pixels: Vec<Option<f32>>,
    /// Summary.
    pub report: EnrolmentReport,
}

/// The pipeline plus the cache.
pub struct Embedder {
    /// The face pipeline.
    pub pipeline: Pipeline,
    settings: Settings,
    cache: Option<PathBuf>,
}

impl Embedder {
    /// Loads the pipeline; `cache` is a JSON-lines file (created if absent).
    pub fn new(ctx: &Context, cache: Option<PathBuf>) -> Result<Self> {
        let pipeline = ctx.pipeline()?;
        let m = pipeline.recognizer().manifest();
        let settings = Settings {
            recogniser: m.name.clone(),
            recogniser_version: m.version.clone(),
            working_size: ctx.working_size,
            min_confidence: ctx.min_confidence,
        };
        Ok(Self {
            pipeline,
            settings,
            cache,
        })
    }

    /// Embeds the largest face of each photo. `names` are how photos are
    /// named in reports (e.g. relative to the data folder), `paths` where
    /// they are.
    pub fn embed(&self, names: &[String], paths: &[PathBuf]) -> Result<Enrolled> {
        let keys: Vec<(String, u64)> = paths
            .iter()
            .map(|p| {
                let canon = p.canonicalize().unwrap_or_else(|_| p.clone());
                let bytes = std::fs::metadata(p).map_or(0, |m| m.len());
                (canon.display().to_string(), bytes)
            })
            .collect();
        let mut cached = self.read_cache()?;
        let mut out: Vec<Option<Embedding>> = keys.iter().map(|k| cached.remove(k)).collect();
        let from_cache = out.iter().filter(|e| e.is_some()).count();
        let todo: Vec<PathBuf> = paths
            .iter()
            .zip(&out)
            .filter(|(_, e)| e.is_none())
            .map(|(p, _)| p.clone())
            .collect();
        let index: HashMap<&PathBuf, usize> =
            paths.iter().enumerate().map(|(i, p)| (p, i)).collect();
        let results: Mutex<Vec<(usize, Result<Embedding, String>)>> = Mutex::new(Vec::new());
        batch::run(&todo, |p| {
            let r = load(p).and_then(|img| self.pipeline.analyze(&img, true).map_err(wire));
            let failed = r.as_ref().err().map(|e| format!("{e:#}"));
            let r = r
                .map(|faces| {
                    faces
                        .into_iter()
                        .next()
                        .map_or((None, None), |f| (f.embedding.clone(), Some(f.pixels())))
                })
                .map_err(|e| format!("{e:#}"));
            results
                .lock()
                .map_err(|_| anyhow!("poisoned"))?
                .push((index[p], r));
            match failed {
                Some(e) => Err(anyhow!(e)),
                None => Ok(None),
            }
        });
        let results = results.into_inner().map_err(|_| anyhow!("poisoned"))?;
        let mut report = EnrolmentReport {
            photos: paths.len(),
            from_cache,
            rule: "The largest face found in each photo is embedded; a photo in which no face is found, or that cannot be \
                   read, is a failure to enrol and is left out of every comparison."
                .into(),
            ..Default::default()
        };
        let mut new_lines = Vec::new();
        for (i, r) in results {
            match r {
                Ok(e) => {
                    new_lines.push(CacheLine {
                        file: keys[i].0.clone(),
                        bytes: keys[i].1,
                        settings: self.settings.clone(),
                        embedding: e.0.clone(),
                        pixels: e.1,
                    });
                    out[i] = Some(e);
                }
                Err(msg) => report.unreadable.push((names[i].clone(), msg)),
            }
        }
        self.append_cache(&new_lines)?;
        let (embeddings, pixels): (Vec<Option<Vec<f32>>>, Vec<Option<f32>>) = out
            .into_iter()
            .map(|e| e.map_or((None, None), |(v, p)| (v, p)))
            .unzip();
        for (name, e) in names.iter().zip(&embeddings) {
            if e.is_none() && !report.unreadable.iter().any(|u| &u.0 == name) {
                report.no_face.push(name.clone());
            }
        }
        report.unreadable.sort();
        report.enrolled = embeddings.iter().filter(|e| e.is_some()).count();
        report.failure_to_enrol_rate = if paths.is_empty() {
            0.0
        } else {
            1.0 - report.enrolled as f64 / paths.len() as f64
        };
        if report.enrolled < report.photos {
            eprintln!(
                "kenning: {} of {} photos not enrolled ({} without a face found); they are left out and listed in the report",
                report.photos - report.enrolled,
                report.photos,
                report.no_face.len()
            );
        }
        Ok(Enrolled {
            embeddings,
            pixels,
            report,
        })
    }

    /// Cached embeddings made with the current settings, keyed by (file, bytes).
    fn read_cache(&self) -> Result<HashMap<(String, u64), Embedding>> {
        let mut map = HashMap::new();
        let Some(path) = &self.cache else {
            return Ok(map);
        };
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(map),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        for line in std::io::BufReader::new(file).lines() {
            // A line cut short by an interrupted run is skipped, not fatal.
            if let Ok(l) = serde_json::from_str::<CacheLine>(&line?) {
                if l.settings == self.settings {
                    map.insert((l.file, l.bytes), (l.embedding, l.pixels));
                }
            }
        }
        Ok(map)
    }

    fn append_cache(&self, lines: &[CacheLine]) -> Result<()> {
        let (Some(path), false) = (&self.cache, lines.is_empty()) else {
            return Ok(());
        };
        let mut text = String::new();
        for l in lines {
            text.push_str(&serde_json::to_string(l)?);
            text.push('\n');
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening cache {}", path.display()))?;
        f.write_all(text.as_bytes())
            .with_context(|| format!("writing cache {}", path.display()))
    }
}

/// Resolves a file named in a CSV against the data folder (absolute paths
/// stay as they are).
pub fn resolve(dir: &Path, file: &str) -> PathBuf {
    dir.join(file)
}
