"""Typed records the front-ends produce and the rules read; imports no parser (no libcst, onnx, torch)."""
