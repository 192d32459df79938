//! fold_for_cpu on the real block-quantized SFace model (installed by
//! scripts/setup-models.sh; skipped with a message when it is absent, a
//! failure under CI).

use std::path::PathBuf;

use kenning_onnx::{cpu_form, fold_for_cpu, inspect, is_cpu_form_of, metadata, FoldReport};

fn sface() -> Option<Vec<u8>> {
    model_file("face_recognition_sface_2021dec_int8bq.onnx")
}

fn model_file(name: &str) -> Option<Vec<u8>> {
    let dir = std::env::var_os("KENNING_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models"));
    let path = dir.join(name);
    match std::fs::read(&path) {
        Ok(b) => Some(b),
        Err(_) if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{} not found under CI", path.display())
        }
        Err(_) => {
            eprintln!("skipping: {} not found", path.display());
            None
        }
    }
}

#[test]
fn sface_weights_are_dequantized_and_only_data_stays_an_input() {
    let Some(raw) = sface() else { return };
    let before = inspect(&raw).unwrap();
    assert_eq!(before.inputs.len(), 175);
    let count = |s: &kenning_onnx::ModelSummary, op: &str| {
        s.nodes.iter().filter(|n| n.op_type == op).count()
    };
    assert_eq!(count(&before, "DequantizeLinear"), 29);
    assert_eq!(count(&before, "PRelu"), 27);
    let (folded, report) = fold_for_cpu(&raw).unwrap();
    assert_eq!(
        report,
        FoldReport {
            dequantized: 29,
            prelu: 27,
            inputs_dropped: 174,
            initializers_dropped: 89,
            gemm_int8: 1,
        }
    );
    let after = inspect(&folded).unwrap();
    assert_eq!(count(&after, "DequantizeLinear"), 0);
    assert_eq!(count(&after, "PRelu"), 0);
    assert_eq!(count(&after, "Conv"), 27);
    assert_eq!(count(&after, "Relu"), 27);
    // The last layer (50176 x 128) runs on int8 weights.
    assert_eq!(count(&after, "Gemm"), 0);
    assert_eq!(count(&after, "MatMulInteger"), 1);
    let inputs: Vec<&str> = after.inputs.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(inputs, ["data"]);
    assert_eq!(after.outputs, before.outputs);
    assert_eq!(after.opsets, before.opsets);
    // Every weight is now fp32 (data type 1), a shape (int64, 7) or the
    // last layer's int8 weights (3).
    assert!(after
        .initializers
        .iter()
        .all(|t| t.data_type == 1 || t.data_type == 7 || t.data_type == 3));
    // Folding is idempotent.
    let (again, second) = fold_for_cpu(&folded).unwrap();
    assert_eq!(second, FoldReport::default());
    assert_eq!(inspect(&again).unwrap().nodes, after.nodes);
}

/// The file scripts/setup-models.sh converts once (what Kenning loads) is
/// exactly this converter's output for the shipped file, marked as such.
#[test]
fn the_cpu_form_written_at_setup_is_the_converters_output() {
    let Some(raw) = sface() else { return };
    let Some(setup) = model_file("face_recognition_sface_2021dec_int8bq.cpu.onnx") else {
        return;
    };
    let (converted, report) = cpu_form(&raw).unwrap();
    assert_eq!(report.dequantized, 29);
    assert!(
        setup == converted,
        "the CPU form in the models folder is stale: run scripts/setup-models.sh"
    );
    assert!(is_cpu_form_of(&setup, raw.len() as u64).unwrap());
    assert!(!is_cpu_form_of(&setup, raw.len() as u64 + 1).unwrap());
    assert!(!is_cpu_form_of(&raw, raw.len() as u64).unwrap());
    // The same graph as the in-memory conversion; only the metadata differs.
    assert_eq!(
        inspect(&setup).unwrap(),
        inspect(&fold_for_cpu(&raw).unwrap().0).unwrap()
    );
    assert_eq!(
        metadata(&setup).unwrap().len(),
        metadata(&raw).unwrap().len() + 2
    );
}
