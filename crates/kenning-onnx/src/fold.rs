//! Rewrites a quantized-weight model into the form ONNX Runtime runs fastest
//! on a CPU (OpenCV Zoo's block-quantized SFace is the case it was written
//! for).
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
//! - `PRelu` with a constant slope `s` becomes `s * x + Relu((1 - s) * x)`
//!   (or `s * x + (1 - s) * Relu(x)` where some `s` exceeds 1): the same
//!   function, made of operators ONNX Runtime's blocked (NCHWc) CPU layout
//!   fuses, where its own `PRelu` kernel forces a layout change around every
//!   activation (measured: SFace's 27 PRelus took more time than its 27
//!   convolutions). Scaling before the `Relu` lets the runtime fuse the
//!   `Relu` into the scaling and the `Add` into the other scaling: two
//!   passes over the activation instead of three.
//!
//! These three leave what the model computes unchanged. One rewrite does
//! not: a `Gemm` with a large constant weight matrix (at least
//! [`INT8_GEMM_MIN_WEIGHTS`] values; SFace's last layer, 50176 x 128) runs
//! on int8 weights (symmetric, one scale per output column) with its input
//! quantized to uint8 at run time (`DynamicQuantizeLinear` +
//! `MatMulInteger`, which ONNX Runtime fuses into one operator). Reading a
//! quarter of the bytes makes that layer about 4x cheaper; on ../shared
//! face crops SFace's embeddings stay within cosine 0.9999 of the shipped
//! model's (docs/benchmarks.md).
//!
//! Everything else in the file is copied through byte for byte, except
//! `graph.value_info`, which is dropped (the runtime infers shapes afresh).

use std::collections::{HashMap, HashSet};

use crate::inspect::value_info;
use crate::model::{Attribute, DataType, Node, Tensor, TensorData};
use crate::wire::{ProtoWriter, WireReader, WireValue};
use crate::OnnxError;

/// Metadata key under which [`cpu_form`] records the converter version.
pub const CPU_FORM_KEY: &str = "kenning.cpu_form";

/// The version of [`fold_for_cpu`]'s output: raise it whenever the rewrite
/// changes, so a CPU form written by an older converter is not used.
pub const CPU_FORM_VERSION: &str = "2";

/// The fewest constant weights for which a `Gemm` is rewritten to int8 by
/// [`fold_for_cpu`]: only where reading the weights dominates the layer.
pub const INT8_GEMM_MIN_WEIGHTS: usize = 1 << 20;

/// Metadata key under which [`cpu_form`] records the size in bytes of the
/// file it was converted from.
pub const CPU_FORM_SOURCE_BYTES: &str = "kenning.source_bytes";

/// [`fold_for_cpu`]'s output marked with the converter version and the
/// source's size, so a loader can use a file converted once at set-up and
/// tell a stale one ([`is_cpu_form_of`]).
pub fn cpu_form(model: &[u8]) -> Result<(Vec<u8>, FoldReport), OnnxError> {
    let (folded, report) = fold_for_cpu(model)?;
    let size = model.len().to_string();
    let marked = crate::with_metadata(
        &folded,
        &[
            (CPU_FORM_KEY, CPU_FORM_VERSION),
            (CPU_FORM_SOURCE_BYTES, &size),
        ],
    )?;
    Ok((marked, report))
}

/// Whether `converted` is [`cpu_form`]'s output, by this converter version,
/// of a source of `source_bytes` bytes.
pub fn is_cpu_form_of(converted: &[u8], source_bytes: u64) -> Result<bool, OnnxError> {
    let meta = crate::metadata(converted)?;
    let get = |key: &str| meta.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    Ok(get(CPU_FORM_KEY) == Some(CPU_FORM_VERSION)
        && get(CPU_FORM_SOURCE_BYTES) == Some(source_bytes.to_string().as_str()))
}

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
    /// `Gemm` nodes rewritten to int8 weights with dynamically quantized
    /// input.
    pub gemm_int8: usize,
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
    /// Float attributes by name (only `Gemm` is rewritten with any).
    float_attrs: HashMap<String, f32>,
    /// Attributes of other kinds, or a domain other than the default one:
    /// such a node is never rewritten.
    unusual: bool,
}

impl NodeInfo<'_> {
    /// Neither unusual nor carrying float attributes.
    fn plain(&self) -> bool {
        !self.unusual && self.float_attrs.is_empty()
    }
}

/// Folds constant `DequantizeLinear` nodes into fp32 initializers, drops
/// graph inputs that are not real inputs and rewrites constant-slope
/// `PRelu` (see the module documentation). A model with none of these is
/// returned with only its `value_info` removed.
pub fn fold_for_cpu(model: &[u8]) -> Result<(Vec<u8>, FoldReport), OnnxError> {
    fold(model, true)
}

/// [`fold_for_cpu`] without the int8 `Gemm` rewrite: only the rewrites that
/// leave what the model computes unchanged, in operators every ONNX runtime
/// knows (OpenCV's importer reads this form but not `DynamicQuantizeLinear`).
pub fn fold_exact(model: &[u8]) -> Result<(Vec<u8>, FoldReport), OnnxError> {
    fold(model, false)
}

fn fold(model: &[u8], int8: bool) -> Result<(Vec<u8>, FoldReport), OnnxError> {
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
            let graph = fold_graph(f.len_payload("ModelProto.graph")?, int8, &mut report)?;
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
        float_attrs: HashMap::new(),
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
                let (mut name, mut int, mut float) = (String::new(), None, None);
                for a in WireReader::new(g.len_payload("NodeProto.attribute")?) {
                    let a = a?;
                    match (a.number, a.value) {
                        (1, _) => name = a.string("AttributeProto.name")?.to_owned(),
                        (2, WireValue::Fixed32(v)) => float = Some(f32::from_bits(v)),
                        (3, _) => int = Some(a.varint("AttributeProto.i")? as i64),
                        _ => {}
                    }
                }
                match (int, float) {
                    (Some(v), _) => {
                        n.int_attrs.insert(name, v);
                    }
                    (None, Some(v)) => {
                        n.float_attrs.insert(name, v);
                    }
                    (None, None) => n.unusual = true,
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
    if !node.plain() || node.outputs.len() != 1 {
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

/// `Y = A B + C` with a large constant `B` as int8 weights and `A`
/// quantized at run time: the nodes replacing the `Gemm` and their new
/// constants, or `None` when its form is not one handled here (`transA`,
/// `alpha` or `beta` other than the defaults, a non-constant `B`, fewer
/// than [`INT8_GEMM_MIN_WEIGHTS`] weights, or a `C` that is not one value
/// per output column).
fn int8_gemm(
    node: &NodeInfo<'_>,
    constants: &HashMap<String, Constant<'_>>,
    folded: &[Tensor],
) -> Option<(Vec<Node>, Vec<Tensor>)> {
    if node.unusual || node.outputs.len() != 1 || !(2..=3).contains(&node.inputs.len()) {
        return None;
    }
    let default = |k: &str, v: f32| node.float_attrs.get(k).is_none_or(|&x| x == v);
    let known = node
        .int_attrs
        .keys()
        .chain(node.float_attrs.keys())
        .all(|k| ["transA", "transB", "alpha", "beta"].contains(&k.as_str()));
    if !known
        || node.int_attrs.get("transA").is_some_and(|&t| t != 0)
        || !default("alpha", 1.0)
        || !default("beta", 1.0)
    {
        return None;
    }
    // Constant values by name: folded weights first, then the file's own.
    let values = |name: &str| -> Option<(Vec<i64>, Vec<f32>)> {
        if let Some(t) = folded.iter().find(|t| t.name == name) {
            return match &t.data {
                TensorData::Float(v) => Some((t.dims.clone(), v.clone())),
                _ => None,
            };
        }
        let c = constants.get(name).filter(|c| c.data_type == FLOAT)?;
        Some((
            c.dims.clone(),
            c.values()?.iter().map(|&v| v as f32).collect(),
        ))
    };
    let (dims, b) = values(&node.inputs[1])?;
    let [rows, cols] = dims[..] else { return None };
    let (rows, cols) = (usize::try_from(rows).ok()?, usize::try_from(cols).ok()?);
    if b.len() < INT8_GEMM_MIN_WEIGHTS || b.len() != rows * cols {
        return None;
    }
    let trans_b = node.int_attrs.get("transB").copied().unwrap_or(0) != 0;
    // B as [K, N], what MatMulInteger takes.
    let (k, n) = if trans_b { (cols, rows) } else { (rows, cols) };
    let at = |i: usize, j: usize| {
        if trans_b {
            b[j * cols + i]
        } else {
            b[i * cols + j]
        }
    };
    let bias = match node.inputs.get(2).filter(|c| !c.is_empty()) {
        Some(c) => {
            let (cdims, cv) = values(c)?;
            if cv.len() != n || !(cdims == [n as i64] || cdims == [1, n as i64]) {
                return None;
            }
            Some(c.clone())
        }
        None => None,
    };
    // Symmetric int8, one scale per output column.
    let mut scale = vec![0f32; n];
    for (j, s) in scale.iter_mut().enumerate() {
        let max = (0..k).map(|i| at(i, j).abs()).fold(0f32, f32::max);
        *s = if max > 0.0 && max.is_finite() {
            max / 127.0
        } else {
            1.0
        };
    }
    let mut q = vec![0i8; k * n];
    for i in 0..k {
        for j in 0..n {
            q[i * n + j] = (at(i, j) / scale[j]).round().clamp(-127.0, 127.0) as i8;
        }
    }
    let y = &node.outputs[0];
    let name = |part: &str| format!("{y}__int8_{part}");
    let (wq, ws) = (name("weight"), name("weight_scale"));
    let (xq, xs, xz) = (name("input"), name("input_scale"), name("input_zero_point"));
    let (acc, accf, sc) = (name("acc"), name("acc_float"), name("scale"));
    let product = if bias.is_some() {
        name("product")
    } else {
        y.clone()
    };
    let mut nodes = vec![
        Node::new(
            "DynamicQuantizeLinear",
            &name("quantize_input"),
            &[&node.inputs[0]],
            &[&xq, &xs, &xz],
        ),
        Node::new("MatMulInteger", &name("matmul"), &[&xq, &wq, &xz], &[&acc]),
        Node::new("Cast", &name("cast"), &[&acc], &[&accf])
            .with(Attribute::int("to", DataType::Float as i64)),
        Node::new("Mul", &sc, &[&xs, &ws], &[&sc]),
        Node::new("Mul", &name("rescale"), &[&accf, &sc], &[&product]),
    ];
    if let Some(c) = &bias {
        nodes.push(Node::new("Add", &name("bias"), &[&product, c], &[y]));
    }
    let tensors = vec![
        Tensor::int8(&wq, vec![k as i64, n as i64], q),
        Tensor::float(&ws, vec![n as i64], scale),
    ];
    Some((nodes, tensors))
}

fn fold_graph(graph: &[u8], int8: bool, report: &mut FoldReport) -> Result<Vec<u8>, OnnxError> {
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
        if int8 && node.op_type == "Gemm" {
            if let Some((new, tensors)) = int8_gemm(node, &constants, &new_constants) {
                report.gemm_int8 += 1;
                for n in &new {
                    reads.extend(n.inputs.iter().cloned());
                }
                new_constants.extend(tensors);
                written.push(Out::New(new));
                continue;
            }
        }
        if node.op_type == "PRelu"
            && node.plain()
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
                let relu = name("relu");
                let neg = name("scaled");
                let sum = name("sum");
                // Relu((1 - s) x) = (1 - s) Relu(x) only where 1 - s >= 0.
                let new = if s.iter().all(|&v| 1.0 - v as f32 >= 0.0) {
                    let pos = name("scaled_for_relu");
                    vec![
                        Node::new("Mul", &pos, &[x, &one_minus], &[&pos]),
                        Node::new("Relu", &relu, &[&pos], &[&relu]),
                        Node::new("Mul", &neg, &[x, slope], &[&neg]),
                        Node::new("Add", &sum, &[&neg, &relu], &[y]),
                    ]
                } else {
                    let pos = name("relu_scaled");
                    vec![
                        Node::new("Relu", &relu, &[x], &[&relu]),
                        Node::new("Mul", &pos, &[&relu, &one_minus], &[&pos]),
                        Node::new("Mul", &neg, &[x, slope], &[&neg]),
                        Node::new("Add", &sum, &[&pos, &neg], &[y]),
                    ]
                };
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

    /// The initializer `name` of `model`'s graph.
    fn initializer<'m>(model: &'m [u8], name: &str) -> Constant<'m> {
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
                        return c;
                    }
                }
            }
        }
        panic!("no initializer {name}");
    }

    fn floats(model: &[u8], name: &str) -> Vec<f32> {
        let c = initializer(model, name);
        c.values().unwrap().iter().map(|&v| v as f32).collect()
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

    fn op_types(model: &[u8]) -> Vec<String> {
        inspect(model)
            .unwrap()
            .nodes
            .into_iter()
            .map(|n| n.op_type)
            .collect()
    }

    #[test]
    fn prelu_with_a_constant_slope_becomes_scaled_relu_plus_scaled_input() {
        // Every 1 - s >= 0: the scaling goes before the Relu.
        let prelu = Node::new("PRelu", "act", &["data", "slope"], &["out"]);
        let bytes = model(
            graph(vec![prelu], "out"),
            &[raw_tensor("slope", &[2], FLOAT, &f32s(&[0.25, -1.5]))],
            &[],
        );
        let (folded, report) = fold_for_cpu(&bytes).unwrap();
        assert_eq!(report.prelu, 1);
        assert_eq!(op_types(&folded), ["Mul", "Relu", "Mul", "Add"]);
        let nodes = inspect(&folded).unwrap().nodes;
        assert_eq!(nodes[0].inputs, ["data", "out__prelu_one_minus_slope"]);
        assert_eq!(nodes[1].inputs, [nodes[0].outputs[0].clone()]);
        assert_eq!(nodes[2].inputs, ["data", "slope"]);
        assert_eq!(
            nodes[3].inputs,
            [nodes[2].outputs[0].clone(), nodes[1].outputs[0].clone()]
        );
        assert_eq!(nodes[3].outputs, ["out"]);
        assert_eq!(
            floats(&folded, "out__prelu_one_minus_slope"),
            vec![0.75, 2.5]
        );
        assert_eq!(floats(&folded, "slope"), vec![0.25, -1.5]);

        // A slope above 1 (1 - s < 0): Relu(x) is scaled after it instead.
        let prelu = Node::new("PRelu", "act", &["data", "slope"], &["out"]);
        let bytes = model(
            graph(vec![prelu], "out"),
            &[raw_tensor("slope", &[2], FLOAT, &f32s(&[0.25, 1.5]))],
            &[],
        );
        let (folded, report) = fold_for_cpu(&bytes).unwrap();
        assert_eq!(report.prelu, 1);
        assert_eq!(op_types(&folded), ["Relu", "Mul", "Mul", "Add"]);
        let nodes = inspect(&folded).unwrap().nodes;
        assert_eq!(nodes[0].inputs, ["data"]);
        assert_eq!(
            nodes[1].inputs,
            [
                nodes[0].outputs[0].clone(),
                "out__prelu_one_minus_slope".into()
            ]
        );
        assert_eq!(
            floats(&folded, "out__prelu_one_minus_slope"),
            vec![0.75, -0.5]
        );
    }

    /// A Gemm model `out = data x B^T + C` with B [n, k] and alpha `alpha`.
    fn gemm_model(b: &[f32], n: usize, k: usize, alpha: f32) -> Vec<u8> {
        let gemm = Node::new("Gemm", "fc", &["data", "b", "c"], &["out"])
            .with(Attribute::int("transB", 1))
            .with(Attribute::float("alpha", alpha))
            .with(Attribute::float("beta", 1.0));
        let c: Vec<f32> = (0..n).map(|j| j as f32).collect();
        model(
            graph(vec![gemm], "out"),
            &[
                raw_tensor("b", &[n as i64, k as i64], FLOAT, &f32s(b)),
                raw_tensor("c", &[n as i64], FLOAT, &f32s(&c)),
            ],
            &[],
        )
    }

    fn int8s(model: &[u8], name: &str) -> (Vec<i64>, Vec<i8>) {
        let c = initializer(model, name);
        assert_eq!(c.data_type, INT8);
        let v = c.values().unwrap().iter().map(|&v| v as i8).collect();
        (c.dims, v)
    }

    #[test]
    fn a_large_constant_gemm_runs_on_int8_weights() {
        // B [n = 2, k] with k * n = INT8_GEMM_MIN_WEIGHTS; column 0 of B^T
        // spans [-2, 2], column 1 is all zero.
        let (n, k) = (2, INT8_GEMM_MIN_WEIGHTS / 2);
        let mut b = vec![0f32; n * k];
        for (i, v) in b[..k].iter_mut().enumerate() {
            *v = -2.0 + 4.0 * i as f32 / (k - 1) as f32;
        }
        let (folded, report) = fold_for_cpu(&gemm_model(&b, n, k, 1.0)).unwrap();
        assert_eq!(report.gemm_int8, 1);
        assert_eq!(
            op_types(&folded),
            [
                "DynamicQuantizeLinear",
                "MatMulInteger",
                "Cast",
                "Mul",
                "Mul",
                "Add"
            ]
        );
        let nodes = inspect(&folded).unwrap().nodes;
        assert_eq!(nodes[0].inputs, ["data"]);
        assert_eq!(nodes[5].inputs[1], "c");
        assert_eq!(nodes[5].outputs, ["out"]);
        // Weights as [k, n], one scale per output column (an all-zero
        // column keeps scale 1).
        assert_eq!(
            floats(&folded, "out__int8_weight_scale"),
            [2.0 / 127.0, 1.0]
        );
        let (dims, q) = int8s(&folded, "out__int8_weight");
        assert_eq!(dims, [k as i64, n as i64]);
        assert_eq!((q[0], q[1]), (-127, 0));
        assert_eq!(q[2 * (k - 1)], 127);
        let scale = 2.0 / 127.0;
        for i in 0..k {
            assert!((f32::from(q[2 * i]) * scale - b[i]).abs() <= scale / 2.0 + 1e-6);
            assert_eq!(q[2 * i + 1], 0);
        }
        // The fp32 weights are gone; the bias stays.
        let names: Vec<String> = inspect(&folded)
            .unwrap()
            .initializers
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert!(!names.contains(&"b".to_owned()), "{names:?}");
        assert!(names.contains(&"c".to_owned()), "{names:?}");

        // fold_exact leaves it as it is.
        let (exact, report) = fold_exact(&gemm_model(&b, n, k, 1.0)).unwrap();
        assert_eq!(report.gemm_int8, 0);
        assert_eq!(op_types(&exact), ["Gemm"]);

        // Too small, or alpha other than 1: kept as it is.
        let (kept, report) = fold_for_cpu(&gemm_model(&b[..n * 8], n, 8, 1.0)).unwrap();
        assert_eq!(report.gemm_int8, 0);
        assert_eq!(op_types(&kept), ["Gemm"]);
        let (kept, report) = fold_for_cpu(&gemm_model(&b, n, k, 0.5)).unwrap();
        assert_eq!(report.gemm_int8, 0);
        assert_eq!(op_types(&kept), ["Gemm"]);
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
