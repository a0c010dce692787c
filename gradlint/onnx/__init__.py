"""The ONNX front-end: safe loading, the GraphIndex, lowering to the model IR."""

from __future__ import annotations

from pathlib import Path


def extract_onnx(path: Path, display: str):
    from gradlint.api import FileFacts

    # Until the ONNX front-end lands, say so instead of guessing (issue: ONNX front-end).
    return FileFacts(path=display, kind="onnx", skipped="ONNX models are not supported yet")
