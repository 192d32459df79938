//! The `kenning` binary, run as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common;

fn kenning(args: &[&str]) -> Output {
    Command::new(common::kenning_bin())
        .args(args)
        .env("KENNING_MODELS", common::models())
        .output()
        .expect("running kenning")
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kenning-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn detect_reports_each_file_and_survives_bad_ones() {
    let Some(data) = common::data("detect_reports_each_file_and_survives_bad_ones") else {
        return;
    };
    let dir = temp_dir("detect");
    let good = data.join("misc/face_recognition/examples/two_people.jpg");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(dir.join("a_good.jpg"), &bytes).unwrap();
    std::fs::write(dir.join("b_empty.jpg"), b"").unwrap();
    std::fs::write(dir.join("c_truncated.jpg"), &bytes[..bytes.len() / 3]).unwrap();
    std::fs::write(dir.join("d_text.png"), b"this is not an image").unwrap();
    let out = kenning(&["detect", s(&dir)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "only the good file prints a result");
    let faces = lines[0]["FaceDetails"].as_array().unwrap();
    assert_eq!(faces.len(), 2, "two people in two_people.jpg");
    for f in faces {
        let b = &f["BoundingBox"];
        for k in ["Width", "Height", "Left", "Top"] {
            let v = b[k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{k} = {v}");
        }
        assert_eq!(f["Landmarks"].as_array().unwrap().len(), 5);
        assert!(f["Confidence"].as_f64().unwrap() > 50.0);
        assert!(f["Pose"]["Yaw"].as_f64().unwrap().abs() < 45.0);
        assert!(f["Quality"]["Brightness"].as_f64().unwrap() > 0.0);
    }
    for bad in ["b_empty.jpg", "c_truncated.jpg", "d_text.png"] {
        let line = stderr
            .lines()
            .find(|l| l.contains(bad))
            .unwrap_or_else(|| panic!("no error for {bad}: {stderr}"));
        assert!(line.contains("InvalidImageFormatException"), "{line}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn embed_largest_gives_one_128_float_vector() {
    let Some(data) = common::data("embed_largest_gives_one_128_float_vector") else {
        return;
    };
    let out = kenning(&[
        "embed",
        "--largest",
        s(&data.join("misc/face_recognition/examples/two_people.jpg")),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    let faces = lines[0]["Faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1);
    assert_eq!(faces[0]["Embedding"].as_array().unwrap().len(), 128);
}

#[test]
fn compare_matches_the_same_person_and_not_another() {
    let Some(data) = common::data("compare_matches_the_same_person_and_not_another") else {
        return;
    };
    let fr = data.join("misc/face_recognition");
    // dlib's ResNet puts these two photos of one man at distance ~0.35,
    // which UTKFace's impostors reach about once in 3,000 pairs: Similarity
    // ~75, below Rekognition's default 80 (see docs/accuracy.md).
    let same = kenning(&[
        "compare",
        "--threshold",
        "70",
        s(&fr.join("obama.jpg")),
        s(&fr.join("obama2.jpg")),
    ]);
    assert!(
        same.status.success(),
        "{}",
        String::from_utf8_lossy(&same.stderr)
    );
    let r = &json_lines(&same)[0];
    let matches = r["FaceMatches"].as_array().unwrap();
    assert_eq!(matches.len(), 1, "{r}");
    assert!(matches[0]["Similarity"].as_f64().unwrap() >= 70.0);
    assert!(
        r["SourceImageFace"]["BoundingBox"]["Width"]
            .as_f64()
            .unwrap()
            > 0.1
    );

    // At threshold 0 every face is a match, so Biden's Similarity shows.
    let other = kenning(&[
        "compare",
        "--threshold",
        "0",
        s(&fr.join("obama.jpg")),
        s(&fr.join("biden.jpg")),
    ]);
    let r = &json_lines(&other)[0];
    let matches = r["FaceMatches"].as_array().unwrap();
    assert_eq!(matches.len(), 1, "{r}");
    assert!(matches[0]["Similarity"].as_f64().unwrap() < 50.0, "{r}");
    let strict = kenning(&[
        "compare",
        s(&fr.join("obama.jpg")),
        s(&fr.join("biden.jpg")),
    ]);
    let r = &json_lines(&strict)[0];
    assert_eq!(r["FaceMatches"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(r["UnmatchedFaces"].as_array().unwrap().len(), 1, "{r}");
}

#[test]
fn compare_without_a_source_face_is_an_invalid_parameter() {
    let Some(data) = common::data("compare_without_a_source_face_is_an_invalid_parameter") else {
        return;
    };
    let dir = temp_dir("noface");
    // A flat grey image has no face.
    let grey = kenning_image::RgbImage::from_pixel(200, 200, image::Rgb([128, 128, 128]));
    grey.save(dir.join("grey.png")).unwrap();
    let out = kenning(&[
        "compare",
        s(&dir.join("grey.png")),
        s(&data.join("misc/face_recognition/obama.jpg")),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("InvalidParameterException"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn missing_file_is_one_line_and_nonzero() {
    let out = kenning(&["detect", "/nonexistent/photo.jpg"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/photo.jpg"), "{stderr}");
}
