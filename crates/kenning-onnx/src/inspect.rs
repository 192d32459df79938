//! Reads back the parts of an ONNX model that Kenning cares about (graph
//! inputs/outputs with their shapes, nodes, initializer names), for tests and
//! diagnostics. Everything else in the protobuf is skipped.

use crate::model::Dim;
use crate::wire::{decode_packed_varints, WireReader, WireValue};
use crate::OnnxError;

/// A decoded graph input, output or value_info entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfoSummary {
    /// Tensor name.
    pub name: String,
    /// `TensorProto.DataType` of the elements (0 when absent).
    pub elem_type: i64,
    /// Declared dimensions; `None` when the shape is absent. A dimension
    /// with neither a value nor a parameter reads as `Dim::Param("")`.
    pub dims: Option<Vec<Dim>>,
}

/// A decoded node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSummary {
    /// Operator type.
    pub op_type: String,
    /// Node name.
    pub name: String,
    /// Input tensor names.
    pub inputs: Vec<String>,
    /// Output tensor names.
    pub outputs: Vec<String>,
}

/// A decoded initializer (values not decoded).
#[derive(Debug, Clone, PartialEq)]
pub struct InitializerSummary {
    /// Tensor name.
    pub name: String,
    /// Shape.
    pub dims: Vec<i64>,
    /// Element type.
    pub data_type: i64,
}

/// The decoded summary of a model.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelSummary {
    /// IR version.
    pub ir_version: i64,
    /// (domain, version) operator set imports.
    pub opsets: Vec<(String, i64)>,
    /// Producer name.
    pub producer_name: String,
    /// Graph nodes in file order.
    pub nodes: Vec<NodeSummary>,
    /// Initializers.
    pub initializers: Vec<InitializerSummary>,
    /// Graph inputs.
    pub inputs: Vec<ValueInfoSummary>,
    /// Graph outputs.
    pub outputs: Vec<ValueInfoSummary>,
    /// Number of `graph.value_info` entries.
    pub value_info_count: usize,
}

/// Decodes the summary of an ONNX model; malformed bytes give an error.
pub fn inspect(model: &[u8]) -> Result<ModelSummary, OnnxError> {
    let mut out = ModelSummary::default();
    let mut saw_graph = false;
    for f in WireReader::new(model) {
        let f = f?;
        match f.number {
            1 => out.ir_version = f.varint("ModelProto.ir_version")? as i64,
            2 => out.producer_name = f.string("ModelProto.producer_name")?.to_owned(),
            8 => {
                let mut domain = String::new();
                let mut version = 0;
                for g in WireReader::new(f.len_payload("ModelProto.opset_import")?) {
                    let g = g?;
                    match g.number {
                        1 => domain = g.string("OperatorSetIdProto.domain")?.to_owned(),
                        2 => version = g.varint("OperatorSetIdProto.version")? as i64,
                        _ => {}
                    }
                }
                out.opsets.push((domain, version));
            }
            7 => {
                saw_graph = true;
                inspect_graph(f.len_payload("ModelProto.graph")?, &mut out)?;
            }
            _ => {}
        }
    }
    if !saw_graph {
        return Err(OnnxError::MissingGraph);
    }
    Ok(out)
}

fn inspect_graph(graph: &[u8], out: &mut ModelSummary) -> Result<(), OnnxError> {
    for f in WireReader::new(graph) {
        let f = f?;
        match f.number {
            1 => {
                let mut node = NodeSummary {
                    op_type: String::new(),
                    name: String::new(),
                    inputs: vec![],
                    outputs: vec![],
                };
                for g in WireReader::new(f.len_payload("GraphProto.node")?) {
                    let g = g?;
                    match g.number {
                        1 => node.inputs.push(g.string("NodeProto.input")?.to_owned()),
                        2 => node.outputs.push(g.string("NodeProto.output")?.to_owned()),
                        3 => node.name = g.string("NodeProto.name")?.to_owned(),
                        4 => node.op_type = g.string("NodeProto.op_type")?.to_owned(),
                        _ => {}
                    }
                }
                out.nodes.push(node);
            }
            5 => {
                let mut t = InitializerSummary {
                    name: String::new(),
                    dims: vec![],
                    data_type: 0,
                };
                for g in WireReader::new(f.len_payload("GraphProto.initializer")?) {
                    let g = g?;
                    match (g.number, g.value) {
                        (1, WireValue::Len(p)) => t.dims.extend(decode_packed_varints(p)?),
                        (1, WireValue::Varint(v)) => t.dims.push(v as i64),
                        (2, _) => t.data_type = g.varint("TensorProto.data_type")? as i64,
                        (8, _) => t.name = g.string("TensorProto.name")?.to_owned(),
                        _ => {}
                    }
                }
                out.initializers.push(t);
            }
            11 => out
                .inputs
                .push(value_info(f.len_payload("GraphProto.input")?)?),
            12 => out
                .outputs
                .push(value_info(f.len_payload("GraphProto.output")?)?),
            13 => out.value_info_count += 1,
            _ => {}
        }
    }
    Ok(())
}

/// Decodes a `ValueInfoProto`.
pub(crate) fn value_info(bytes: &[u8]) -> Result<ValueInfoSummary, OnnxError> {
    let mut v = ValueInfoSummary {
        name: String::new(),
        elem_type: 0,
        dims: None,
    };
    for f in WireReader::new(bytes) {
        let f = f?;
        match f.number {
            1 => v.name = f.string("ValueInfoProto.name")?.to_owned(),
            2 => {
                for t in WireReader::new(f.len_payload("ValueInfoProto.type")?) {
                    let t = t?;
                    if t.number != 1 {
                        continue;
                    }
                    for tt in WireReader::new(t.len_payload("TypeProto.tensor_type")?) {
                        let tt = tt?;
                        match tt.number {
                            1 => v.elem_type = tt.varint("TypeProto.Tensor.elem_type")? as i64,
                            2 => {
                                v.dims =
                                    Some(shape_dims(tt.len_payload("TypeProto.Tensor.shape")?)?)
                            }
                            _ => {}
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok(v)
}

/// Decodes the dimensions of a `TensorShapeProto`.
pub(crate) fn shape_dims(shape: &[u8]) -> Result<Vec<Dim>, OnnxError> {
    let mut dims = Vec::new();
    for d in WireReader::new(shape) {
        let d = d?;
        if d.number != 1 {
            continue;
        }
        let mut dim = Dim::Param(String::new());
        for g in WireReader::new(d.len_payload("TensorShapeProto.dim")?) {
            let g = g?;
            match g.number {
                1 => dim = Dim::Fixed(g.varint("Dimension.dim_value")? as i64),
                2 => dim = Dim::Param(g.string("Dimension.dim_param")?.to_owned()),
                _ => {}
            }
        }
        dims.push(dim);
    }
    Ok(dims)
}
