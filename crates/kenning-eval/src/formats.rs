//! Plain-file inputs: `identities.csv`, `pairs.csv`, LFW `pairs.txt`,
//! `labels.csv` and `boxes.csv`.
//!
//! CSV files need a header row; columns are found by name (case-insensitive)
//! so extra columns are allowed. Fields may be quoted RFC 4180 style (read by
//! the `csv` crate). Blank lines are skipped. Every error names the file and the 1-based line.

use std::collections::BTreeMap;
use std::path::Path;

use kenning_core::PixelBox;
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};

/// One row of `identities.csv`: which person a photo shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRecord {
    /// Photo path relative to the data folder.
    pub file: String,
    /// Person identifier.
    pub identity: String,
}

/// One comparison from `pairs.csv` or LFW `pairs.txt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairRecord {
    /// First photo.
    pub file_a: String,
    /// Second photo.
    pub file_b: String,
    /// True for a genuine (same person) pair.
    pub same: bool,
    /// Cross-validation fold, when the file defines folds.
    pub fold: Option<u32>,
}

/// `labels.csv`: group columns (gender, race, age, ...) per photo.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Labels {
    /// Names of the label columns (every column except `file`), in file order.
    pub columns: Vec<String>,
    /// Values per file, in `columns` order.
    pub rows: BTreeMap<String, Vec<String>>,
}

/// A ground-truth face box from `boxes.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GroundTruthBox {
    /// Box in pixels.
    pub bbox: PixelBox,
    /// A face that should count neither as found nor as missed (too small,
    /// ambiguous, ...).
    pub ignore: bool,
}

/// Ground-truth boxes keyed by file.
pub type BoxesByFile = BTreeMap<String, Vec<GroundTruthBox>>;

impl Labels {
    /// Positions of the named columns, or an error naming the missing one.
    pub fn column_indices<S: AsRef<str>>(&self, names: &[S]) -> Result<Vec<usize>> {
        names
            .iter()
            .map(|n| {
                let n = n.as_ref();
                self.columns
                    .iter()
                    .position(|c| c.eq_ignore_ascii_case(n))
                    .ok_or_else(|| {
                        EvalError::Invalid(format!(
                            "labels have no column {n:?} (columns: {})",
                            self.columns.join(", ")
                        ))
                    })
            })
            .collect()
    }

    /// The group of `file` over the given column positions, values joined by
    /// `|` (e.g. `female|asian`); `None` when the file is unlabelled or a value
    /// is empty, so it is left out of per-group figures rather than guessed.
    pub fn group_of(&self, file: &str, columns: &[usize]) -> Option<String> {
        let row = self.rows.get(file)?;
        let parts: Option<Vec<&str>> = columns
            .iter()
            .map(|&c| row.get(c).map(String::as_str).filter(|v| !v.is_empty()))
            .collect();
        Some(parts?.join("|"))
    }
}

/// Reads a whole text file, mapping failures to [`EvalError::Io`].
pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads and parses `identities.csv`.
pub fn read_identities(path: &Path) -> Result<Vec<IdentityRecord>> {
    parse_identities(&read_text(path)?, &path.display().to_string())
}

/// Reads pairs: LFW format when the file name ends in `.txt`, else CSV.
pub fn read_pairs(path: &Path) -> Result<Vec<PairRecord>> {
    let text = read_text(path)?;
    let name = path.display().to_string();
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("txt"))
    {
        parse_lfw_pairs(&text, &name)
    } else {
        parse_pairs_csv(&text, &name)
    }
}

/// Reads and parses `labels.csv`.
pub fn read_labels(path: &Path) -> Result<Labels> {
    parse_labels(&read_text(path)?, &path.display().to_string())
}

/// Reads and parses `boxes.csv`.
pub fn read_boxes(path: &Path) -> Result<BoxesByFile> {
    parse_boxes(&read_text(path)?, &path.display().to_string())
}

/// Parses `identities.csv` (columns `file,identity`). A file listed twice is
/// an error, since it would silently create a genuine pair of a photo with
/// itself.
pub fn parse_identities(text: &str, source_name: &str) -> Result<Vec<IdentityRecord>> {
    let table = Csv::parse(text, source_name)?;
    let [f, id] = table.require(["file", "identity"])?;
    let mut seen = std::collections::HashSet::new();
    table
        .rows
        .iter()
        .map(|(line, row)| {
            let file = table.nonempty(*line, row, f, "file")?;
            if !seen.insert(file.clone()) {
                return Err(table.err(*line, format!("file {file:?} is listed twice")));
            }
            Ok(IdentityRecord {
                file,
                identity: table.nonempty(*line, row, id, "identity")?,
            })
        })
        .collect()
}

/// Parses `pairs.csv` (columns `file_a,file_b,same[,fold]`); `same` is
/// `1/0`, `true/false` or `yes/no`.
pub fn parse_pairs_csv(text: &str, source_name: &str) -> Result<Vec<PairRecord>> {
    let table = Csv::parse(text, source_name)?;
    let [a, b, s] = table.require(["file_a", "file_b", "same"])?;
    let fold = table.find("fold");
    table
        .rows
        .iter()
        .map(|(line, row)| {
            let same = match table.field(row, s).to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" => false,
                other => {
                    return Err(
                        table.err(*line, format!("same must be 1/0/true/false, got {other:?}"))
                    )
                }
            };
            let fold = match fold.map(|c| table.field(row, c)).filter(|v| !v.is_empty()) {
                Some(v) => Some(v.parse().map_err(|_| {
                    table.err(*line, format!("fold must be a whole number, got {v:?}"))
                })?),
                None => None,
            };
            Ok(PairRecord {
                file_a: table.nonempty(*line, row, a, "file_a")?,
                file_b: table.nonempty(*line, row, b, "file_b")?,
                same,
                fold,
            })
        })
        .collect()
}

/// Parses LFW's `pairs.txt`: a first line `folds n` (or just `n`, one fold),
/// then per fold `n` genuine lines `name i j` followed by `n` impostor lines
/// `name1 i name2 j`. Photos are `name/name_%04d.jpg`; the fold of a pair is
/// the block it appears in.
pub fn parse_lfw_pairs(text: &str, source_name: &str) -> Result<Vec<PairRecord>> {
    let err = |line: usize, message: String| EvalError::Parse {
        source_name: source_name.into(),
        line,
        message,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    let (first_no, first) = lines
        .next()
        .ok_or_else(|| err(1, "empty pairs file".into()))?;
    let header: Vec<usize> = first
        .split_whitespace()
        .map(|t| {
            t.parse().map_err(|_| {
                err(
                    first_no,
                    format!("expected \"folds n\" or \"n\", got {first:?}"),
                )
            })
        })
        .collect::<Result<_>>()?;
    let (folds, n) = match header[..] {
        [n] => (1, n),
        [f, n] => (f, n),
        _ => {
            return Err(err(
                first_no,
                format!("expected \"folds n\" or \"n\", got {first:?}"),
            ))
        }
    };
    let photo = |name: &str, idx: &str, line: usize| -> Result<String> {
        let i: u32 = idx.parse().map_err(|_| {
            err(
                line,
                format!("photo number must be a whole number, got {idx:?}"),
            )
        })?;
        Ok(format!("{name}/{name}_{i:04}.jpg"))
    };
    let mut out = Vec::with_capacity(folds * n * 2);
    let mut last_line = first_no;
    for (k, (line, l)) in lines.enumerate() {
        last_line = line;
        let fold = k / (2 * n.max(1));
        if fold >= folds {
            return Err(err(
                line,
                format!("more pairs than the header's {folds} folds x {n} x 2"),
            ));
        }
        let same_block = k % (2 * n) < n;
        let t: Vec<&str> = l.split_whitespace().collect();
        let rec = match (same_block, t.as_slice()) {
            (true, [name, i, j]) => PairRecord {
                file_a: photo(name, i, line)?,
                file_b: photo(name, j, line)?,
                same: true,
                fold: Some(fold as u32),
            },
            (false, [n1, i, n2, j]) => PairRecord {
                file_a: photo(n1, i, line)?,
                file_b: photo(n2, j, line)?,
                same: false,
                fold: Some(fold as u32),
            },
            (true, _) => {
                return Err(err(
                    line,
                    format!("expected a genuine pair \"name i j\", got {l:?}"),
                ))
            }
            (false, _) => {
                return Err(err(
                    line,
                    format!("expected an impostor pair \"name1 i name2 j\", got {l:?}"),
                ))
            }
        };
        out.push(rec);
    }
    if out.len() != folds * n * 2 {
        return Err(err(
            last_line,
            format!(
                "header promises {folds} folds x {n} x 2 = {} pairs, found {}",
                folds * n * 2,
                out.len()
            ),
        ));
    }
    Ok(out)
}

/// Parses `labels.csv`: a `file` column plus any group columns.
pub fn parse_labels(text: &str, source_name: &str) -> Result<Labels> {
    let table = Csv::parse(text, source_name)?;
    let [f] = table.require(["file"])?;
    let columns: Vec<String> = table
        .header
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != f)
        .map(|(_, c)| c.clone())
        .collect();
    let mut rows = BTreeMap::new();
    for (line, row) in &table.rows {
        let file = table.nonempty(*line, row, f, "file")?;
        let values = (0..table.header.len())
            .filter(|&i| i != f)
            .map(|i| table.field(row, i).to_string())
            .collect();
        if rows.insert(file.clone(), values).is_some() {
            return Err(table.err(*line, format!("file {file:?} is listed twice")));
        }
    }
    Ok(Labels { columns, rows })
}

/// Parses `boxes.csv` (`file,left,top,width,height[,ignore]`, pixels). A file
/// may appear on several lines, one per face.
pub fn parse_boxes(text: &str, source_name: &str) -> Result<BoxesByFile> {
    let table = Csv::parse(text, source_name)?;
    let [f, l, t, w, h] = table.require(["file", "left", "top", "width", "height"])?;
    let ig = table.find("ignore");
    let mut out = BoxesByFile::new();
    for (line, row) in &table.rows {
        let num = |c: usize, name: &str| -> Result<f64> {
            let v = table.field(row, c);
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .ok_or_else(|| table.err(*line, format!("{name} must be a number, got {v:?}")))
        };
        let (left, top, width, height) = (
            num(l, "left")?,
            num(t, "top")?,
            num(w, "width")?,
            num(h, "height")?,
        );
        if width <= 0.0 || height <= 0.0 {
            return Err(table.err(
                *line,
                format!("box must have positive size, got {width}x{height}"),
            ));
        }
        let ignore = match ig.map(|c| table.field(row, c).to_ascii_lowercase()) {
            None => false,
            Some(v) => match v.as_str() {
                "" | "0" | "false" | "no" => false,
                "1" | "true" | "yes" => true,
                _ => return Err(table.err(*line, format!("ignore must be 0 or 1, got {v:?}"))),
            },
        };
        let bbox = PixelBox {
            left,
            top,
            right: left + width,
            bottom: top + height,
        };
        out.entry(table.nonempty(*line, row, f, "file")?)
            .or_default()
            .push(GroundTruthBox { bbox, ignore });
    }
    Ok(out)
}

/// A parsed CSV: header plus rows tagged with the line they start on.
struct Csv<'a> {
    source_name: &'a str,
    header: Vec<String>,
    rows: Vec<(usize, Vec<String>)>,
}

impl<'a> Csv<'a> {
    /// Reads RFC 4180 CSV with the `csv` crate: rows may be shorter than the
    /// header (missing fields read as empty), fields are trimmed, and blank
    /// lines are skipped.
    fn parse(text: &str, source_name: &'a str) -> Result<Self> {
        let err = |line, message: String| EvalError::Parse {
            source_name: source_name.into(),
            line,
            message,
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let mut records = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map_or(1, |p| p.line() as usize);
                err(line, e.to_string())
            })?;
            // A line of spaces is one empty field: as blank as an empty line.
            if record.len() == 1 && record[0].is_empty() {
                continue;
            }
            let line = record.position().map_or(1, |p| p.line() as usize);
            records.push((line, record.iter().map(str::to_owned).collect::<Vec<_>>()));
        }
        let mut it = records.into_iter();
        let (_, header) = it
            .next()
            .ok_or_else(|| err(1, "empty file: expected a header row".into()))?;
        let header: Vec<String> = header.into_iter().map(|h| h.to_ascii_lowercase()).collect();
        let rows: Vec<_> = it.collect();
        for (l, r) in &rows {
            if r.len() > header.len() {
                return Err(err(
                    *l,
                    format!("{} fields but the header has {}", r.len(), header.len()),
                ));
            }
        }
        Ok(Self {
            source_name,
            header,
            rows,
        })
    }

    fn find(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    fn require<const N: usize>(&self, names: [&str; N]) -> Result<[usize; N]> {
        let mut out = [0; N];
        for (o, n) in out.iter_mut().zip(names) {
            *o = self.find(n).ok_or_else(|| {
                self.err(
                    1,
                    format!(
                        "missing column {n:?} (expected {}; found {})",
                        names.join(","),
                        self.header.join(",")
                    ),
                )
            })?;
        }
        Ok(out)
    }

    /// A field, or "" when a short row leaves it out.
    fn field<'r>(&self, row: &'r [String], c: usize) -> &'r str {
        row.get(c).map_or("", String::as_str)
    }

    fn nonempty(&self, line: usize, row: &[String], c: usize, name: &str) -> Result<String> {
        match self.field(row, c) {
            "" => Err(self.err(line, format!("empty {name}"))),
            v => Ok(v.to_string()),
        }
    }

    fn err(&self, line: usize, message: String) -> EvalError {
        EvalError::Parse {
            source_name: self.source_name.into(),
            line,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_newlines_bom_and_blank_lines_keep_line_numbers() {
        let text =
            "\u{feff}File,Identity\n\"a\nb.jpg\",p1\n   \n\nc.jpg,\"say \"\"hi\"\"\"\nd.jpg,\n";
        let e = parse_identities(text, "ids.csv").unwrap_err();
        // The row after a field spanning two lines starts on line 7.
        assert_eq!(e.to_string(), "ids.csv:7: empty identity");
        let ok = parse_identities(&text.replace("d.jpg,\n", ""), "ids.csv").unwrap();
        assert_eq!(ok[0].file, "a\nb.jpg");
        assert_eq!(ok[1].identity, "say \"hi\"");
        let e = parse_identities("file,identity\na,b,c\n", "ids.csv").unwrap_err();
        assert_eq!(e.to_string(), "ids.csv:2: 3 fields but the header has 2");
    }
}
