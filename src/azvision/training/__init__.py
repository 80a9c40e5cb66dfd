"""Custom Vision training: from a folder of labelled images to a published, exported model.

Example:
    >>> from azvision.training import CustomVisionTrainer, Dataset  # doctest: +SKIP
    >>> with CustomVisionTrainer() as trainer:  # doctest: +SKIP
    ...     trainer.train_from_folder(Dataset.from_folder("flowers/"), project="flowers", publish_name="prod")
"""

from __future__ import annotations

from ..datasets import Dataset
from ._export_models import DatasetExport, ExportedImage, ExportedModel, ExportedRegion, NotExported
from ._gate import Contender, RetrainResult
from ._review import NONE_OF_THESE, AcceptResult, FailedDecision, ReviewItem
from .custom_vision import CustomVisionTrainer, TrainingJob
from .models import (
    ExportInfo,
    IterationInfo,
    IterationPerformance,
    ProjectInfo,
    TagPerformance,
    TrainResult,
    UploadReport,
)

__all__ = [
    "NONE_OF_THESE",
    "AcceptResult",
    "Contender",
    "CustomVisionTrainer",
    "Dataset",
    "DatasetExport",
    "ExportInfo",
    "ExportedImage",
    "ExportedModel",
    "ExportedRegion",
    "FailedDecision",
    "IterationInfo",
    "IterationPerformance",
    "NotExported",
    "ProjectInfo",
    "RetrainResult",
    "ReviewItem",
    "TagPerformance",
    "TrainResult",
    "TrainingJob",
    "UploadReport",
]
