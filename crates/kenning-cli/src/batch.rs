//! Runs a function over many files on all cores, printing results in input
//! order as they complete, with a progress bar and per-file errors.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

/// Applies `work` to every path in parallel and writes each `Ok(Some)` line
/// to stdout in input order; each `Err` becomes one line on stderr. Returns
/// how many inputs failed.
pub fn run<F>(paths: &[PathBuf], work: F) -> usize
where
    F: Fn(&PathBuf) -> anyhow::Result<Option<String>> + Sync,
{
    let bar = if paths.len() > 1 {
        ProgressBar::new(paths.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} images {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (tx, rx) = mpsc::channel::<(usize, anyhow::Result<Option<String>>)>();
    let printer = {
        let bar = bar.clone();
        let paths = paths.to_vec();
        std::thread::spawn(move || {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            let mut pending = BTreeMap::new();
            let (mut next, mut failed) = (0, 0);
            for (i, result) in rx {
                pending.insert(i, result);
                while let Some(result) = pending.remove(&next) {
                    match result {
                        Ok(Some(line)) => {
                            if writeln!(out, "{line}").is_err() {
                                return failed;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            failed += 1;
                            bar.suspend(|| eprintln!("kenning: {}: {e:#}", paths[next].display()));
                        }
                    }
                    next += 1;
                    bar.inc(1);
                }
            }
            let _ = out.flush();
            failed
        })
    };
    paths
        .par_iter()
        .enumerate()
        .for_each_with(tx, |tx, (i, p)| {
            let _ = tx.send((i, work(p)));
        });
    let failed = printer.join().unwrap_or(paths.len());
    bar.finish_and_clear();
    failed
}
