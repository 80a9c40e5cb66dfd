"""The ``azvision`` command line: ``classify``, ``evaluate``, ``compare``, ``emulator``, ``backends``.

Example (shell)::

    azvision classify photos/ --backend onnx --model-path export.zip --output results.jsonl
"""

from __future__ import annotations

from .app import app, main

__all__ = ["app", "main"]
