//! Recognisers plug in through manifests: the default dlib ResNet and a
//! second, ArcFace-style ONNX model (test-only) both separate the people of
//! the deepface identity set.

use kenning_models::{LoadedManifest, Pipeline, PipelineConfig};

use crate::common;

/// Fraction of (genuine, impostor) pairs ranked correctly: the ROC AUC.
fn separation(pipeline: &Pipeline, test: &str) -> Option<f64> {
    let data = common::data(test)?;
    let dir = data.join("identity/deepface");
    let text = std::fs::read_to_string(dir.join("identities.csv")).unwrap();
    let mut people: Vec<(String, Vec<f32>)> = Vec::new();
    for line in text.lines().skip(1) {
        let (file, id) = line.split_once(',').unwrap();
        let faces = pipeline
            .analyze(&common::load(&dir.join(file)), true)
            .unwrap();
        if let Some(e) = faces.into_iter().next().and_then(|f| f.embedding) {
            people.push((id.trim().to_owned(), e));
        }
    }
    assert!(
        people.len() >= 55,
        "faces found in only {} of 61 photos",
        people.len()
    );
    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    for (i, (a, ea)) in people.iter().enumerate() {
        for (b, eb) in &people[i + 1..] {
            let d = pipeline.recognizer().distance(ea, eb);
            if a == b {
                genuine.push(d)
            } else {
                impostor.push(d)
            }
        }
    }
    let correct: usize = genuine
        .iter()
        .map(|g| impostor.iter().filter(|&&i| i > *g).count())
        .sum();
    Some(correct as f64 / (genuine.len() * impostor.len()) as f64)
}

#[test]
fn default_recogniser_separates_people() {
    let Some(auc) = separation(common::pipeline(), "default_recogniser_separates_people") else {
        return;
    };
    eprintln!("dlib-resnet-v1 AUC on deepface identities: {auc:.4}");
    assert!(auc > 0.97, "AUC {auc}");
}

#[test]
fn a_second_onnx_recogniser_plugs_in_through_a_manifest() {
    let manifest_path =
        common::root().join("crates/kenning-cli/tests/manifests/faceplugin-fr.json");
    let manifest = LoadedManifest::from_file(&manifest_path).unwrap();
    assert_eq!(manifest.manifest.embedding.size, 512);
    let mut config = PipelineConfig::new(common::models());
    config.recogniser = Some(manifest);
    config.sessions = 1;
    let pipeline =
        Pipeline::load(config).unwrap_or_else(|e| panic!("{e}; run scripts/setup-test-models.sh"));
    let Some(auc) = separation(
        &pipeline,
        "a_second_onnx_recogniser_plugs_in_through_a_manifest",
    ) else {
        return;
    };
    eprintln!("faceplugin fr_feature AUC on deepface identities: {auc:.4}");
    assert!(auc > 0.9, "AUC {auc}");
}
