"""The ONNX Runtime side: the artifact (an ``.onnx`` read once), providers and plugin
execution providers, session configuration and sessions, the measured provider choice,
deployment configs, feed validation, execution, and the provider report.

Layers, bottom to top (an import-linter contract in pyproject.toml keeps them, so no import
circle can form): the artifact, feed validation and the onnxruntime import
(``onnxruntime_import``); plugin EPs; the provider registry (``providers``); session
configuration (``session_config``); deployment configs (``deploy``); the measured choice;
sessions (``session``); execution and the provider report, with its probes, on top.
"""
