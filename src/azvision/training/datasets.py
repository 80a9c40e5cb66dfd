"""Where `Dataset` lived before it moved to the core: `azvision.datasets` (also `azvision.Dataset`).

Example:
    >>> from azvision.training.datasets import Dataset
    >>> import azvision.datasets
    >>> Dataset is azvision.datasets.Dataset
    True
"""

from __future__ import annotations

from ..datasets import Dataset, DatasetItem, SkippedFile

__all__ = ["Dataset", "DatasetItem", "SkippedFile"]
