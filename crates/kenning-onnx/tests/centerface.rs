//! make_dynamic_input on the real CenterFace model (skipped with a line when
//! the models are not installed, a failure under CI: kenning-testdata).

use kenning_onnx::{inspect, make_dynamic_input, Dim};

#[test]
fn centerface_becomes_dynamic_and_keeps_its_graph() {
    let test = "centerface::centerface_becomes_dynamic_and_keeps_its_graph";
    let Some(path) = kenning_testdata::model(test, "centerface.onnx") else {
        return;
    };
    let raw = std::fs::read(&path).unwrap();
    let before = inspect(&raw).unwrap();
    assert_eq!(before.inputs.len(), 195);
    let patched = make_dynamic_input(&raw).unwrap();
    let after = inspect(&patched).unwrap();
    assert_eq!(after.nodes, before.nodes);
    assert_eq!(after.initializers, before.initializers);
    assert_eq!(after.ir_version, before.ir_version);
    assert_eq!(after.opsets, before.opsets);
    assert_eq!(after.value_info_count, 0);
    assert_eq!(after.inputs.len(), 1);
    assert_eq!(after.inputs[0].name, "input.1");
    assert_eq!(
        after.inputs[0].dims.clone().unwrap(),
        vec![
            Dim::param("N"),
            Dim::Fixed(3),
            Dim::param("H"),
            Dim::param("W")
        ]
    );
    let outs: Vec<(String, Vec<Dim>)> = after
        .outputs
        .iter()
        .map(|o| (o.name.clone(), o.dims.clone().unwrap()))
        .collect();
    let expect = |name: &str, c| {
        (
            name.to_owned(),
            vec![
                Dim::param("N"),
                Dim::Fixed(c),
                Dim::param("h"),
                Dim::param("w"),
            ],
        )
    };
    assert_eq!(
        outs,
        vec![
            expect("537", 1),
            expect("538", 2),
            expect("539", 2),
            expect("540", 10)
        ]
    );
    // Idempotent, and malformed bytes are errors.
    assert_eq!(make_dynamic_input(&patched).unwrap(), patched);
    for cut in [1, 1000, raw.len() / 2, raw.len() - 1] {
        assert!(make_dynamic_input(&raw[..cut]).is_err(), "cut at {cut}");
    }
    assert!(make_dynamic_input(b"not a model").is_err());
}
