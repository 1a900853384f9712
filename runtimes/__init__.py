"""Runtime room: ONNX Runtime execution providers, sessions and streaming state."""
