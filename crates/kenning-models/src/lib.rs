//! Model loading on ONNX Runtime: the detector, landmarks, recognisers with their manifests, calibration and the face pipeline.
