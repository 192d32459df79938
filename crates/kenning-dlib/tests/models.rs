//! Tests on the real model files (KENNING_MODELS or <workspace>/models, set
//! up by scripts/setup-models.sh): skipped with a line when they are not
//! installed, a failure under CI (kenning-testdata).

use kenning_dlib::{resnet, ShapePredictor};

/// The bytes of model file `name` for `test`, or None once the skip is
/// recorded (a failure under CI).
fn model(test: &str, name: &str) -> Option<Vec<u8>> {
    let path = kenning_testdata::model(test, name)?;
    Some(std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

#[test]
fn shape_predictor_parses_to_15_cascades_of_500_trees() {
    let Some(bytes) = model(
        "models::shape_predictor_parses_to_15_cascades_of_500_trees",
        "shape_predictor_5_face_landmarks.dat",
    ) else {
        return;
    };
    let sp = ShapePredictor::from_bytes(&bytes).unwrap();
    assert_eq!(sp.num_cascades(), 15);
    assert!(sp.trees_per_cascade().iter().all(|&n| n == 500));
    assert!(sp.features_per_cascade().iter().all(|&n| n == 800));
    // Any truncation of the real file is an error, never a panic.
    for cut in [1, 100, 4096, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            ShapePredictor::from_bytes(&bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(ShapePredictor::from_bytes(&extra).is_err());
}

#[test]
fn resnet_parses_and_converts_to_a_decodable_onnx_model() {
    let Some(bytes) = model(
        "models::resnet_parses_and_converts_to_a_decodable_onnx_model",
        "dlib_face_recognition_resnet_model_v1.dat",
    ) else {
        return;
    };
    let net = resnet::parse(&bytes).unwrap();
    assert_eq!(net.input.means, [122.782, 117.001, 104.298]);
    assert_eq!((net.input.rows, net.input.cols), (150, 150));
    assert!((net.loss_threshold - 0.6).abs() < 1e-6);
    let params: usize = net
        .layers
        .iter()
        .map(|l| match l {
            resnet::Layer::Conv { weights, bias, .. } => weights.len() + bias.len(),
            resnet::Layer::Affine { gamma, beta } => gamma.len() + beta.len(),
            resnet::Layer::Fc { weights, .. } => weights.len(),
            _ => 0,
        })
        .sum();
    assert_eq!(params, 5_614_592);

    let onnx = resnet::to_onnx(&bytes).unwrap();
    assert_eq!(onnx.chip_size, 150);
    assert_eq!(onnx.means, [122.782, 117.001, 104.298]);
    let m = kenning_onnx::inspect(&onnx.model).unwrap();
    assert_eq!(m.opsets, vec![(String::new(), 13)]);
    assert_eq!(m.inputs.len(), 1);
    assert_eq!(m.inputs[0].name, resnet::INPUT_NAME);
    let dims = m.inputs[0].dims.clone().unwrap();
    assert_eq!(
        dims,
        vec![
            kenning_onnx::Dim::param("N"),
            kenning_onnx::Dim::Fixed(3),
            kenning_onnx::Dim::Fixed(150),
            kenning_onnx::Dim::Fixed(150)
        ]
    );
    assert_eq!(m.outputs[0].name, resnet::OUTPUT_NAME);
    assert_eq!(
        m.outputs[0].dims.clone().unwrap()[1],
        kenning_onnx::Dim::Fixed(128)
    );
    let count = |op: &str| m.nodes.iter().filter(|n| n.op_type == op).count();
    // Affines are folded into the convs; pads: 3 channel-only, 1 channel + 1 spatial (3x3 into 4x4), 1 spatial (1x1 into 2x2).
    assert_eq!(
        (count("Conv"), count("Relu"), count("Add"), count("Pad")),
        (29, 29, 14, 5)
    );
    assert_eq!(
        (
            count("MaxPool"),
            count("AveragePool"),
            count("GlobalAveragePool"),
            count("MatMul")
        ),
        (1, 4, 1, 1)
    );
    // Truncated files fail cleanly.
    for cut in [0, 10, 300, bytes.len() / 3, bytes.len() - 1] {
        assert!(resnet::to_onnx(&bytes[..cut]).is_err(), "cut at {cut}");
    }
}
