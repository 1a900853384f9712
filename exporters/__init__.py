"""Export room: PyTorch to ONNX export, validation, quantization and audits."""
