//! A minimal, dependency-free ONNX protobuf toolkit.
//!
//! - [`wire`]: protobuf wire-format writer and field reader;
//! - [`model`]: a small graph builder (model, graph, nodes, attributes,
//!   raw-data initializers, inputs/outputs with fixed or symbolic dims);
//! - [`inspect()`]: decodes a model's inputs, outputs, nodes and initializers;
//! - [`make_dynamic_input`]: patches a fixed-size image model (CenterFace)
//!   to accept any batch and image size;
//! - [`fold_for_cpu`]: folds constant `DequantizeLinear` weights into fp32
//!   initializers (block-quantized SFace) and rewrites `PRelu` into operators
//!   ONNX Runtime fuses on a CPU, and runs a large last `Gemm` on int8
//!   weights ([`fold_exact`]: all but that); [`cpu_form`] marks its output with the
//!   converter version so it can be written once at set-up (the
//!   `kenning-onnx cpu-form` command);
//! - [`metadata`] and [`with_metadata`]: a model's string metadata.
//!
//! Kenning builds the dlib ResNet as ONNX at load time and patches
//! CenterFace, so neither needs Python's `onnx` package.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod dynamic;
mod fold;
mod inspect;
mod metadata;
pub mod model;
pub mod wire;

pub use dynamic::make_dynamic_input;
pub use fold::{
    cpu_form, fold_exact, fold_for_cpu, is_cpu_form_of, FoldReport, CPU_FORM_KEY,
    CPU_FORM_SOURCE_BYTES, CPU_FORM_VERSION,
};
pub use inspect::{inspect, InitializerSummary, ModelSummary, NodeSummary, ValueInfoSummary};
pub use metadata::{metadata, with_metadata};
pub use model::{
    Attribute, AttributeValue, DataType, Dim, Graph, Model, Node, Tensor, TensorData, ValueInfo,
};

/// Errors from reading or rewriting ONNX protobuf bytes.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum OnnxError {
    /// The bytes end in the middle of a field.
    #[error("ONNX protobuf truncated at byte {offset}")]
    Truncated {
        /// Offset of the field that runs past the end.
        offset: usize,
    },
    /// A varint longer than ten bytes or overflowing 64 bits.
    #[error("malformed varint at byte {offset}")]
    BadVarint {
        /// Offset of the varint.
        offset: usize,
    },
    /// Field number 0 or out of range.
    #[error("invalid protobuf field number at byte {offset}")]
    BadFieldNumber {
        /// Offset of the field key.
        offset: usize,
    },
    /// Wire types 3, 4 (groups), 6 and 7 do not occur in ONNX.
    #[error("unsupported protobuf wire type {wire_type} at byte {offset}")]
    UnsupportedWireType {
        /// The wire type found.
        wire_type: u8,
        /// Offset of the field key.
        offset: usize,
    },
    /// A known field has the wrong wire type.
    #[error("field {field} has an unexpected wire type")]
    UnexpectedWireType {
        /// Which field.
        field: &'static str,
    },
    /// A string field that is not UTF-8.
    #[error("field {field} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which field.
        field: &'static str,
    },
    /// The model has no graph.
    #[error("the ONNX model has no graph")]
    MissingGraph,
    /// Structurally valid protobuf that is not the expected model.
    #[error("unexpected ONNX model: {0}")]
    Invalid(String),
}
