//! Measures what libjpeg hardening (strict decoding, the scan limit) does to
//! real photos: `cargo run --release -p kenning-image --example
//! jpeg_hardening -- DIR [HASHES_OUT]`.
//!
//! Walks DIR for .jpg/.jpeg files and decodes each twice: with the default
//! limits (strict, at most 100 scans) and leniently (warnings ignored, no
//! scan limit, as before). Prints how many files decode only leniently and
//! why, whether both decodes agree pixel for pixel, and the distribution of
//! scan counts. With HASHES_OUT, writes "relative-path sha256-of-RGB" lines
//! of the default decode, the format of the PIL hashes that the parity test
//! compares with.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use kenning_image::{decode, DecodeLimits};
use sha2::{Digest, Sha256};

fn jpegs(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable folder") {
        let path = entry.expect("readable entry").path();
        if path.is_dir() {
            jpegs(&path, out);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
        {
            out.push(path);
        }
    }
}

/// Start-of-scan markers, counted by walking the segments and skipping each
/// scan's entropy-coded data (which ends at the first marker that is not a
/// stuffed byte or a restart).
fn scans(data: &[u8]) -> usize {
    let (mut pos, mut n) = (2, 0);
    while pos + 4 <= data.len() {
        if data[pos] != 0xFF {
            pos += 1;
            continue;
        }
        let code = data[pos + 1];
        match code {
            0xFF => pos += 1,
            0x00 | 0x01 | 0xD0..=0xD7 => pos += 2,
            0xD9 => break,
            _ => {
                let len = usize::from(u16::from_be_bytes([data[pos + 2], data[pos + 3]]));
                pos += 2 + len;
                if code == 0xDA {
                    n += 1;
                    let is_marker =
                        |p: usize| data[p] == 0xFF && !matches!(data[p + 1], 0x00 | 0xD0..=0xD7);
                    while pos + 1 < data.len() && !is_marker(pos) {
                        pos += 1;
                    }
                }
            }
        }
    }
    n
}

fn main() {
    let mut args = std::env::args_os().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: jpeg_hardening DIR [HASHES_OUT]"));
    let hashes_out = args.next().map(PathBuf::from);
    let strict = DecodeLimits::default();
    let lenient = DecodeLimits {
        strict_jpeg: false,
        max_jpeg_scans: u32::MAX,
        ..strict
    };
    let mut files = Vec::new();
    jpegs(&dir, &mut files);
    files.sort();
    let mut by_scans: BTreeMap<usize, usize> = BTreeMap::new();
    let mut refused: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let (mut both_fail, mut differ) = (0, 0);
    let mut hashes = String::new();
    for path in &files {
        let rel = path
            .strip_prefix(&dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let bytes = std::fs::read(path).expect("readable file");
        // A few files named .jpg hold another format (decoded by its magic).
        if bytes.starts_with(&[0xFF, 0xD8]) {
            *by_scans.entry(scans(&bytes)).or_default() += 1;
        }
        match (decode(&bytes, &strict), decode(&bytes, &lenient)) {
            (Ok(a), Ok(b)) => {
                if a != b {
                    differ += 1;
                    println!("differ {rel}");
                }
                hashes.push_str(&format!(
                    "{rel} {}\n",
                    hex::encode(Sha256::digest(a.as_raw()))
                ));
            }
            (Err(e), Ok(_)) => refused.entry(e.to_string()).or_default().push(rel),
            (Err(_), Err(_)) => both_fail += 1,
            (Ok(_), Err(e)) => println!("decodes only strictly?! {rel}: {e}"),
        }
    }
    let refused_n: usize = refused.values().map(Vec::len).sum();
    println!("{} JPEGs under {}", files.len(), dir.display());
    println!("scans per JPEG: {by_scans:?} (files that are JPEG inside)");
    println!(
        "{} decode both ways, {differ} of them with different pixels; {refused_n} refused by \
         the default limits but decoded leniently; {both_fail} fail both ways",
        files.len() - refused_n - both_fail
    );
    for (why, list) in &refused {
        println!("  {} x {why}: {}", list.len(), list.join(", "));
    }
    if let Some(out) = hashes_out {
        std::fs::File::create(&out)
            .and_then(|mut f| f.write_all(hashes.as_bytes()))
            .expect("writable hashes file");
    }
}
