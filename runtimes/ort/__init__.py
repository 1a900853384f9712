"""The ONNX Runtime side: the artifact (an ``.onnx`` read once), providers and plugin
execution providers, session configuration and sessions, the measured provider choice,
deployment configs, feed validation, execution, and the provider report.

Layers, bottom to top (a contract in pyproject.toml keeps them): artifact, feeds and the
onnxruntime import; plugin EPs; the provider registry; session configuration; deployment
configs; the measured choice; sessions; execution and the provider report.
"""
