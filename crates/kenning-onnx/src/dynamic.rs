//! Makes a fixed-size exported image model (CenterFace) accept any batch
//! size and image size, by editing the protobuf at the wire level.
//!
//! Every field that is not touched is copied through byte for byte, so the
//! weights, nodes, metadata and any fields this crate does not know about
//! survive unchanged.

use std::collections::HashSet;

use crate::inspect::shape_dims;
use crate::model::{encode_shape, Dim};
use crate::wire::{ProtoWriter, WireReader};
use crate::OnnxError;

/// How to rewrite one dimension of a 4-D declared shape.
#[derive(Clone, Copy)]
enum Rule {
    /// Keep what the file declares (the channel axis).
    Keep,
    /// Replace with a symbolic dimension of this name.
    Param(&'static str),
}

const INPUT_RULES: [Rule; 4] = [
    Rule::Param("N"),
    Rule::Keep,
    Rule::Param("H"),
    Rule::Param("W"),
];
const OUTPUT_RULES: [Rule; 4] = [
    Rule::Param("N"),
    Rule::Keep,
    Rule::Param("h"),
    Rule::Param("w"),
];

/// Rewrites an NCHW image model so that its image input is `[N, C, H, W]`
/// and every 4-D output is `[N, C, h, w]`, with N/H/W/h/w symbolic.
///
/// For CenterFace (IR 4, exported with a fixed `[10, 3, 32, 32]` input) this
/// also has to:
/// - drop the initializers from `graph.input` (IR 4 lists all 194 of them
///   as inputs; a runtime may treat such inputs as overridable and refuse to
///   constant-fold them), leaving only `input.1`;
/// - clear `graph.value_info`, whose shapes were recorded for 32x32 and would
///   contradict the new sizes.
///
/// The graph inputs that are not initializers must all be 4-D; there must be
/// at least one.
pub fn make_dynamic_input(model: &[u8]) -> Result<Vec<u8>, OnnxError> {
    let mut out = ProtoWriter::new();
    let mut saw_graph = false;
    for f in WireReader::new(model) {
        let f = f?;
        if f.number == 7 {
            if saw_graph {
                return Err(OnnxError::Invalid("more than one ModelProto.graph".into()));
            }
            saw_graph = true;
            let graph = rewrite_graph(f.len_payload("ModelProto.graph")?)?;
            out.bytes(7, &graph);
        } else {
            out.raw(f.raw);
        }
    }
    if !saw_graph {
        return Err(OnnxError::MissingGraph);
    }
    Ok(out.into_bytes())
}

fn rewrite_graph(graph: &[u8]) -> Result<Vec<u8>, OnnxError> {
    // First pass: the names of the initializers (TensorProto.name = 8).
    let mut constants = HashSet::new();
    for f in WireReader::new(graph) {
        let f = f?;
        if f.number == 5 {
            for g in WireReader::new(f.len_payload("GraphProto.initializer")?) {
                let g = g?;
                if g.number == 8 {
                    constants.insert(g.string("TensorProto.name")?.to_owned());
                }
            }
        }
    }
    let mut out = ProtoWriter::new();
    let mut real_inputs = 0usize;
    for f in WireReader::new(graph) {
        let f = f?;
        match f.number {
            11 => {
                let bytes = f.len_payload("GraphProto.input")?;
                let name = value_info_name(bytes)?;
                if constants.contains(&name) {
                    continue;
                }
                real_inputs += 1;
                match rewrite_value_info(bytes, &INPUT_RULES)? {
                    Some(v) => out.bytes(11, &v),
                    None => {
                        return Err(OnnxError::Invalid(format!(
                            "graph input {name:?} is not a 4-D tensor"
                        )))
                    }
                }
            }
            12 => {
                let bytes = f.len_payload("GraphProto.output")?;
                match rewrite_value_info(bytes, &OUTPUT_RULES)? {
                    Some(v) => out.bytes(12, &v),
                    None => out.raw(f.raw),
                }
            }
            // value_info: recorded for the export size; dropped so the
            // runtime infers shapes afresh.
            13 => {}
            _ => out.raw(f.raw),
        }
    }
    if real_inputs == 0 {
        return Err(OnnxError::Invalid(
            "the graph has no input that is not an initializer".into(),
        ));
    }
    Ok(out.into_bytes())
}

fn value_info_name(bytes: &[u8]) -> Result<String, OnnxError> {
    for f in WireReader::new(bytes) {
        let f = f?;
        if f.number == 1 {
            return Ok(f.string("ValueInfoProto.name")?.to_owned());
        }
    }
    Ok(String::new())
}

/// Rewrites the shape inside a `ValueInfoProto`; `None` when it is not a
/// tensor with a declared 4-D shape.
fn rewrite_value_info(bytes: &[u8], rules: &[Rule; 4]) -> Result<Option<Vec<u8>>, OnnxError> {
    // ValueInfoProto.type (2) -> TypeProto.tensor_type (1) -> Tensor.shape (2).
    rewrite_nested(bytes, 2, |type_proto| {
        rewrite_nested(type_proto, 1, |tensor| {
            rewrite_nested(tensor, 2, |shape| rewrite_shape(shape, rules))
        })
    })
}

/// Replaces the (single) length-delimited field `number` of a message by
/// `f(payload)`, copying every other field. `None` if the field is absent
/// or `f` declines.
fn rewrite_nested(
    msg: &[u8],
    number: u32,
    f: impl Fn(&[u8]) -> Result<Option<Vec<u8>>, OnnxError>,
) -> Result<Option<Vec<u8>>, OnnxError> {
    let mut out = ProtoWriter::new();
    let mut done = false;
    for field in WireReader::new(msg) {
        let field = field?;
        if field.number == number && !done {
            match f(field.len_payload("nested message")?)? {
                Some(new) => out.bytes(number, &new),
                None => return Ok(None),
            }
            done = true;
        } else {
            out.raw(field.raw);
        }
    }
    Ok(done.then(|| out.into_bytes()))
}

fn rewrite_shape(shape: &[u8], rules: &[Rule; 4]) -> Result<Option<Vec<u8>>, OnnxError> {
    let dims = shape_dims(shape)?;
    if dims.len() != 4 {
        return Ok(None);
    }
    let new: Vec<Dim> = dims
        .into_iter()
        .zip(rules)
        .map(|(d, r)| match r {
            Rule::Keep => d,
            Rule::Param(p) => Dim::param(p),
        })
        .collect();
    let mut w = ProtoWriter::new();
    encode_shape(&mut w, &new);
    Ok(Some(w.into_bytes()))
}
