//! Rewrites a quantized-weight model into the form ONNX Runtime runs fastest
//! on a CPU, without changing what it computes (OpenCV Zoo's block-quantized
//! SFace is the case it was written for).
//!
//! - Every `DequantizeLinear` whose inputs are all constants (per-tensor,
//!   per-axis or blocked scales; 8-, 16- or 32-bit integers) becomes an fp32
//!   initializer holding `(q - zero_point) * scale`, computed exactly as the
//!   operator defines it. The model no longer spends its time dequantizing
//!   weights on every run.
//! - Graph inputs that are initializers, or that no node reads, are dropped.
//!   Older exporters list every weight as an input, which makes ONNX Runtime
//!   treat them as overridable: it then neither folds constants nor fuses
//!   Conv with BatchNormalization (and some runtimes demand them as inputs).
//! - `PRelu` with a constant slope `s` becomes `s * x + (1 - s) * Relu(x)`:
//!   the same function, but made of operators ONNX Runtime's blocked (NCHWc)
//!   CPU layout fuses into its convolutions, where its own `PRelu` kernel
//!   forces a layout change around every activation (measured: SFace's 27
//!   PRelus took more time than its 27 convolutions).
//!
//! Everything else in the file is copied through byte for byte, except
//! `graph.value_info`, which is dropped (the runtime infers shapes afresh).

use std::collections::{HashMap, HashSet};

use crate::inspect::value_info;
use crate::model::{Node, Tensor};
use crate::wire::{ProtoWriter, WireReader, WireValue};
use crate::OnnxError;

/// What [`fold_for_cpu`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FoldReport {
    /// `DequantizeLinear` nodes replaced by fp32 initializers.
    pub dequantized: usize,
    /// `PRelu` nodes rewritten.
    pub prelu: usize,
    /// Graph inputs dropped (initializers or unread names).
    pub inputs_dropped: usize,
    /// Initializers dropped because nothing reads them any more.
    pub initializers_dropped: usize,
}

// TensorProto.DataType values read here.
const FLOAT: i64 = 1;
const UINT8: i64 = 2;
const INT8: i64 = 3;
const UINT16: i64 = 4;
const INT16: i64 = 5;
const INT32: i64 = 6;

/// A constant tensor as stored in the file (values decoded on demand).
struct Constant<'a> {
    dims: Vec<i64>,
    data_type: i64,
    raw_data: Option<&'a [u8]>,
    float_data: Vec<f32>,
    int32_data: Vec<i64>,
}

impl Constant<'_> {
    fn len(&self) -> usize {
        self.dims.iter().map(|&d| d.max(0) as usize).product()
    }

    /// The values as f64 (exact for every integer type read here and for
    /// f32), or `None` for another element type or a size mismatch.
    fn values(&self) -> Option<Vec<f64>> {
        let n = self.len();
        let out: Vec<f64> = match (self.data_type, self.raw_data) {
            (FLOAT, Some(raw)) => raw
                .chunks_exact(4)
                .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
            (FLOAT, None) => self.float_data.iter().map(|&v| f64::from(v)).collect(),
            (UINT8, Some(raw)) => raw.iter().map(|&v| f64::from(v)).collect(),
            (INT8, Some(raw)) => raw.iter().map(|&v| f64::from(v as i8)).collect(),
            (UINT16, Some(raw)) => raw
                .chunks_exact(2)
                .map(|b| f64::from(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
            (INT16, Some(raw)) => raw
                .chunks_exact(2)
                .map(|b| f64::from(i16::from_le_bytes([b[0], b[1]])))
                .collect(),
            (INT32, Some(raw)) => raw
                .chunks_exact(4)
                .map(|b| f64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
            // int32_data holds every small integer type, sign-extended for
            // the signed ones (protobuf int32 varints).
            (UINT8 | INT8 | UINT16 | INT16 | INT32, None) => self
                .int32_data
                .iter()
                .map(|&v| f64::from(v as i32))
                .collect(),
            _ => return None,
        };
        (out.len() == n).then_some(out)
    }
}

/// A node as read: its bytes (to copy through) and what the rewrite needs.
struct NodeInfo<'a> {
    raw: &'a [u8],
    op_type: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    /// Integer attributes by name.
    int_attrs: HashMap<String, i64>,
    /// Attributes of other kinds, or a domain other than the default one:
    /// such a node is never rewritten.
    unusual: bool,
}

/// Folds constant `DequantizeLinear` nodes into fp32 initializers, drops
/// graph inputs that are not real inputs and rewrites constant-slope
/// `PRelu` (see the module documentation). A model with none of these is
/// returned with only its `value_info` removed.
pub fn fold_for_cpu(model: &[u8]) -> Result<(Vec<u8>, FoldReport), OnnxError> {
    let mut out = ProtoWriter::new();
    let mut report = FoldReport::default();
    let mut saw_graph = false;
    for f in WireReader::new(model) {
        let f = f?;
        if f.number == 7 {
            if saw_graph {
                return Err(OnnxError::Invalid("more than one ModelProto.graph".into()));
            }
            saw_graph = true;
            let graph = fold_graph(f.len_payload("ModelProto.graph")?, &mut report)?;
            out.bytes(7, &graph);
        } else {
            out.raw(f.raw);
        }
    }
    if !saw_graph {
        return Err(OnnxError::MissingGraph);
    }
    Ok((out.into_bytes(), report))
}

fn read_constant(bytes: &[u8]) -> Result<(String, Constant<'_>), OnnxError> {
    let mut name = String::new();
    let mut c = Constant {
        dims: Vec::new(),
        data_type: 0,
        raw_data: None,
        float_data: Vec::new(),
        int32_data: Vec::new(),
    };
    for g in WireReader::new(bytes) {
        let g = g?;
        match (g.number, g.value) {
            (1, WireValue::Len(p)) => c.dims.extend(crate::wire::decode_packed_varints(p)?),
            (1, WireValue::Varint(v)) => c.dims.push(v as i64),
            (2, _) => c.data_type = g.varint("TensorProto.data_type")? as i64,
            (4, WireValue::Len(p)) => c.float_data.extend(
                p.chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            ),
            (4, WireValue::Fixed32(v)) => c.float_data.push(f32::from_bits(v)),
            (5, WireValue::Len(p)) => c.int32_data.extend(crate::wire::decode_packed_varints(p)?),
            (5, WireValue::Varint(v)) => c.int32_data.push(v as i64),
            (8, _) => name = g.string("TensorProto.name")?.to_owned(),
            (9, _) => c.raw_data = Some(g.len_payload("TensorProto.raw_data")?),
            // External data cannot be folded from the bytes alone.
            (13 | 14, _) => c.data_type = -1,
            _ => {}
        }
    }
    Ok((name, c))
}

fn read_node<'a>(raw: &'a [u8], bytes: &[u8]) -> Result<NodeInfo<'a>, OnnxError> {
    let mut n = NodeInfo {
        raw,
        op_type: String::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        int_attrs: HashMap::new(),
        unusual: false,
    };
    for g in WireReader::new(bytes) {
        let g = g?;
        match g.number {
            1 => n.inputs.push(g.string("NodeProto.input")?.to_owned()),
            2 => n.outputs.push(g.string("NodeProto.output")?.to_owned()),
            4 => n.op_type = g.string("NodeProto.op_type")?.to_owned(),
            7 => {
                let domain = g.string("NodeProto.domain")?;
                n.unusual |= !domain.is_empty() && domain != "ai.onnx";
            }
            5 => {
                let (mut name, mut int) = (String::new(), None);
                for a in WireReader::new(g.len_payload("NodeProto.attribute")?) {
                    let a = a?;
                    match a.number {
                        1 => name = a.string("AttributeProto.name")?.to_owned(),
                        3 => int = Some(a.varint("AttributeProto.i")? as i64),
                        _ => {}
                    }
                }
                match int {
                    Some(v) => {
                        n.int_attrs.insert(name, v);
                    }
                    None => n.unusual = true,
                }
            }
            _ => {}
        }
    }
    Ok(n)
}

/// `(q - zero_point) * scale` for a constant DequantizeLinear, or `None` when
/// its form is not one this rewrite handles (the node is then kept).
fn dequantize(node: &NodeInfo<'_>, constants: &HashMap<String, Constant<'_>>) -> Option<Tensor> {
    if node.unusual || node.outputs.len() != 1 {
        return None;
    }
    if node
        .int_attrs
        .get("output_dtype")
        .is_some_and(|&t| t != FLOAT)
    {
        return None;
    }
    let x = constants.get(node.inputs.first()?)?;
    let scale = constants.get(node.inputs.get(1)?)?;
    if scale.data_type != FLOAT || !matches!(x.data_type, UINT8 | INT8 | UINT16 | INT16 | INT32) {
        return None;
    }
    let q = x.values()?;
    let s = scale.values()?;
    let z = match node.inputs.get(2).filter(|n| !n.is_empty()) {
        Some(name) => {
            let z = constants.get(name)?;
            if z.data_type != x.data_type || z.dims != scale.dims {
                return None;
            }
            z.values()?
        }
        None => vec![0.0; s.len()],
    };
    let rank = x.dims.len() as i64;
    let mut axis = node.int_attrs.get("axis").copied().unwrap_or(1);
    if axis < 0 {
        axis += rank;
    }
    let block = node.int_attrs.get("block_size").copied().unwrap_or(0);
    // Which scale each element uses: x viewed as [outer, a, inner].
    let index: Box<dyn Fn(usize) -> usize> = if s.len() == 1 {
        Box::new(|_| 0)
    } else {
        if !(0..rank).contains(&axis) {
            return None;
        }
        let ax = axis as usize;
        let a = x.dims[ax] as usize;
        let inner: usize = x.dims[ax + 1..].iter().map(|&d| d as usize).product();
        if block > 0 {
            let block = block as usize;
            let sa = a.div_ceil(block);
            let mut want = x.dims.clone();
            want[ax] = sa as i64;
            if scale.dims != want {
                return None;
            }
            Box::new(move |i| {
                let (o, rest) = (i / (a * inner), i % (a * inner));
                (o * sa + (rest / inner) / block) * inner + rest % inner
            })
        } else {
            if scale.dims != [a as i64] {
                return None;
            }
            Box::new(move |i| (i / inner) % a)
        }
    };
    // As the operator defines it: the integer difference, then one float
    // multiplication in f32.
    let values = q
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let j = index(i);
            ((v - z[j]) as f32) * s[j] as f32
        })
        .collect();
    Some(Tensor::float(&node.outputs[0], x.dims.clone(), values))
}

fn fold_graph(graph: &[u8], report: &mut FoldReport) -> Result<Vec<u8>, OnnxError> {
    let mut constants: HashMap<String, Constant<'_>> = HashMap::new();
    let mut nodes = Vec::new();
    let mut outputs = HashSet::new();
    for f in WireReader::new(graph) {
        let f = f?;
        match f.number {
            1 => nodes.push(read_node(f.raw, f.len_payload("GraphProto.node")?)?),
            5 => {
                let (name, c) = read_constant(f.len_payload("GraphProto.initializer")?)?;
                constants.insert(name, c);
            }
            12 => {
                outputs.insert(value_info(f.len_payload("GraphProto.output")?)?.name);
            }
            _ => {}
        }
    }

    // Nodes as they will be written: the original bytes, or new nodes.
    enum Out<'a> {
        Keep(&'a [u8]),
        New(Vec<Node>),
    }
    let mut new_constants: Vec<Tensor> = Vec::new();
    let mut written: Vec<Out<'_>> = Vec::with_capacity(nodes.len());
    let mut reads: HashSet<String> = outputs.clone();
    for node in &nodes {
        if node.op_type == "DequantizeLinear" {
            if let Some(t) = dequantize(node, &constants) {
                report.dequantized += 1;
                new_constants.push(t);
                continue;
            }
        }
        if node.op_type == "PRelu"
            && !node.unusual
            && node.inputs.len() == 2
            && node.outputs.len() == 1
        {
            let slope = constants
                .get(&node.inputs[1])
                .filter(|c| c.data_type == FLOAT)
                .and_then(|c| Some((c.dims.clone(), c.values()?)));
            if let Some((dims, s)) = slope {
                report.prelu += 1;
                let (x, slope, y) = (&node.inputs[0], &node.inputs[1], &node.outputs[0]);
                let name = |part: &str| format!("{y}__prelu_{part}");
                let one_minus = name("one_minus_slope");
                new_constants.push(Tensor::float(
                    &one_minus,
                    dims,
                    s.iter().map(|&v| 1.0 - v as f32).collect(),
                ));
                let (relu, pos, neg) = (name("relu"), name("relu_scaled"), name("scaled"));
                let new = vec![
                    Node::new("Relu", &relu, &[x], &[&relu]),
                    Node::new("Mul", &pos, &[&relu, &one_minus], &[&pos]),
                    Node::new("Mul", &neg, &[x, slope], &[&neg]),
                    Node::new("Add", &name("sum"), &[&pos, &neg], &[y]),
                ];
                reads.extend([x.clone(), slope.clone(), one_minus.clone()]);
                written.push(Out::New(new));
                continue;
            }
        }
        reads.extend(node.inputs.iter().cloned());
        written.push(Out::Keep(node.raw));
    }
    let folded: HashSet<&str> = new_constants.iter().map(|t| t.name.as_str()).collect();

    let mut out = ProtoWriter::new();
    for f in WireReader::new(graph) {
        let f = f?;
        match f.number {
            1 | 13 => {}
            5 => {
                let (name, _) = read_constant(f.len_payload("GraphProto.initializer")?)?;
                if reads.contains(&name) && !folded.contains(name.as_str()) {
                    out.raw(f.raw);
                } else {
                    report.initializers_dropped += 1;
                }
            }
            11 => {
                let name = value_info(f.len_payload("GraphProto.input")?)?.name;
                if reads.contains(&name)
                    && !constants.contains_key(&name)
                    && !folded.contains(name.as_str())
                {
                    out.raw(f.raw);
                } else {
                    report.inputs_dropped += 1;
                }
            }
            _ => out.raw(f.raw),
        }
    }
    for w in &written {
        match w {
            Out::Keep(raw) => out.raw(raw),
            Out::New(list) => {
                for n in list {
                    out.message(1, |m| n.encode(m));
                }
            }
        }
    }
    for t in &new_constants {
        if reads.contains(&t.name) {
            out.message(5, |m| t.encode(m));
        }
    }
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{DataType, Dim, Graph, Model, ValueInfo};
    use crate::{inspect, model::Attribute};

    /// A TensorProto with raw little-endian data of any element type.
    fn raw_tensor(name: &str, dims: &[i64], data_type: i64, raw: &[u8]) -> Vec<u8> {
        let mut w = ProtoWriter::new();
        w.packed_int64(1, dims);
        w.int64(2, data_type);
        w.string(8, name);
        w.bytes(9, raw);
        w.into_bytes()
    }

    /// A model whose graph is `graph` plus the given encoded initializers and
    /// extra graph inputs.
    fn model(graph: Graph, tensors: &[Vec<u8>], extra_inputs: &[&str]) -> Vec<u8> {
        let mut m = Model::new(graph, 21, "test");
        for name in extra_inputs {
            m.graph
                .inputs
                .push(ValueInfo::new(name, DataType::Float, vec![Dim::Fixed(1)]));
        }
        let bytes = m.encode();
        // Append the initializers to the graph message.
        let mut out = ProtoWriter::new();
        for f in WireReader::new(&bytes) {
            let f = f.unwrap();
            if f.number == 7 {
                let mut g = ProtoWriter::new();
                g.raw(f.len_payload("graph").unwrap());
                for t in tensors {
                    g.bytes(5, t);
                }
                out.bytes(7, g.as_bytes());
            } else {
                out.raw(f.raw);
            }
        }
        out.into_bytes()
    }

    fn floats(model: &[u8], name: &str) -> Vec<f32> {
        for f in WireReader::new(model) {
            let f = f.unwrap();
            if f.number != 7 {
                continue;
            }
            for g in WireReader::new(f.len_payload("graph").unwrap()) {
                let g = g.unwrap();
                if g.number == 5 {
                    let (n, c) = read_constant(g.len_payload("init").unwrap()).unwrap();
                    if n == name {
                        return c.values().unwrap().iter().map(|&v| v as f32).collect();
                    }
                }
            }
        }
        panic!("no initializer {name}");
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn graph(nodes: Vec<Node>, output: &str) -> Graph {
        Graph {
            name: "g".into(),
            nodes,
            initializers: vec![],
            inputs: vec![ValueInfo::new("data", DataType::Float, vec![Dim::Fixed(2)])],
            outputs: vec![ValueInfo::new(output, DataType::Float, vec![])],
        }
    }

    #[test]
    fn blocked_per_axis_and_per_tensor_dequantization_fold_exactly() {
        // Blocked along axis 1 with block 2: x [2, 3] int8, scale/zero point
        // [2, 2] (the last block is short).
        let x: [i8; 6] = [1, -2, 3, 4, -5, 127];
        let scale = [0.5f32, 2.0, 0.25, 4.0];
        let zp: [i8; 4] = [1, -1, 0, 3];
        let blocked = Node::new(
            "DequantizeLinear",
            "dq_blocked",
            &["xq", "xs", "xz"],
            &["w_blocked"],
        )
        .with(Attribute::int("axis", 1))
        .with(Attribute::int("block_size", 2));
        // Per axis 0: x [3, 2] uint8, scale [3].
        let per_axis = Node::new("DequantizeLinear", "dq_axis", &["aq", "as"], &["w_axis"])
            .with(Attribute::int("axis", 0));
        // Per tensor, zero point absent, negative axis ignored.
        let per_tensor = Node::new(
            "DequantizeLinear",
            "dq_tensor",
            &["tq", "ts"],
            &["w_tensor"],
        );
        let uses = Node::new(
            "Sum",
            "sum",
            &["data", "w_blocked", "w_axis", "w_tensor"],
            &["out"],
        );
        let bytes = model(
            graph(vec![blocked, per_axis, per_tensor, uses], "out"),
            &[
                raw_tensor("xq", &[2, 3], INT8, &x.map(|v| v as u8)),
                raw_tensor("xs", &[2, 2], FLOAT, &f32s(&scale)),
                raw_tensor("xz", &[2, 2], INT8, &zp.map(|v| v as u8)),
                raw_tensor("aq", &[3, 2], UINT8, &[0, 10, 20, 30, 200, 255]),
                raw_tensor("as", &[3], FLOAT, &f32s(&[1.0, 0.5, 0.125])),
                raw_tensor("tq", &[2], INT8, &[0xff, 2]),
                raw_tensor("ts", &[], FLOAT, &f32s(&[3.0])),
            ],
            &["xq", "w_blocked", "unread"],
        );
        let (folded, report) = fold_for_cpu(&bytes).unwrap();
        assert_eq!(report.dequantized, 3);
        assert_eq!(report.prelu, 0);
        assert_eq!(report.inputs_dropped, 3);
        // The quantized tensors, scales and zero points are gone.
        assert_eq!(report.initializers_dropped, 7);
        assert_eq!(
            floats(&folded, "w_blocked"),
            vec![
                (1 - 1) as f32 * 0.5,
                (-2 - 1) as f32 * 0.5,
                (3 + 1) as f32 * 2.0,
                4.0 * 0.25,
                -5.0 * 0.25,
                (127 - 3) as f32 * 4.0,
            ]
        );
        assert_eq!(
            floats(&folded, "w_axis"),
            vec![0.0, 10.0, 10.0, 15.0, 25.0, 31.875]
        );
        assert_eq!(floats(&folded, "w_tensor"), vec![-3.0, 6.0]);
        let summary = inspect(&folded).unwrap();
        assert_eq!(summary.nodes.len(), 1);
        assert_eq!(summary.nodes[0].op_type, "Sum");
        let inputs: Vec<&str> = summary.inputs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(inputs, ["data"]);
    }

    #[test]
    fn prelu_with_a_constant_slope_becomes_relu_mul_add() {
        let prelu = Node::new("PRelu", "act", &["data", "slope"], &["out"]);
        let bytes = model(
            graph(vec![prelu], "out"),
            &[raw_tensor("slope", &[2], FLOAT, &f32s(&[0.25, -1.5]))],
            &[],
        );
        let (folded, report) = fold_for_cpu(&bytes).unwrap();
        assert_eq!(report.prelu, 1);
        let ops: Vec<String> = inspect(&folded)
            .unwrap()
            .nodes
            .into_iter()
            .map(|n| n.op_type)
            .collect();
        assert_eq!(ops, ["Relu", "Mul", "Mul", "Add"]);
        assert_eq!(
            floats(&folded, "out__prelu_one_minus_slope"),
            vec![0.75, 2.5]
        );
        assert_eq!(floats(&folded, "slope"), vec![0.25, -1.5]);
    }

    #[test]
    fn forms_it_does_not_handle_are_kept() {
        // A PRelu whose slope is computed, and a DequantizeLinear of a graph
        // input, stay as they are.
        let dq = Node::new("DequantizeLinear", "dq", &["data", "s"], &["x"]);
        let prelu = Node::new("PRelu", "act", &["x", "x"], &["out"]);
        let bytes = model(
            graph(vec![dq, prelu], "out"),
            &[raw_tensor("s", &[], FLOAT, &f32s(&[2.0]))],
            &[],
        );
        let (folded, report) = fold_for_cpu(&bytes).unwrap();
        assert_eq!(report, FoldReport::default());
        assert_eq!(
            inspect(&folded).unwrap().nodes,
            inspect(&bytes).unwrap().nodes
        );
        assert!(fold_for_cpu(b"\x08").is_err());
    }
}
