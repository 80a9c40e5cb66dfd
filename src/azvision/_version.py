"""The installed distribution's version, read once from its metadata (pyproject.toml is the source).

Example:
    >>> from azvision._version import __version__
    >>> __version__.count(".") >= 1
    True
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["__version__"]

try:
    __version__: str = version("azvision")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"
