//! `kenning-onnx cpu-form IN OUT`: writes the form of an ONNX model Kenning
//! runs on a CPU ([`kenning_onnx::cpu_form`]), so scripts/setup-models.sh
//! converts SFace once instead of at every load.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [cmd, input, output] = args.as_slice() else {
        eprintln!("usage: kenning-onnx cpu-form IN.onnx OUT.onnx");
        return ExitCode::from(2);
    };
    if cmd != "cpu-form" {
        eprintln!("kenning-onnx: unknown command {cmd} (known: cpu-form)");
        return ExitCode::from(2);
    }
    let result = std::fs::read(input)
        .map_err(|e| format!("reading {input}: {e}"))
        .and_then(|bytes| kenning_onnx::cpu_form(&bytes).map_err(|e| format!("{input}: {e}")))
        .and_then(|(model, report)| {
            std::fs::write(output, model).map_err(|e| format!("writing {output}: {e}"))?;
            Ok(report)
        });
    match result {
        Ok(r) => {
            eprintln!(
                "kenning-onnx: wrote {output} ({} DequantizeLinear folded, {} PRelu rewritten, {} Gemm to int8, {} inputs dropped)",
                r.dequantized, r.prelu, r.gemm_int8, r.inputs_dropped
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kenning-onnx: {e}");
            ExitCode::FAILURE
        }
    }
}
