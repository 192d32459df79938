//! Parity with dlib itself: given the same face rectangle, Kenning's
//! landmarks and embeddings must match dlib's (dlib-bin fed by PIL), whose
//! results scripts/make-parity-fixtures.py stored in
//! tests/fixtures/parity/reference.json.

use kenning_core::Point;
use kenning_dlib::DlibRect;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common;

/// How far Kenning's embedding may be from dlib's (Euclidean).
const MAX_EMBEDDING_L2: f64 = 2e-6;

#[test]
fn landmarks_and_embeddings_match_dlib() {
    let Some(data) = common::data("landmarks_and_embeddings_match_dlib") else {
        return;
    };
    let text = std::fs::read_to_string(common::root().join("tests/fixtures/parity/reference.json"))
        .unwrap();
    let reference: Value = serde_json::from_str(&text).unwrap();
    let pipeline = common::dlib_pipeline();
    let (mut faces, mut worst_px, mut worst_l2) = (0, 0.0f64, 0.0f64);
    for image in reference["images"].as_array().unwrap() {
        let path = image["path"].as_str().unwrap();
        let rgb = common::load(&data.join(path));
        // The decoder must give PIL's pixels exactly, or dlib saw another image.
        let sha = hex(&Sha256::digest(rgb.as_raw()));
        assert_eq!(
            sha,
            image["rgb_sha256"].as_str().unwrap(),
            "{path}: decoded pixels differ from PIL's"
        );
        for face in image["faces"].as_array().unwrap() {
            let r: Vec<i64> = face["rect"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            let rect = DlibRect {
                left: r[0],
                top: r[1],
                right: r[2],
                bottom: r[3],
            };
            let (points, embedding) = pipeline.embed_dlib_rect(&rgb, rect).unwrap();
            let expected: Vec<Point> = face["landmarks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| Point::new(p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
                .collect();
            // dlib's landmarks are whole pixels, and Kenning's equal them.
            for (got, want) in points.iter().zip(&expected) {
                let d = (got.x - want.x).abs().max((got.y - want.y).abs());
                worst_px = worst_px.max(d);
                assert_eq!(d, 0.0, "{path} {rect:?}: landmark {got:?} vs dlib {want:?}");
            }
            let l2 = face["descriptor"]
                .as_array()
                .unwrap()
                .iter()
                .zip(&embedding)
                .map(|(w, &g)| (w.as_f64().unwrap() - f64::from(g)).powi(2))
                .sum::<f64>()
                .sqrt();
            worst_l2 = worst_l2.max(l2);
            // Float rounding only (1.31e-6 measured; docs/pipeline.md): a
            // wrong weight, layout or chip pixel moves it by 1e-3 or more.
            assert!(
                l2 <= MAX_EMBEDDING_L2,
                "{path} {rect:?}: embedding {l2} from dlib's"
            );
            faces += 1;
        }
    }
    eprintln!("parity: {faces} faces, worst landmark difference {worst_px} px, worst embedding distance {worst_l2:.2e}");
    assert_eq!(faces, 87, "reference faces checked");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// PIL's decode of every JPEG under `data` (EXIF orientation applied, as
/// Kenning does): relative path -> SHA-256 of the RGB buffer.
const PIL_HASHES: &str = r#"
import hashlib, sys
from pathlib import Path
from PIL import Image, ImageOps
root = Path(sys.argv[1])
for p in sorted(root.rglob("*")):
    if p.suffix.lower() in (".jpg", ".jpeg") and p.is_file():
        with Image.open(p) as im:
            rgb = ImageOps.exif_transpose(im).convert("RGB")
        print(p.relative_to(root).as_posix(), hashlib.sha256(rgb.tobytes()).hexdigest())
"#;

fn jpegs(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
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

/// docs/pipeline.md: JPEG pixels are bit-identical to PIL's, on every JPEG
/// of ../shared/data (PIL from the test venv, run beside Kenning's decoder).
#[test]
fn every_jpeg_decodes_to_pils_pixels() {
    use rayon::prelude::*;
    let Some(data) = common::data("parity::every_jpeg_decodes_to_pils_pixels") else {
        return;
    };
    let python = common::root().join(".cache/venv-test/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/setup-test-python.sh (scripts/test.sh does)",
        python.display()
    );
    let pil = std::process::Command::new(&python)
        .args(["-c", PIL_HASHES])
        .arg(&data)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap();
    assert!(pil.status.success(), "PIL's hashing failed");
    let pil: std::collections::BTreeMap<String, String> = String::from_utf8(pil.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (path, sha) = l.rsplit_once(' ').unwrap();
            (path.to_owned(), sha.to_owned())
        })
        .collect();
    let mut files = Vec::new();
    jpegs(&data, &mut files);
    let ours: std::collections::BTreeMap<String, String> = files
        .par_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&data)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, hex(&Sha256::digest(common::load(p).as_raw())))
        })
        .collect();
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        pil.keys().collect::<Vec<_>>(),
        "PIL and this test see different JPEGs"
    );
    let differ: Vec<&String> = ours
        .iter()
        .filter(|(path, sha)| pil[*path] != **sha)
        .map(|(path, _)| path)
        .collect();
    eprintln!(
        "parity: {} JPEGs decoded, {} differ from PIL",
        ours.len(),
        differ.len()
    );
    assert!(
        differ.is_empty(),
        "decoded pixels differ from PIL's: {differ:?}"
    );
    assert!(ours.len() > 8000, "only {} JPEGs", ours.len());
}
