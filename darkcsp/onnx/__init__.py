"""Lowering of a darkcsp graph (with weights) to ONNX."""
