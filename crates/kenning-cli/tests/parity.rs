//! Parity with dlib itself: given the same face rectangle, Kenning's
//! landmarks and embeddings must match dlib's (dlib-bin fed by PIL), whose
//! results scripts/make-parity-fixtures.py stored in
//! tests/fixtures/parity/reference.json.

use kenning_core::Point;
use kenning_dlib::DlibRect;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::common;

#[test]
fn landmarks_and_embeddings_match_dlib() {
    let Some(data) = common::data("landmarks_and_embeddings_match_dlib") else {
        return;
    };
    let text = std::fs::read_to_string(common::root().join("tests/fixtures/parity/reference.json"))
        .unwrap();
    let reference: Value = serde_json::from_str(&text).unwrap();
    let pipeline = common::pipeline();
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
            for (got, want) in points.iter().zip(&expected) {
                let d = (got.x - want.x).abs().max((got.y - want.y).abs());
                worst_px = worst_px.max(d);
                assert!(
                    d <= 1.0,
                    "{path} {rect:?}: landmark {got:?} vs dlib {want:?}"
                );
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
            assert!(l2 <= 0.01, "{path} {rect:?}: embedding {l2} from dlib's");
            faces += 1;
        }
    }
    eprintln!("parity: {faces} faces, worst landmark difference {worst_px} px, worst embedding distance {worst_l2:.2e}");
    assert!(faces >= 80, "only {faces} reference faces");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
