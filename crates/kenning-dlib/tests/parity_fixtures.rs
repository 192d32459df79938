//! Landmark parity with dlib on the shared photos, through kenning-image's
//! decoder: for every face in tests/fixtures/parity/reference.json (made by
//! scripts/make-parity-fixtures.py from dlib itself), the predictor must
//! return dlib's exact integer landmarks from the same integer rectangle.
//!
//! Images whose decoded RGB differs from PIL's (checked by SHA-256; e.g. an
//! EXIF-rotated JPEG, which kenning-image turns upright and PIL does not)
//! are reported and skipped, since different pixels legitimately give
//! different landmarks. Skipped with a message when the models or the data
//! (KENNING_DATA, default /work/shared/data) are missing.

use std::path::PathBuf;

use kenning_dlib::{DlibRect, ShapePredictor};
use kenning_image::{decode_file, DecodeLimits};
use sha2::{Digest, Sha256};

#[test]
fn landmarks_match_dlib_on_the_fixture_photos() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let models = std::env::var_os("KENNING_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("models"));
    let data = std::env::var_os("KENNING_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/data"));
    let Ok(sp) = ShapePredictor::load(&models.join("shape_predictor_5_face_landmarks.dat")) else {
        eprintln!("skipping: no shape predictor in {}", models.display());
        return;
    };
    if !data.is_dir() {
        eprintln!(
            "skipping: data root {} not found (set KENNING_DATA)",
            data.display()
        );
        return;
    }
    let text = std::fs::read_to_string(root.join("tests/fixtures/parity/reference.json"))
        .expect("reference.json");
    let reference: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let limits = DecodeLimits::default();
    let (mut faces, mut skipped) = (0usize, Vec::new());
    for im in reference["images"].as_array().expect("images") {
        let path = im["path"].as_str().expect("path");
        let img = match decode_file(&data.join(path), &limits) {
            Ok(img) => img,
            Err(e) => {
                skipped.push(format!("{path}: {e}"));
                continue;
            }
        };
        let same_size = u64::from(img.width()) == im["width"].as_u64().unwrap()
            && u64::from(img.height()) == im["height"].as_u64().unwrap();
        let sha: String = Sha256::digest(img.as_raw())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if !same_size || sha != im["rgb_sha256"].as_str().unwrap() {
            skipped.push(format!("{path}: decoded pixels differ from PIL's"));
            continue;
        }
        for face in im["faces"].as_array().unwrap() {
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
            let got = sp.predict(&img, rect);
            let want: Vec<(f64, f64)> = face["landmarks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
                .collect();
            let got: Vec<(f64, f64)> = got.iter().map(|p| (p.x, p.y)).collect();
            assert_eq!(got, want, "{path} {rect:?}");
            faces += 1;
        }
    }
    eprintln!(
        "{faces} faces identical to dlib; {} images skipped",
        skipped.len()
    );
    for s in &skipped {
        eprintln!("  skipped {s}");
    }
    assert!(faces > 0, "no fixture face could be compared");
}
