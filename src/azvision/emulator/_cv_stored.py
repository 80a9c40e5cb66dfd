"""Stored predictions of the emulated Custom Vision resource, as the service keeps them.

The service keeps every prediction made without ``/nostore`` (and every quick test made without
``store=false``): the image, the iteration that answered and the answer. They are what the portal's
"Predictions" tab lists (``predictions/query``), what ``images/predictions`` turns into training
images without a second upload, and what ``DELETE predictions`` removes. Here each project's
predictions live in memory, with the images (and records) as blobs of the project (so a ``data_dir``
keeps them across restarts, and deleting the project deletes them).

Example::

    stored = PredictionStore(store)
    record = stored.add(iteration, image_bytes, body, application=None)
    stored.records(iteration.project_id)[record.id].predictions[0]["tagName"]
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from azvision.emulator._cv_store import CustomVisionStore, IterationRecord

__all__ = ["PredictionStore", "StoredPrediction", "stored_prediction_json"]

#: Stored predictions kept per project (the oldest go first).
MAX_STORED = 2000


@dataclass
class StoredPrediction:
    """One stored prediction: its answer (``predictions``, the wire dicts, best first) and, once it
    has been made a training image, that image's id."""

    id: str
    project_id: str
    iteration_id: str
    domain_id: str
    created: str
    predictions: list[dict[str, Any]] = field(default_factory=list)
    application: str | None = None
    image_id: str | None = None

    @property
    def blob(self) -> str:
        return f"predictions/{self.id}"

    def probability(self, tag_id: str) -> float:
        """The answer's probability for ``tag_id`` (0 when the answer does not list the tag)."""
        return max(
            (float(p["probability"]) for p in self.predictions if str(p.get("tagId")) == tag_id),
            default=0.0,
        )

    @property
    def top(self) -> float:
        return max((float(p["probability"]) for p in self.predictions), default=0.0)


class PredictionStore:
    """The stored predictions of every project, kept under the resource's lock (``store.lock``).

    Each prediction is two blobs of its project: the image and, with a ``data_dir``, its record as JSON
    (nothing is rewritten as the store grows). At most `MAX_STORED` a project are kept, the oldest
    dropped first — the emulator's stand-in for the service's 30-day expiry, so that a long-running
    emulator does not grow without bound.
    """

    def __init__(self, store: CustomVisionStore) -> None:
        self.store = store
        self._projects: dict[str, dict[str, StoredPrediction]] = {}

    def reset(self) -> None:
        self._projects.clear()

    def records(self, project_id: str) -> dict[str, StoredPrediction]:
        """The project's stored predictions by id, oldest first (loaded on first use)."""
        with self.store.lock:
            if project_id not in self.store.projects:
                self._projects.pop(project_id, None)
                return {}
            loaded = self._projects.get(project_id)
            if loaded is None:
                loaded = {record.id: record for record in self._load(project_id)}
                self._projects[project_id] = loaded
            return loaded

    def _load(self, project_id: str) -> list[StoredPrediction]:
        root = self.store.root
        folder = root / "blobs" / project_id / "predictions" if root is not None else None
        if folder is None or not folder.is_dir():
            return []
        found = [StoredPrediction(**json.loads(path.read_text("utf-8"))) for path in folder.glob("*.json")]
        return sorted(found, key=lambda record: record.created)

    def add(
        self, iteration: IterationRecord, data: bytes, body: dict[str, Any], *, application: str | None
    ) -> StoredPrediction:
        """Keep the image and the ``ImagePrediction`` body it was answered with."""
        record = StoredPrediction(
            id=str(body["id"]),
            project_id=iteration.project_id,
            iteration_id=iteration.id,
            domain_id=iteration.domain_id,
            created=str(body["created"]),
            predictions=[dict(p) for p in body["predictions"]],
            application=application,
        )
        with self.store.lock:
            records = self.records(iteration.project_id)
            if iteration.project_id not in self.store.projects:
                return record  # the project was deleted while the model ran
            self.store.put_blob(record.project_id, record.blob, data)
            records[record.id] = record
            self.save(record)
            while len(records) > MAX_STORED:
                self.delete(record.project_id, [next(iter(records))])
        return record

    def image(self, record: StoredPrediction) -> bytes:
        """The stored image's bytes (``KeyError`` when it is gone)."""
        return self.store.get_blob(record.project_id, record.blob)

    def delete(self, project_id: str, ids: list[str]) -> None:
        with self.store.lock:
            records = self.records(project_id)
            for prediction_id in ids:
                record = records.pop(prediction_id, None)
                if record is not None:
                    self.store.delete_blob(project_id, record.blob)
                    self.store.delete_blob(project_id, f"{record.blob}.json")

    def save(self, record: StoredPrediction) -> None:
        """Persist one record (with a ``data_dir``; in memory the record itself is the state)."""
        if self.store.root is not None:
            self.store.put_blob(record.project_id, f"{record.blob}.json", json.dumps(asdict(record)).encode())


def stored_prediction_json(record: StoredPrediction, blob_base: str) -> dict[str, Any]:
    """The service's ``StoredImagePrediction`` shape."""
    uri = f"{blob_base}/{record.project_id}/{record.blob}"
    return {
        "resizedImageUri": uri,
        "thumbnailUri": uri,
        "originalImageUri": uri,
        "domain": record.domain_id,
        "id": record.id,
        "project": record.project_id,
        "iteration": record.iteration_id,
        "created": record.created,
        "predictions": record.predictions,
    }
