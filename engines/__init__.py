"""ONNX -> FP16 TensorRT engine build, sidecars and the engine cache."""
