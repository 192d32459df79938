//! The `kenning` binary, run as a user would.

use std::path::Path;
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

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn detect_reports_each_file_and_survives_bad_ones() {
    let Some(data) = common::data("detect_reports_each_file_and_survives_bad_ones") else {
        return;
    };
    let dir = common::temp_dir("cli-detect");
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
    // Pinned to the dlib ResNet, whose numbers these are: it puts these two
    // photos of one man at distance 0.352, Similarity 84.7 by its fair
    // calibration (72.8 by the global table), above Rekognition's default
    // threshold of 80; Biden is at 43.8.
    let manifest = common::dlib_manifest();
    let compare = |threshold: Option<&str>, target: &str| {
        let mut args = vec!["--manifest", s(&manifest), "compare"];
        if let Some(t) = threshold {
            args.extend(["--threshold", t]);
        }
        let (source, target) = (fr.join("obama.jpg"), fr.join(target));
        let out = kenning(&[&args[..], &[s(&source), s(&target)]].concat());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        json_lines(&out).remove(0)
    };
    let r = compare(None, "obama2.jpg");
    let matches = r["FaceMatches"].as_array().unwrap();
    assert_eq!(matches.len(), 1, "{r}");
    let same = matches[0]["Similarity"].as_f64().unwrap();
    assert!((same - 84.7).abs() < 1.0, "{r}");
    assert!(
        r["SourceImageFace"]["BoundingBox"]["Width"]
            .as_f64()
            .unwrap()
            > 0.1
    );

    // At threshold 0 every face is a match, so Biden's Similarity shows.
    let r = compare(Some("0"), "biden.jpg");
    let matches = r["FaceMatches"].as_array().unwrap();
    assert_eq!(matches.len(), 1, "{r}");
    let other = matches[0]["Similarity"].as_f64().unwrap();
    assert!((other - 43.8).abs() < 1.0, "{r}");
    let r = compare(None, "biden.jpg");
    assert_eq!(r["FaceMatches"].as_array().unwrap().len(), 0, "{r}");
    assert_eq!(r["UnmatchedFaces"].as_array().unwrap().len(), 1, "{r}");
}

#[test]
fn compare_without_a_source_face_is_an_invalid_parameter() {
    let Some(data) = common::data("compare_without_a_source_face_is_an_invalid_parameter") else {
        return;
    };
    let dir = common::temp_dir("cli-noface");
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
}

#[test]
fn missing_file_is_one_line_and_nonzero() {
    let out = kenning(&["detect", "/nonexistent/photo.jpg"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/photo.jpg"), "{stderr}");
}

/// The Similarity of the first match in a `kenning compare` line.
fn similarity(out: &Output) -> f64 {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_lines(out)[0]["FaceMatches"][0]["Similarity"]
        .as_f64()
        .unwrap()
}

/// `kenning models export` writes the ONNX files Kenning runs: CenterFace
/// with symbolic sizes, and the ResNet, which run through a manifest gives
/// the built-in recogniser's embeddings bit for bit.
#[test]
fn models_export_writes_the_models_kenning_runs() {
    let dir = common::temp_dir("cli-export");
    let out = kenning(&["models", "export", "--out", s(&dir)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "centerface_dynamic.onnx",
            "dlib_resnet_v1.onnx",
            "sface_2021dec.onnx"
        ]
    );
    // SFace as Kenning runs it: weights dequantized, so no DequantizeLinear
    // is left (sface.rs checks its embeddings against the shipped file).
    let sface = std::fs::read(dir.join("sface_2021dec.onnx")).unwrap();
    kenning_onnx::inspect(&sface).unwrap();
    assert!(!String::from_utf8_lossy(&sface).contains("DequantizeLinear"));

    let centerface = std::fs::read(dir.join("centerface_dynamic.onnx")).unwrap();
    let original = std::fs::read(common::models().join("centerface.onnx")).unwrap();
    assert!(centerface == kenning_onnx::make_dynamic_input(&original).unwrap());
    let m = kenning_onnx::inspect(&centerface).unwrap();
    use kenning_onnx::Dim;
    assert_eq!(
        m.inputs[0].dims.clone().unwrap(),
        [
            Dim::param("N"),
            Dim::Fixed(3),
            Dim::param("H"),
            Dim::param("W")
        ]
    );

    // The dlib manifest with the exported file as its model.
    let mut manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(common::dlib_manifest()).unwrap()).unwrap();
    manifest["model"] = serde_json::json!({
        "format": "onnx",
        "file": dir.join("dlib_resnet_v1.onnx"),
    });
    for key in ["calibration", "fair_calibration", "similarity_calibration"] {
        manifest.as_object_mut().unwrap().remove(key);
    }
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
    let mut config = kenning_models::PipelineConfig::new(common::models());
    config.recogniser =
        Some(kenning_models::LoadedManifest::from_file(&dir.join("manifest.json")).unwrap());
    config.sessions = 1;
    let exported = kenning_models::Pipeline::load(config).unwrap();
    let image = kenning_image::RgbImage::from_fn(300, 300, |x, y| {
        image::Rgb([
            (x * 7 % 256) as u8,
            (y * 5 % 256) as u8,
            ((x + y) % 256) as u8,
        ])
    });
    let rect = kenning_dlib::DlibRect {
        left: 40,
        top: 50,
        right: 250,
        bottom: 260,
    };
    let (_, built_in) = common::dlib_pipeline()
        .embed_dlib_rect(&image, rect)
        .unwrap();
    let (_, from_file) = exported.embed_dlib_rect(&image, rect).unwrap();
    assert_eq!(built_in.len(), 128);
    assert!(
        built_in
            .iter()
            .zip(&from_file)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "the exported ResNet gives other embeddings"
    );
}

/// KENNING_CALIBRATION=global makes Similarity the distance table's; the
/// dlib recogniser's own choice (and =fair) is its fair calibration.
#[test]
fn kenning_calibration_selects_the_table_similarity_comes_from() {
    let Some(data) =
        common::data("cli::kenning_calibration_selects_the_table_similarity_comes_from")
    else {
        return;
    };
    let fr = data.join("misc/face_recognition");
    let (a, b) = (fr.join("obama.jpg"), fr.join("obama2.jpg"));
    let manifest = common::dlib_manifest();
    let compare = |calibration: Option<&str>| {
        let mut cmd = Command::new(common::kenning_bin());
        cmd.args(["--manifest", s(&manifest), "compare", "--threshold", "0"])
            .args([s(&a), s(&b)])
            .env("KENNING_MODELS", common::models())
            .env_remove("KENNING_CALIBRATION");
        if let Some(c) = calibration {
            cmd.env("KENNING_CALIBRATION", c);
        }
        cmd.output().unwrap()
    };
    let (default, fair, global) = (
        similarity(&compare(None)),
        similarity(&compare(Some("fair"))),
        similarity(&compare(Some("global"))),
    );
    // What each calibration says of these two faces' embeddings.
    let p = common::dlib_pipeline();
    let embed = |path: &Path| {
        p.analyze(&common::load(path), true).unwrap()[0]
            .embedding
            .clone()
            .unwrap()
    };
    let (ea, eb) = (embed(&a), embed(&b));
    let d = p.recognizer().distance(&ea, &eb);
    let by_table = p.recognizer().calibration().unwrap().similarity(d);
    let by_fair = p
        .recognizer()
        .similarity_calibration()
        .unwrap()
        .similarity(&ea, &eb, d);
    eprintln!("obama/obama2: distance {d:.4}, fair {fair:.2}, global {global:.2}");
    assert!((global - by_table).abs() < 1e-3, "{global} vs {by_table}");
    assert!((fair - by_fair).abs() < 1e-3, "{fair} vs {by_fair}");
    assert_eq!(default, fair, "the manifest chooses fair");
    assert!(
        (fair - global).abs() > 0.1,
        "the two calibrations agree here"
    );
    let out = compare(Some("neither"));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("neither") && stderr.lines().count() == 1,
        "{stderr}"
    );
}

/// --working-size is the detector's working resolution: at 160 the smaller
/// faces of a group photo are lost (3 of 7 found), and what is found is
/// found at the default too.
#[test]
fn working_size_sets_the_detectors_resolution() {
    let Some(data) = common::data("cli::working_size_sets_the_detectors_resolution") else {
        return;
    };
    let photo = data.join("detection/dlib/images/2008_002079.jpg");
    let boxes = |extra: &[&str]| -> Vec<[f64; 4]> {
        let mut args = extra.to_vec();
        args.extend(["detect", s(&photo)]);
        let out = kenning(&args);
        assert!(out.status.success());
        json_lines(&out)[0]["FaceDetails"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let b = &f["BoundingBox"];
                ["Left", "Top", "Width", "Height"].map(|k| b[k].as_f64().unwrap())
            })
            .collect()
    };
    let iou = |a: &[f64; 4], b: &[f64; 4]| {
        let w = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
        let h = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
        let inter = w.max(0.0) * h.max(0.0);
        inter / (a[2] * a[3] + b[2] * b[3] - inter)
    };
    let (full, small) = (boxes(&[]), boxes(&["--working-size", "160"]));
    assert_eq!((full.len(), small.len()), (7, 3));
    for b in &small {
        assert!(
            full.iter().any(|f| iou(b, f) > 0.5),
            "{b:?} found only at 160"
        );
    }
}
