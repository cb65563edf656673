"""Training-time PyTorch models, demo-avatar training and ONNX export (needs the export extra)."""
