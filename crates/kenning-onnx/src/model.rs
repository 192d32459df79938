//! A small ONNX graph builder: just enough of `onnx.proto` to write a
//! feed-forward inference model (nodes, attributes, raw-data initializers,
//! typed inputs/outputs with fixed or symbolic dimensions, opset imports).
//!
//! Field numbers are those of `onnx/onnx.proto` (IR version 3 onwards).

use crate::wire::ProtoWriter;

/// `TensorProto.DataType` values used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum DataType {
    /// 32-bit IEEE float.
    Float = 1,
    /// 8-bit unsigned integer.
    Uint8 = 2,
    /// 8-bit signed integer.
    Int8 = 3,
    /// 32-bit signed integer.
    Int32 = 6,
    /// 64-bit signed integer.
    Int64 = 7,
}

/// One dimension of a declared tensor shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size (`dim_value`).
    Fixed(i64),
    /// A symbolic size (`dim_param`), e.g. a batch axis "N".
    Param(String),
}

impl Dim {
    /// A symbolic dimension named `name`.
    pub fn param(name: &str) -> Self {
        Dim::Param(name.to_owned())
    }

    pub(crate) fn encode(&self, w: &mut ProtoWriter) {
        // TensorShapeProto.Dimension: dim_value = 1, dim_param = 2.
        match self {
            Dim::Fixed(v) => w.int64(1, *v),
            Dim::Param(p) => w.string(2, p),
        }
    }
}

/// Encodes a `TensorShapeProto` with the given dimensions.
pub(crate) fn encode_shape(w: &mut ProtoWriter, dims: &[Dim]) {
    for d in dims {
        w.message(1, |m| d.encode(m));
    }
}

/// A graph input or output: name, element type and shape (`ValueInfoProto`).
#[derive(Debug, Clone, PartialEq)]
pub struct ValueInfo {
    /// Tensor name.
    pub name: String,
    /// Element type.
    pub elem_type: DataType,
    /// Declared shape.
    pub dims: Vec<Dim>,
}

impl ValueInfo {
    /// A tensor value of type `elem_type` and shape `dims`.
    pub fn new(name: &str, elem_type: DataType, dims: Vec<Dim>) -> Self {
        Self {
            name: name.to_owned(),
            elem_type,
            dims,
        }
    }

    fn encode(&self, w: &mut ProtoWriter) {
        w.string(1, &self.name);
        // ValueInfoProto.type (2) -> TypeProto.tensor_type (1) ->
        // Tensor.elem_type (1), Tensor.shape (2).
        w.message(2, |t| {
            t.message(1, |tt| {
                tt.int64(1, self.elem_type as i64);
                tt.message(2, |s| encode_shape(s, &self.dims));
            })
        });
    }
}

/// The payload of a tensor initializer.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// float32 values, written as little-endian `raw_data`.
    Float(Vec<f32>),
    /// int64 values, written as little-endian `raw_data`.
    Int64(Vec<i64>),
    /// int8 values, written as `raw_data` bytes.
    Int8(Vec<i8>),
}

/// A constant tensor (`TensorProto`), stored with `raw_data`.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Name (empty for attribute tensors).
    pub name: String,
    /// Shape.
    pub dims: Vec<i64>,
    /// Values in row-major order; their count must equal the product of `dims`.
    pub data: TensorData,
}

impl Tensor {
    /// A float32 tensor.
    pub fn float(name: &str, dims: Vec<i64>, values: Vec<f32>) -> Self {
        Self {
            name: name.to_owned(),
            dims,
            data: TensorData::Float(values),
        }
    }

    /// An int8 tensor.
    pub fn int8(name: &str, dims: Vec<i64>, values: Vec<i8>) -> Self {
        Self {
            name: name.to_owned(),
            dims,
            data: TensorData::Int8(values),
        }
    }

    /// An int64 tensor.
    pub fn int64(name: &str, dims: Vec<i64>, values: Vec<i64>) -> Self {
        Self {
            name: name.to_owned(),
            dims,
            data: TensorData::Int64(values),
        }
    }

    pub(crate) fn encode(&self, w: &mut ProtoWriter) {
        w.packed_int64(1, &self.dims);
        let (dtype, raw): (DataType, Vec<u8>) = match &self.data {
            TensorData::Float(v) => (
                DataType::Float,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            TensorData::Int64(v) => (
                DataType::Int64,
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            TensorData::Int8(v) => (DataType::Int8, v.iter().map(|&x| x as u8).collect()),
        };
        w.int64(2, dtype as i64);
        w.string(8, &self.name);
        w.bytes(9, &raw);
    }
}

/// A node attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum AttributeValue {
    /// A single float (`f`).
    Float(f32),
    /// A single integer (`i`).
    Int(i64),
    /// A string (`s`).
    String(String),
    /// A list of integers (`ints`).
    Ints(Vec<i64>),
    /// A list of floats (`floats`).
    Floats(Vec<f32>),
    /// A tensor (`t`).
    Tensor(Tensor),
}

/// A named node attribute (`AttributeProto`).
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    /// Attribute name, e.g. "kernel_shape".
    pub name: String,
    /// Its value.
    pub value: AttributeValue,
}

impl Attribute {
    /// An integer-list attribute.
    pub fn ints(name: &str, v: &[i64]) -> Self {
        Self {
            name: name.to_owned(),
            value: AttributeValue::Ints(v.to_vec()),
        }
    }

    /// An integer attribute.
    pub fn int(name: &str, v: i64) -> Self {
        Self {
            name: name.to_owned(),
            value: AttributeValue::Int(v),
        }
    }

    /// A float attribute.
    pub fn float(name: &str, v: f32) -> Self {
        Self {
            name: name.to_owned(),
            value: AttributeValue::Float(v),
        }
    }

    /// A string attribute.
    pub fn string(name: &str, v: &str) -> Self {
        Self {
            name: name.to_owned(),
            value: AttributeValue::String(v.to_owned()),
        }
    }

    fn encode(&self, w: &mut ProtoWriter) {
        // AttributeProto: name 1, f 2, i 3, s 4, t 5, floats 7, ints 8, type 20.
        // AttributeType: FLOAT 1, INT 2, STRING 3, TENSOR 4, FLOATS 6, INTS 7.
        w.string(1, &self.name);
        let kind = match &self.value {
            AttributeValue::Float(v) => {
                w.float(2, *v);
                1
            }
            AttributeValue::Int(v) => {
                w.int64(3, *v);
                2
            }
            AttributeValue::String(v) => {
                w.string(4, v);
                3
            }
            AttributeValue::Tensor(t) => {
                w.message(5, |m| t.encode(m));
                4
            }
            AttributeValue::Floats(v) => {
                w.packed_float(7, v);
                6
            }
            AttributeValue::Ints(v) => {
                w.packed_int64(8, v);
                7
            }
        };
        w.int64(20, kind);
    }
}

/// One operator application (`NodeProto`).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Operator, e.g. "Conv".
    pub op_type: String,
    /// Unique node name.
    pub name: String,
    /// Input tensor names ("" for an omitted optional input).
    pub inputs: Vec<String>,
    /// Output tensor names.
    pub outputs: Vec<String>,
    /// Attributes.
    pub attributes: Vec<Attribute>,
}

impl Node {
    /// A node of `op_type` called `name`, reading `inputs` and writing `outputs`.
    pub fn new(op_type: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> Self {
        Self {
            op_type: op_type.to_owned(),
            name: name.to_owned(),
            inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
            outputs: outputs.iter().map(|s| (*s).to_owned()).collect(),
            attributes: Vec::new(),
        }
    }

    /// Adds an attribute (builder style).
    pub fn with(mut self, attribute: Attribute) -> Self {
        self.attributes.push(attribute);
        self
    }

    pub(crate) fn encode(&self, w: &mut ProtoWriter) {
        // NodeProto: input 1, output 2, name 3, op_type 4, attribute 5.
        for i in &self.inputs {
            w.string(1, i);
        }
        for o in &self.outputs {
            w.string(2, o);
        }
        w.string(3, &self.name);
        w.string(4, &self.op_type);
        for a in &self.attributes {
            w.message(5, |m| a.encode(m));
        }
    }
}

/// A computation graph (`GraphProto`). Nodes must be in topological order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Graph {
    /// Graph name.
    pub name: String,
    /// Nodes, topologically sorted.
    pub nodes: Vec<Node>,
    /// Constant tensors. Since IR version 4 they need not be graph inputs.
    pub initializers: Vec<Tensor>,
    /// Graph inputs (runtime-fed tensors only).
    pub inputs: Vec<ValueInfo>,
    /// Graph outputs.
    pub outputs: Vec<ValueInfo>,
}

impl Graph {
    fn encode(&self, w: &mut ProtoWriter) {
        // GraphProto: node 1, name 2, initializer 5, input 11, output 12.
        for n in &self.nodes {
            w.message(1, |m| n.encode(m));
        }
        w.string(2, &self.name);
        for t in &self.initializers {
            w.message(5, |m| t.encode(m));
        }
        for i in &self.inputs {
            w.message(11, |m| i.encode(m));
        }
        for o in &self.outputs {
            w.message(12, |m| o.encode(m));
        }
    }
}

/// A whole model (`ModelProto`).
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// ONNX IR version (8 pairs with opsets up to 18 and is read by every
    /// ONNX Runtime since 1.10).
    pub ir_version: i64,
    /// Operator sets: (domain, version); "" is the default ONNX domain.
    pub opsets: Vec<(String, i64)>,
    /// Producer name.
    pub producer_name: String,
    /// Producer version.
    pub producer_version: String,
    /// Free-text description.
    pub doc_string: String,
    /// The graph.
    pub graph: Graph,
}

impl Model {
    /// A model with IR version 8 and the default domain at `opset`.
    pub fn new(graph: Graph, opset: i64, producer_name: &str) -> Self {
        Self {
            ir_version: 8,
            opsets: vec![(String::new(), opset)],
            producer_name: producer_name.to_owned(),
            producer_version: env!("CARGO_PKG_VERSION").to_owned(),
            doc_string: String::new(),
            graph,
        }
    }

    /// Serialises the model to ONNX protobuf bytes.
    pub fn encode(&self) -> Vec<u8> {
        // ModelProto: ir_version 1, producer_name 2, producer_version 3,
        // doc_string 6, graph 7, opset_import 8 (domain 1, version 2).
        let mut w = ProtoWriter::new();
        w.int64(1, self.ir_version);
        for (domain, version) in &self.opsets {
            w.message(8, |m| {
                m.string(1, domain);
                m.int64(2, *version);
            });
        }
        w.string(2, &self.producer_name);
        w.string(3, &self.producer_version);
        if !self.doc_string.is_empty() {
            w.string(6, &self.doc_string);
        }
        w.message(7, |m| self.graph.encode(m));
        w.into_bytes()
    }
}
