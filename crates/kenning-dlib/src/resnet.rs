//! `dlib_face_recognition_resnet_model_v1.dat`: the parser and the
//! converter to an ONNX model that ONNX Runtime can run.
//!
//! dlib serializes its network as nested C++ wrapper objects and records no
//! topology, so the architecture (dlib's `anet_type`, a 29-conv ResNet) is
//! hard-coded here and the file is checked against it record by record:
//! first a run of wrapper version numbers from the loss down to the input,
//! then the input layer, then each layer's detail record from the stem conv
//! up to the fc layer.

use std::collections::HashMap;

use kenning_onnx::{Attribute, DataType, Dim, Graph, Model, Node, Tensor, ValueInfo};

use crate::serialize::{Reader, Tensor as DlibTensor};
use crate::DlibError;

/// Name of the ONNX input: float [N, 3, 150, 150], RGB planes, already
/// `(pixel - mean[c]) / 256`.
pub const INPUT_NAME: &str = "input";
/// Name of the ONNX output: float [N, 128], the raw descriptor (no L2
/// normalisation, as dlib).
pub const OUTPUT_NAME: &str = "embedding";

/// dlib's `input_rgb_image_sized` layer.
#[derive(Debug, Clone, PartialEq)]
pub struct InputLayer {
    /// Per-channel means subtracted from R, G, B (then divided by 256).
    pub means: [f32; 3],
    /// Input rows.
    pub rows: usize,
    /// Input columns.
    pub cols: usize,
}

/// One layer (or tag/skip wrapper) of the network, bottom-up.
#[derive(Debug, Clone, PartialEq)]
pub enum Layer {
    /// Convolution with bias (dlib `con_`): cross-correlation, OIHW weights.
    Conv {
        /// Output channels.
        filters: usize,
        /// Input channels.
        channels: usize,
        /// Kernel (rows, cols).
        kernel: (usize, usize),
        /// Stride (y, x).
        stride: (usize, usize),
        /// Zero padding (y, x) on both sides.
        pad: (usize, usize),
        /// `filters * channels * kh * kw` weights, OIHW row-major.
        weights: Vec<f32>,
        /// `filters` biases.
        bias: Vec<f32>,
    },
    /// Per-channel affine (folded batch norm): y = gamma[c] * x + beta[c].
    Affine {
        /// Scales.
        gamma: Vec<f32>,
        /// Offsets.
        beta: Vec<f32>,
    },
    /// ReLU.
    Relu,
    /// Max pooling.
    MaxPool {
        /// Window (rows, cols).
        kernel: (usize, usize),
        /// Stride (y, x).
        stride: (usize, usize),
        /// Padding (y, x).
        pad: (usize, usize),
    },
    /// Average pooling; a (0, 0) window means the whole input.
    AvgPool {
        /// Window (rows, cols); 0 means the input's size.
        kernel: (usize, usize),
        /// Stride (y, x).
        stride: (usize, usize),
        /// Padding (y, x).
        pad: (usize, usize),
    },
    /// Adds the output of tag `tag`, zero-extending the smaller operand at
    /// the end of each axis when the shapes differ (dlib `add_prev`).
    AddPrev {
        /// The tag (1 or 2).
        tag: u8,
    },
    /// Records the current output under tag `id` (dlib `tag1`/`tag2`).
    Tag {
        /// Tag number.
        id: u8,
    },
    /// Replaces the current output by tag `tag`'s (dlib `skip1`).
    Skip {
        /// Tag number.
        tag: u8,
    },
    /// Fully connected layer without bias: out[o] = sum_i x[i] * w[i][o].
    Fc {
        /// Input features.
        inputs: usize,
        /// Output features.
        outputs: usize,
        /// `inputs * outputs` weights, input-major.
        weights: Vec<f32>,
    },
}

/// The parsed network.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// The input layer.
    pub input: InputLayer,
    /// Layers from the input up to the fc layer.
    pub layers: Vec<Layer>,
    /// loss_metric margin (training only).
    pub loss_margin: f64,
    /// loss_metric distance threshold (0.6: face_recognition's tolerance).
    pub loss_threshold: f64,
}

/// The converted model and what a caller needs to feed it.
#[derive(Debug, Clone, PartialEq)]
pub struct ResnetOnnx {
    /// ONNX model bytes (opset 13): input [`INPUT_NAME`], output [`OUTPUT_NAME`].
    pub model: Vec<u8>,
    /// R, G, B means to subtract before dividing by 256.
    pub means: [f32; 3],
    /// Side of the square input chip (150).
    pub chip_size: u32,
}

/// The expected record at each position, bottom-up.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Conv {
        filters: usize,
        kernel: usize,
        stride: usize,
    },
    Affine,
    Relu,
    MaxPool,
    AvgPool,
    AddPrev(u8),
    Tag(u8),
    Skip(u8),
    Fc,
}

impl Expect {
    fn is_wrapper_only(self) -> bool {
        matches!(self, Expect::Tag(_) | Expect::Skip(_))
    }
}

/// dlib's face recognition network, bottom-up (input to fc).
fn architecture() -> Vec<Expect> {
    use Expect::*;
    let mut v = vec![
        Conv {
            filters: 32,
            kernel: 7,
            stride: 2,
        },
        Affine,
        Relu,
        MaxPool,
    ];
    // ares(N) = relu(add_prev1(block(N, stride 1, tag1(x)))).
    let ares = |v: &mut Vec<Expect>, n| {
        v.extend([
            Tag(1),
            Conv {
                filters: n,
                kernel: 3,
                stride: 1,
            },
            Affine,
            Relu,
        ]);
        v.extend([
            Conv {
                filters: n,
                kernel: 3,
                stride: 1,
            },
            Affine,
            AddPrev(1),
            Relu,
        ]);
    };
    // ares_down(N) = relu(add_prev2(avg_pool(skip1(tag2(block(N, stride 2, tag1(x))))))).
    let ares_down = |v: &mut Vec<Expect>, n| {
        v.extend([
            Tag(1),
            Conv {
                filters: n,
                kernel: 3,
                stride: 2,
            },
            Affine,
            Relu,
        ]);
        v.extend([
            Conv {
                filters: n,
                kernel: 3,
                stride: 1,
            },
            Affine,
            Tag(2),
            Skip(1),
            AvgPool,
            AddPrev(2),
            Relu,
        ]);
    };
    for _ in 0..3 {
        ares(&mut v, 32);
    }
    ares_down(&mut v, 64);
    for _ in 0..3 {
        ares(&mut v, 64);
    }
    ares_down(&mut v, 128);
    for _ in 0..2 {
        ares(&mut v, 128);
    }
    ares_down(&mut v, 256);
    for _ in 0..2 {
        ares(&mut v, 256);
    }
    ares_down(&mut v, 256);
    v.push(AvgPool); // avg_pool_everything
    v.push(Fc);
    v
}

fn expect_tag(r: &mut Reader<'_>, expected: &[&str]) -> Result<String, DlibError> {
    let offset = r.offset();
    let found = r.read_string()?;
    if expected.contains(&found.as_str()) {
        Ok(found)
    } else {
        Err(DlibError::UnexpectedTag {
            offset,
            expected: expected.join(" or "),
            found,
        })
    }
}

fn invalid(offset: usize, what: impl Into<String>) -> DlibError {
    DlibError::Invalid {
        offset,
        what: what.into(),
    }
}

/// A pooling window: (kernel, stride, pad), each (y, x).
type Window = ((usize, usize), (usize, usize), (usize, usize));

fn read_window(r: &mut Reader<'_>) -> Result<Window, DlibError> {
    let kernel = (r.read_size_signed()?, r.read_size_signed()?);
    let stride = (r.read_size_signed()?, r.read_size_signed()?);
    let pad = (r.read_size_signed()?, r.read_size_signed()?);
    Ok((kernel, stride, pad))
}

/// Parses the network file and checks it against dlib's architecture.
pub fn parse(dat: &[u8]) -> Result<Network, DlibError> {
    let arch = architecture();
    let mut r = Reader::new(dat);
    r.expect_version(1, "loss layer")?;
    expect_tag(&mut r, &["loss_metric_2"])?;
    let loss_margin = r.read_f64()?;
    let loss_threshold = r.read_f64()?;

    // Wrapper versions, loss-side first: tag/skip wrappers are 1, layer
    // wrappers 2, and the wrapper whose subnet is the input layer is 3.
    for (i, e) in arch.iter().enumerate().rev() {
        let version = if e.is_wrapper_only() {
            1
        } else if i == 0 {
            3
        } else {
            2
        };
        r.expect_version(
            version,
            if e.is_wrapper_only() {
                "tag/skip wrapper"
            } else {
                "layer wrapper"
            },
        )?;
    }

    expect_tag(&mut r, &["input_rgb_image_sized"])?;
    let means = [r.read_f32()?, r.read_f32()?, r.read_f32()?];
    let input_offset = r.offset();
    let input = InputLayer {
        means,
        rows: r.read_usize()?,
        cols: r.read_usize()?,
    };
    if input.rows == 0 || input.cols == 0 || input.rows > 4096 || input.cols > 4096 {
        return Err(invalid(input_offset, "input size out of range"));
    }

    let mut layers = Vec::with_capacity(arch.len());
    let mut channels = 3usize;
    let mut first_layer = true;
    for e in arch {
        let offset = r.offset();
        let layer = match e {
            Expect::Tag(id) => Layer::Tag { id },
            Expect::Skip(tag) => Layer::Skip { tag },
            Expect::Conv {
                filters,
                kernel,
                stride,
            } => {
                expect_tag(&mut r, &["con_4"])?;
                let params = r.read_tensor()?;
                let num_filters = r.read_size_signed()?;
                let k = (r.read_size_signed()?, r.read_size_signed()?);
                let s = (r.read_size_signed()?, r.read_size_signed()?);
                let p = (r.read_size_signed()?, r.read_size_signed()?);
                let fshape = r.read_alias_tensor()?;
                let bshape = r.read_alias_tensor()?;
                for _ in 0..4 {
                    r.read_f64()?; // learning-rate and weight-decay multipliers
                }
                if num_filters != filters || k != (kernel, kernel) || s != (stride, stride) {
                    return Err(invalid(offset, format!("conv {num_filters}x{k:?}/{s:?} where dlib's network has {filters}x{kernel}/{stride}")));
                }
                if fshape != [filters, channels, kernel, kernel] || bshape != [1, filters, 1, 1] {
                    return Err(invalid(offset, format!("conv filter shape {fshape:?} / bias {bshape:?} for {channels} input channels")));
                }
                let nw = filters * channels * kernel * kernel;
                let mut data = params.data;
                if data.len() != nw + filters {
                    return Err(invalid(
                        offset,
                        format!(
                            "conv has {} parameters, expected {}",
                            data.len(),
                            nw + filters
                        ),
                    ));
                }
                let bias = data.split_off(nw);
                let conv = Layer::Conv {
                    filters,
                    channels,
                    kernel: k,
                    stride: s,
                    pad: p,
                    weights: data,
                    bias,
                };
                channels = filters;
                conv
            }
            Expect::Affine => {
                expect_tag(&mut r, &["affine_"])?;
                let params = r.read_tensor()?;
                let g = r.read_alias_tensor()?;
                let b = r.read_alias_tensor()?;
                let _mode = r.read_i64()?;
                if g != [1, channels, 1, 1] || b != g || params.data.len() != 2 * channels {
                    return Err(invalid(
                        offset,
                        format!("affine shapes {g:?}/{b:?} for {channels} channels"),
                    ));
                }
                let mut gamma = params.data;
                let beta = gamma.split_off(channels);
                Layer::Affine { gamma, beta }
            }
            Expect::Relu => {
                expect_tag(&mut r, &["relu_"])?;
                Layer::Relu
            }
            Expect::MaxPool => {
                expect_tag(&mut r, &["max_pool_2"])?;
                let (kernel, stride, pad) = read_window(&mut r)?;
                Layer::MaxPool {
                    kernel,
                    stride,
                    pad,
                }
            }
            Expect::AvgPool => {
                expect_tag(&mut r, &["avg_pool_2"])?;
                let (kernel, stride, pad) = read_window(&mut r)?;
                Layer::AvgPool {
                    kernel,
                    stride,
                    pad,
                }
            }
            Expect::AddPrev(tag) => {
                expect_tag(&mut r, &["add_prev_"])?;
                Layer::AddPrev { tag }
            }
            Expect::Fc => {
                expect_tag(&mut r, &["fc_2"])?;
                let outputs = r.read_usize()?;
                let inputs = r.read_usize()?;
                let params: DlibTensor = r.read_tensor()?;
                let w = r.read_alias_tensor()?;
                let _b = r.read_alias_tensor()?;
                let bias_mode = r.read_i64()?;
                for _ in 0..4 {
                    r.read_f64()?;
                }
                // bias_mode 1 is FC_NO_BIAS, the only kind this network has.
                if bias_mode != 1
                    || w != [inputs, outputs, 1, 1]
                    || params.data.len() != inputs * outputs
                    || inputs != channels
                {
                    return Err(invalid(offset, format!("fc {inputs}->{outputs} (bias mode {bias_mode}) after {channels} channels")));
                }
                Layer::Fc {
                    inputs,
                    outputs,
                    weights: params.data,
                }
            }
        };
        if !e.is_wrapper_only() {
            // setup_called, gradient_input_is_stale, output_disabled, then
            // x_grad, cached_output and params_grad (or grad_final).
            for _ in 0..3 {
                r.read_bool()?;
            }
            for _ in 0..3 {
                r.read_tensor()?;
            }
            if first_layer {
                r.read_u64()?; // sample_expansion_factor (wrapper version 3)
                first_layer = false;
            }
        }
        layers.push(layer);
    }
    r.expect_eof()?;
    Ok(Network {
        input,
        layers,
        loss_margin,
        loss_threshold,
    })
}

/// Parses the `.dat` file and converts it to ONNX.
pub fn to_onnx(dat: &[u8]) -> Result<ResnetOnnx, DlibError> {
    network_to_onnx(&parse(dat)?)
}

/// Static shape (C, H, W) bookkeeping while emitting nodes.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Shape {
    c: usize,
    h: usize,
    w: usize,
}

struct Builder {
    graph: Graph,
    counter: usize,
}

impl Builder {
    fn fresh(&mut self, prefix: &str) -> String {
        self.counter += 1;
        format!("{prefix}_{}", self.counter)
    }

    fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        out: Option<&str>,
        attrs: Vec<Attribute>,
    ) -> String {
        let name = self.fresh(&op.to_lowercase());
        let output = out.map_or_else(|| name.clone(), str::to_owned);
        let mut n = Node::new(op, &name, inputs, &[&output]);
        n.attributes = attrs;
        self.graph.nodes.push(n);
        output
    }

    fn constant(&mut self, prefix: &str, dims: Vec<i64>, data: Vec<f32>) -> String {
        let name = self.fresh(prefix);
        self.graph
            .initializers
            .push(Tensor::float(&name, dims, data));
        name
    }

    /// Pads `x` with zeros at the end of C, H and W up to `to`.
    fn pad_to(&mut self, x: &str, from: Shape, to: Shape) -> String {
        if from == to {
            return x.to_owned();
        }
        let pads = vec![
            0,
            0,
            0,
            0,
            0,
            (to.c - from.c) as i64,
            (to.h - from.h) as i64,
            (to.w - from.w) as i64,
        ];
        let name = self.fresh("pads");
        self.graph
            .initializers
            .push(Tensor::int64(&name, vec![8], pads));
        self.node(
            "Pad",
            &[x, &name],
            None,
            vec![Attribute::string("mode", "constant")],
        )
    }
}

fn pool_out(input: usize, k: usize, s: usize, p: usize, offset: usize) -> Result<usize, DlibError> {
    if s == 0 || input + 2 * p < k || k == 0 {
        return Err(invalid(
            offset,
            format!("window {k}/stride {s}/pad {p} does not fit an input of {input}"),
        ));
    }
    Ok(1 + (input + 2 * p - k) / s)
}

/// Converts a parsed network to ONNX (opset 13).
///
/// Conv + affine pairs are folded into one Conv (w' = w*gamma,
/// b' = b*gamma + beta, computed in f64), which changes outputs only by
/// ~1e-7. dlib's zero-extending add becomes explicit Pad nodes (zeros at
/// the end of each axis) so that ONNX's Add never broadcasts a 1x1 block
/// over a 2x2 shortcut.
pub fn network_to_onnx(net: &Network) -> Result<ResnetOnnx, DlibError> {
    let mut b = Builder {
        graph: Graph {
            name: "dlib_face_recognition_resnet_model_v1".into(),
            ..Graph::default()
        },
        counter: 0,
    };
    let (rows, cols) = (net.input.rows, net.input.cols);
    b.graph.inputs.push(ValueInfo::new(
        INPUT_NAME,
        DataType::Float,
        vec![
            Dim::param("N"),
            Dim::Fixed(3),
            Dim::Fixed(rows as i64),
            Dim::Fixed(cols as i64),
        ],
    ));
    let mut cur = INPUT_NAME.to_owned();
    let mut shape = Shape {
        c: 3,
        h: rows,
        w: cols,
    };
    let mut tags: HashMap<u8, (String, Shape)> = HashMap::new();
    let mut out_features = None;
    let layers = &net.layers;
    let mut i = 0;
    while i < layers.len() {
        match &layers[i] {
            Layer::Conv {
                filters,
                channels,
                kernel,
                stride,
                pad,
                weights,
                bias,
            } => {
                if *channels != shape.c {
                    return Err(invalid(
                        0,
                        format!("conv expects {channels} channels, gets {}", shape.c),
                    ));
                }
                let (mut w, mut bs) = (weights.clone(), bias.clone());
                if let Some(Layer::Affine { gamma, beta }) = layers.get(i + 1) {
                    let per = w.len() / filters;
                    for o in 0..*filters {
                        let g = f64::from(gamma[o]);
                        for v in &mut w[o * per..(o + 1) * per] {
                            *v = (f64::from(*v) * g) as f32;
                        }
                        bs[o] = (f64::from(bs[o]) * g + f64::from(beta[o])) as f32;
                    }
                    i += 1;
                }
                let wn = b.constant(
                    "conv_w",
                    vec![
                        *filters as i64,
                        *channels as i64,
                        kernel.0 as i64,
                        kernel.1 as i64,
                    ],
                    w,
                );
                let bn = b.constant("conv_b", vec![*filters as i64], bs);
                let attrs = vec![
                    Attribute::ints("kernel_shape", &[kernel.0 as i64, kernel.1 as i64]),
                    Attribute::ints("strides", &[stride.0 as i64, stride.1 as i64]),
                    Attribute::ints(
                        "pads",
                        &[pad.0 as i64, pad.1 as i64, pad.0 as i64, pad.1 as i64],
                    ),
                ];
                cur = b.node("Conv", &[&cur, &wn, &bn], None, attrs);
                shape = Shape {
                    c: *filters,
                    h: pool_out(shape.h, kernel.0, stride.0, pad.0, 0)?,
                    w: pool_out(shape.w, kernel.1, stride.1, pad.1, 0)?,
                };
            }
            Layer::Affine { gamma, beta } => {
                let c = gamma.len() as i64;
                let g = b.constant("affine_g", vec![1, c, 1, 1], gamma.clone());
                let be = b.constant("affine_b", vec![1, c, 1, 1], beta.clone());
                let m = b.node("Mul", &[&cur, &g], None, vec![]);
                cur = b.node("Add", &[&m, &be], None, vec![]);
            }
            Layer::Relu => cur = b.node("Relu", &[&cur], None, vec![]),
            Layer::MaxPool {
                kernel,
                stride,
                pad,
            }
            | Layer::AvgPool {
                kernel,
                stride,
                pad,
            } => {
                let is_max = matches!(layers[i], Layer::MaxPool { .. });
                let k = (
                    if kernel.0 == 0 { shape.h } else { kernel.0 },
                    if kernel.1 == 0 { shape.w } else { kernel.1 },
                );
                if !is_max && k == (shape.h, shape.w) && *pad == (0, 0) {
                    cur = b.node("GlobalAveragePool", &[&cur], None, vec![]);
                    shape = Shape {
                        c: shape.c,
                        h: 1,
                        w: 1,
                    };
                } else {
                    if *pad != (0, 0) {
                        // dlib clips padded windows (average over the valid
                        // part); this network never pads a pool.
                        return Err(invalid(0, "padded pooling is not supported"));
                    }
                    let attrs = vec![
                        Attribute::ints("kernel_shape", &[k.0 as i64, k.1 as i64]),
                        Attribute::ints("strides", &[stride.0 as i64, stride.1 as i64]),
                    ];
                    cur = b.node(
                        if is_max { "MaxPool" } else { "AveragePool" },
                        &[&cur],
                        None,
                        attrs,
                    );
                    shape = Shape {
                        c: shape.c,
                        h: pool_out(shape.h, k.0, stride.0, 0, 0)?,
                        w: pool_out(shape.w, k.1, stride.1, 0, 0)?,
                    };
                }
            }
            Layer::Tag { id } => {
                tags.insert(*id, (cur.clone(), shape));
            }
            Layer::Skip { tag } => {
                let (n, s) = tags
                    .get(tag)
                    .cloned()
                    .ok_or_else(|| invalid(0, format!("skip to missing tag {tag}")))?;
                cur = n;
                shape = s;
            }
            Layer::AddPrev { tag } => {
                let (other, os) = tags
                    .get(tag)
                    .cloned()
                    .ok_or_else(|| invalid(0, format!("add_prev of missing tag {tag}")))?;
                let to = Shape {
                    c: shape.c.max(os.c),
                    h: shape.h.max(os.h),
                    w: shape.w.max(os.w),
                };
                let a = b.pad_to(&cur, shape, to);
                let o = b.pad_to(&other, os, to);
                cur = b.node("Add", &[&a, &o], None, vec![]);
                shape = to;
            }
            Layer::Fc {
                inputs,
                outputs,
                weights,
            } => {
                if shape.c * shape.h * shape.w != *inputs {
                    return Err(invalid(
                        0,
                        format!("fc of {inputs} inputs after a {shape:?} tensor"),
                    ));
                }
                let flat = b.node("Flatten", &[&cur], None, vec![Attribute::int("axis", 1)]);
                let w = b.constant(
                    "fc_w",
                    vec![*inputs as i64, *outputs as i64],
                    weights.clone(),
                );
                let last = i + 1 == layers.len();
                cur = b.node("MatMul", &[&flat, &w], last.then_some(OUTPUT_NAME), vec![]);
                out_features = Some(*outputs);
            }
        }
        i += 1;
    }
    let Some(features) = out_features.filter(|_| cur == OUTPUT_NAME) else {
        return Err(invalid(0, "the network does not end with its fc layer"));
    };
    b.graph.outputs.push(ValueInfo::new(
        OUTPUT_NAME,
        DataType::Float,
        vec![Dim::param("N"), Dim::Fixed(features as i64)],
    ));
    let mut model = Model::new(b.graph, 13, "kenning-dlib");
    model.doc_string =
        "dlib_face_recognition_resnet_model_v1 converted by kenning-dlib; input (RGB - mean)/256"
            .into();
    Ok(ResnetOnnx {
        model: model.encode(),
        means: net.input.means,
        chip_size: u32::try_from(net.input.rows).unwrap_or(u32::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architecture_counts_match_the_file_layout() {
        let a = architecture();
        let wrappers = a.iter().filter(|e| e.is_wrapper_only()).count();
        assert_eq!((a.len(), wrappers), (130, 22));
        assert_eq!(
            a.iter()
                .filter(|e| matches!(e, Expect::Conv { .. }))
                .count(),
            29
        );
        assert_eq!(a.iter().filter(|e| matches!(e, Expect::AvgPool)).count(), 5);
    }

    #[test]
    fn malformed_files_are_errors() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[0x01, 0x01, 0x01, 0x03, b'a', b'b', b'c']).is_err());
        assert!(to_onnx(&[0x01, 0x01]).is_err());
    }
}
