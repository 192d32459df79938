//! The small-face rule (issue 16, goal 4; kenning_core::quality): a search
//! scores each pair with both faces' sizes exactly as the rule says, faces
//! stored without a size score as before, and on real downscaled photos the
//! rule brings pairs of two small faces back toward the promise.

use std::path::Path;

use kenning_collections::Collections;
use kenning_image::resize_bilinear;
use kenning_models::Pipeline;
use kenning_store::{FaceModel, NewFace};

use crate::common;

fn embed_largest(p: &Pipeline, path: &Path) -> Vec<f32> {
    let img = common::load(path);
    let mut faces = p.analyze(&img, true).unwrap();
    faces.truncate(1);
    faces.pop().unwrap().embedding.unwrap()
}

#[test]
fn a_search_scores_a_small_gallery_face_as_the_rule_says() {
    let Some(data) = common::data("a_search_scores_a_small_gallery_face_as_the_rule_says") else {
        return;
    };
    let p = common::sface();
    let rule = p
        .recognizer()
        .quality_bands()
        .expect("SFace ships quality bands");
    let calibration = p.recognizer().similarity_calibration().unwrap();
    let examples = data.join("misc/face_recognition");
    let (probe, other) = (
        embed_largest(p, &examples.join("obama.jpg")),
        embed_largest(p, &examples.join("biden.jpg")),
    );
    let dir = common::temp_dir("small-faces-search");
    let c = Collections::open(&dir, p.clone()).unwrap();
    c.create_collection("sizes", "{}").unwrap();
    let m = p.recognizer().manifest();
    let model = FaceModel {
        name: m.name.clone(),
        version: m.version.clone(),
    };
    // One probe face of 20 px, and the same other face stored three times:
    // as a 20 px face, a 170 px face and a face indexed before sizes were
    // stored. Same embedding, so the same distance: only the rule differs.
    let face = |e: &[f32], pixels: Option<f32>, label: &str| NewFace {
        image_id: kenning_store::Uuid::new_v4(),
        external_image_id: Some(label.into()),
        bounding_box: Default::default(),
        confidence: 99.0,
        embedding: e.to_vec(),
        indexed_at_ms: None,
        pixels,
    };
    let stored = c
        .store()
        .add_faces(
            "sizes",
            &model,
            vec![
                face(&probe, Some(20.0), "probe"),
                face(&other, Some(20.0), "small"),
                face(&other, Some(170.0), "large"),
                face(&other, None, "unknown"),
            ],
        )
        .unwrap();
    assert_eq!(stored[1].pixels, Some(20.0));
    let r = c
        .search_faces("sizes", &stored[0].face_id.to_string(), Some(0.0), Some(10))
        .unwrap();
    let got = |label: &str| {
        let m = r
            .face_matches
            .iter()
            .find(|m| m.face.external_image_id.as_deref() == Some(label))
            .unwrap_or_else(|| panic!("{label} not returned: {:?}", r.face_matches));
        f64::from(m.similarity)
    };
    let d = p.recognizer().distance(&probe, &other);
    let without = calibration.similarity(&probe, &other, d);
    let with = |pixels| {
        calibration.similarity_of_faces(&probe, &other, d, Some(rule), [Some(20.0), pixels])
    };
    // The estimate names the rule, as the search's audit record does, on
    // the wire as QualityRule; so does DescribeCollection's.
    assert_eq!(
        r.false_match_estimate.quality_rule.as_deref(),
        Some(rule.label().as_str())
    );
    assert_eq!(
        c.quality_rule_for("sizes").unwrap(),
        r.false_match_estimate.quality_rule
    );
    let wire = serde_json::to_value(&r).unwrap();
    assert_eq!(
        wire["FalseMatchEstimate"]["QualityRule"],
        "sface-2021dec small-face rule (bands at 30, 60 px)"
    );
    let described = c.describe_collection("sizes").unwrap();
    assert_eq!(
        described.false_match_estimate.quality_rule,
        r.false_match_estimate.quality_rule
    );
    assert!((got("small") - with(Some(20.0))).abs() < 0.01);
    assert!((got("large") - with(Some(170.0))).abs() < 0.01);
    // Without a size: exactly as before the rule.
    assert!((got("unknown") - without).abs() < 0.01);
    // Two small faces of different people: the rule takes Similarity down
    // by what the 20 x 20 px cell's map says at this pair's score.
    let l = calibration.log_fmr(&probe, &other, d);
    let cell = rule.cell(Some(20.0), Some(20.0)).unwrap();
    let by_hand = (40.0 - 10.0 * cell.map(l).min(0.0).max(l)).clamp(0.0, 100.0);
    assert!(
        (got("small") - by_hand).abs() < 0.01,
        "{} vs {by_hand}",
        got("small")
    );
    assert!(
        got("small") < got("large") - 0.5 && got("small") < without - 0.5,
        "small {} large {} without {without}",
        got("small"),
        got("large")
    );
}

#[test]
fn downscaled_pairs_keep_the_promise_within_3x_with_the_rule() {
    let Some(data) = common::data("downscaled_pairs_keep_the_promise_within_3x_with_the_rule")
    else {
        return;
    };
    let p = common::sface();
    let rule = p.recognizer().quality_bands().unwrap();
    let calibration = p.recognizer().similarity_calibration().unwrap();
    let listed: Vec<String> = std::fs::read_to_string(
        common::root().join("recognisers/sface-2021dec/utkface-held-out.txt"),
    )
    .unwrap()
    .lines()
    .filter(|l| !l.is_empty() && !l.starts_with('#'))
    .step_by(4)
    .map(str::to_owned)
    .collect();
    // Each held-out photo (200 px chips: faces of ~170 px) at 25 px: faces
    // of ~20 px, the smallest band. One photo per person, so every pair is
    // an impostor pair.
    use rayon::prelude::*;
    let small: Vec<(Vec<f32>, f32)> = listed
        .par_iter()
        .filter_map(|f| {
            let img = common::load(&data.join("demographics").join(f));
            let img = resize_bilinear(&img, img.width() / 8, img.height() / 8);
            let mut faces = p.detect(&img).ok()?;
            faces.truncate(1);
            p.embed_faces(&img, &mut faces).ok()?;
            let face = faces.pop()?;
            Some((face.embedding.clone()?, face.pixels()))
        })
        .collect();
    assert!(small.len() > 500, "{} small faces found", small.len());
    let (mut pairs, mut before, mut after) = (0u64, 0u64, 0u64);
    let threshold = 70.0;
    for i in 0..small.len() {
        for j in i + 1..small.len() {
            let (a, b) = (&small[i], &small[j]);
            let d = p.recognizer().distance(&a.0, &b.0);
            pairs += 1;
            before += u64::from(calibration.similarity(&a.0, &b.0, d) >= threshold);
            let s =
                calibration.similarity_of_faces(&a.0, &b.0, d, Some(rule), [Some(a.1), Some(b.1)]);
            after += u64::from(s >= threshold);
        }
    }
    let promised = 1e-3 * pairs as f64;
    eprintln!("small x small at Similarity {threshold}: {before} -> {after} false matches of {pairs} pairs, {promised:.0} promised");
    assert!(after <= before);
    assert!(
        (after as f64) <= 3.0 * promised && (after as f64) >= promised / 3.0,
        "{after} false matches against {promised:.0} promised"
    );
}

/// `kenning eval verify` on two photos of ~25 px faces scores their pair
/// exactly as CompareFaces does (the default calibration, then the rule
/// with both faces' sizes): its FNMR flips from 0 to 1 across the
/// Similarity CompareFaces returns. Without the rule the pair scores
/// higher, by more than the margin.
#[test]
fn eval_scores_a_small_pair_as_compare_faces_does() {
    let Some(data) = common::data("eval_scores_a_small_pair_as_compare_faces_does") else {
        return;
    };
    let p = common::sface();
    let dir = common::temp_dir("small-faces-eval");
    // Each photo downscaled so its face is about 25 px (the smallest band).
    let mut small = Vec::new();
    for name in ["obama.jpg", "biden.jpg"] {
        let img = common::load(&data.join("misc/face_recognition").join(name));
        let mut faces = p.detect(&img).unwrap();
        faces.truncate(1);
        let scale = 25.0 / f64::from(faces[0].pixels());
        let (w, h) = (
            (f64::from(img.width()) * scale).round() as u32,
            (f64::from(img.height()) * scale).round() as u32,
        );
        let img = resize_bilinear(&img, w, h);
        let file = name.replace(".jpg", ".png");
        img.save(dir.join(&file)).unwrap();
        small.push((file, img));
    }
    let cf = kenning_models::compare::compare_faces(p, &small[0].1, &small[1].1, 0.0, 1).unwrap();
    let s = f64::from(cf.face_matches[0].similarity);
    let (a, b) = (&small[0].0, &small[1].0);
    std::fs::write(
        dir.join("identities.csv"),
        format!("file,identity\n{a},a\n{b},b\n"),
    )
    .unwrap();
    // The same pair once as genuine (FNMR) and once as impostor (FMR).
    std::fs::write(
        dir.join("pairs.csv"),
        format!("file_a,file_b,same\n{a},{b},1\n{a},{b},0\n"),
    )
    .unwrap();
    let levels = format!("{},{}", s - 0.05, s + 0.05);
    let eval = |extra: &[&str]| {
        let out = std::process::Command::new(common::kenning_bin())
            .args(["--models", common::models().to_str().unwrap()])
            .args(["--recogniser", "sface-2021dec", "eval", "verify"])
            .arg(&*dir)
            .args(["--similarity", &levels])
            .args(extra)
            .env_remove("KENNING_CALIBRATION")
            .output()
            .unwrap();
        common::stdout_json(&out)
    };
    let fnmr = |v: &serde_json::Value| -> Vec<f64> {
        v["similarity"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["fnmr"].as_f64().unwrap())
            .collect()
    };
    let with = eval(&[]);
    assert_eq!(fnmr(&with), [0.0, 1.0], "CompareFaces: {s}; {with}");
    let scoring = with["scoring"].as_str().unwrap();
    assert!(
        scoring.contains("the default calibration of sface-2021dec")
            && scoring.contains("small-face rule (bands at 30, 60 px) (it changed 2 of 2 pairs)"),
        "{scoring}"
    );
    assert_eq!(
        with["similarity_by_face_size"][0]["cell"], "<30 x <30 px",
        "{with}"
    );
    let without = eval(&["--no-small-face-rule"]);
    assert_eq!(fnmr(&without), [0.0, 0.0], "CompareFaces: {s}; {without}");
    assert!(without["scoring"]
        .as_str()
        .unwrap()
        .contains("not applied (--no-small-face-rule)"));
}
