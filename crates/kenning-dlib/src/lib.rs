//! dlib model files in Rust: the serialization reader, the 5-point shape predictor, dlib-exact face chips and the ResNet-to-ONNX converter.
