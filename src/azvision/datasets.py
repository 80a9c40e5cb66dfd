"""Labelled image data sets: a folder per label, or a CSV/JSONL manifest for multilabel.

Training (`azvision.training`) and evaluation (`azvision.evaluation`) both read them; this module needs
neither, so loading a data set never imports the trainer's Azure SDK.

Every file the loader does not take is reported in `Dataset.skipped` with its reason (not an
image, unreadable, hidden, outside a label folder, listed twice…); nothing is dropped silently.
Files are recognised by their content, not their extension. Custom Vision takes JPEG, PNG, GIF and BMP;
other formats Pillow can read (WebP, TIFF…) are kept and converted to PNG when uploaded.

Example:
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for label in ("cat", "dog"):
    ...     (root / label).mkdir()
    ...     for i in range(5):
    ...         Image.new("RGB", (32, 32), (i * 40, 0, 0)).save(root / label / f"{i}.png")
    >>> (root / "cat" / "notes.txt").write_text("hello")
    5
    >>> data = Dataset.from_folder(root)
    >>> len(data), data.labels, [s.reason for s in data.skipped]
    (10, ('cat', 'dog'), ['not an image: this is text, not a picture'])
    >>> train, test = data.split(0.2, seed=1)
    >>> len(train), len(test)
    (8, 2)
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from ._dataset_formats import Row, csv_rows, jsonl_rows
from ._errors import ConfigurationError

__all__ = ["Dataset", "DatasetItem", "SkippedFile"]


class SkippedFile(BaseModel):
    """A file a data set did not take, and why (unsupported, unreadable, hidden, no label…).

    Example:
        >>> SkippedFile(path="cats/notes.txt", reason="not an image").reason
        'not an image'
    """

    model_config = ConfigDict(frozen=True)

    path: str
    reason: str


@dataclass(frozen=True)
class DatasetItem:
    """One image file and its labels (exactly one for a multiclass data set).

    Example:
        >>> DatasetItem(Path("cat/1.png"), ("cat",)).label
        'cat'
    """

    path: Path
    labels: tuple[str, ...]

    @property
    def label(self) -> str:
        """The first label (the only one in a multiclass data set)."""
        return self.labels[0]


@dataclass(frozen=True)
class Dataset:
    """Images with labels, plus the files that were not taken (`skipped`, with reasons).

    Build one with `from_folder` (one sub-folder per label, multiclass), `from_manifest`
    (CSV or JSONL listing each image's labels, for multilabel), `from_automl_jsonl` (Azure ML
    AutoML-for-images JSONL or MLTable) or `from_coco`; `split` makes a deterministic,
    stratified train/test split.

    Example:
        >>> data = Dataset(items=(DatasetItem(Path("a.png"), ("cat",)),))
        >>> data.counts()
        {'cat': 1}
    """

    items: tuple[DatasetItem, ...]
    skipped: tuple[SkippedFile, ...] = ()
    #: Folder paths are shown relative to (and the split is keyed on), when known.
    root: Path | None = None
    multilabel: bool = False

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[DatasetItem]:
        return iter(self.items)

    @property
    def labels(self) -> tuple[str, ...]:
        """Every label used, sorted."""
        return tuple(sorted({label for item in self.items for label in item.labels}))

    def counts(self) -> dict[str, int]:
        """Images per label, in label order.

        Example:
            >>> Dataset(items=(DatasetItem(Path("a.png"), ("cat", "pet")),), multilabel=True).counts()
            {'cat': 1, 'pet': 1}
        """
        counter = Counter(label for item in self.items for label in item.labels)
        return {label: counter[label] for label in self.labels}

    def display_name(self, item: DatasetItem) -> str:
        """The item's path relative to `root` (POSIX separators), or as given without a root."""
        return _relative(item.path, self.root)

    def split(self, test_fraction: float = 0.2, *, seed: int = 0) -> tuple[Dataset, Dataset]:
        """A stratified, seeded, deterministic ``(train, test)`` split.

        Each label (each label combination, for multilabel) contributes ``round(n * test_fraction)``
        images to ``test`` — at least one and never all of them when it has two or more. Which images go
        is decided by a hash of ``seed`` and each file's relative path, so the split is the same on every
        machine and a file keeps its side when others are added.

        Example:
            >>> items = tuple(DatasetItem(Path(f"{c}/{i}.png"), (c,)) for c in "ab" for i in range(10))
            >>> train, test = Dataset(items=items).split(0.3, seed=7)
            >>> test.counts()
            {'a': 3, 'b': 3}
        """
        if not 0.0 <= test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
        groups: dict[tuple[str, ...], list[DatasetItem]] = defaultdict(list)
        for item in self.items:
            groups[tuple(sorted(item.labels))].append(item)
        test_ids: set[int] = set()
        for members in groups.values():
            n = len(members)
            n_test = round(n * test_fraction)
            if test_fraction > 0 and n >= 2:
                n_test = min(max(n_test, 1), n - 1)
            ranked = sorted(members, key=lambda it: _split_key(seed, self.display_name(it)))
            test_ids.update(id(it) for it in ranked[:n_test])
        train = tuple(it for it in self.items if id(it) not in test_ids)
        test = tuple(it for it in self.items if id(it) in test_ids)
        return (
            Dataset(items=train, root=self.root, multilabel=self.multilabel),
            Dataset(items=test, root=self.root, multilabel=self.multilabel),
        )

    # -- loaders ---------------------------------------------------------------------------------
    @classmethod
    def from_folder(cls, root: str | os.PathLike[str]) -> Dataset:
        """One sub-folder per label; images anywhere below it (nested folders included) get that label.

        Files directly in ``root``, hidden files and folders, and anything that is not a readable image
        are reported in `skipped`. Raises `ConfigurationError` if ``root`` is not a folder.

        Example:
            >>> Dataset.from_folder("/no/such/folder")
            Traceback (most recent call last):
            ...
            azvision._errors.ConfigurationError: the data set folder /no/such/folder does not exist
        """
        base = Path(root)
        if not base.exists():
            raise ConfigurationError(f"the data set folder {base} does not exist")
        if not base.is_dir():
            raise ConfigurationError(
                f"{base} is a file; pass a folder with one sub-folder per label "
                "(or use Dataset.from_manifest for a CSV/JSONL manifest)"
            )
        items: list[DatasetItem] = []
        skipped: list[SkippedFile] = []
        for entry in sorted(base.iterdir()):
            name = _relative(entry, base)
            if entry.name.startswith("."):
                skipped.append(SkippedFile(path=name, reason=f"hidden {_kind(entry)}"))
            elif entry.is_dir():
                for path in _walk(entry, base, skipped):
                    reason = _unreadable_reason(path)
                    if reason is None:
                        items.append(DatasetItem(path, (entry.name,)))
                    else:
                        skipped.append(SkippedFile(path=_relative(path, base), reason=reason))
            else:
                skipped.append(
                    SkippedFile(path=name, reason="not inside a label folder (one sub-folder per label)")
                )
        return cls(items=tuple(items), skipped=tuple(skipped), root=base, multilabel=False)

    @classmethod
    def from_manifest(
        cls,
        manifest: str | os.PathLike[str],
        *,
        root: str | os.PathLike[str] | None = None,
        multilabel: bool | None = None,
    ) -> Dataset:
        """Read a ``.csv`` or ``.jsonl`` manifest: one image per row with its labels.

        CSV needs a header with a ``path`` column (or ``image``/``file``/``filename``) and a ``labels``
        column (or ``label``/``tags``/``tag``) whose labels are separated by ``;``, ``|`` or ``,``. JSONL
        has one object per line: ``{"path": "a.jpg", "labels": ["cat", "indoor"]}`` (a string label
        works too). Relative paths are resolved against ``root`` (default: the manifest's folder).
        ``multilabel=None`` makes the data set multilabel when any image has more than one label.
        Missing files, images without labels, repeated paths and malformed rows go to `skipped`.

        Example:
            >>> import tempfile, pathlib
            >>> folder = pathlib.Path(tempfile.mkdtemp())
            >>> _ = (folder / "m.csv").write_text("path,labels\\nmissing.png,cat;pet\\n")
            >>> Dataset.from_manifest(folder / "m.csv").skipped[0].reason
            'no such file'
        """
        path = Path(manifest)
        if not path.is_file():
            raise ConfigurationError(f"the manifest {path} does not exist or is not a file")
        base = Path(root) if root is not None else path.parent
        suffix = path.suffix.lower()
        if suffix == ".csv":
            rows = csv_rows(path)
        elif suffix in {".jsonl", ".ndjson", ".json"}:
            rows = jsonl_rows(path)
        else:
            raise ConfigurationError(f"unsupported manifest {path.name}: use a .csv or .jsonl file")
        return cls._from_rows(rows, base, multilabel)

    @classmethod
    def from_automl_jsonl(
        cls,
        path: str | os.PathLike[str],
        *,
        root: str | os.PathLike[str] | None = None,
        multilabel: bool | None = None,
    ) -> Dataset:
        """Read an AutoML-for-images JSONL file, or the ``MLTable`` (file or folder) that lists it.

        Multi-class lines (``"label": "cat"``) and multi-label lines (``"label": ["cat", "indoor"]``);
        ``image_url`` is a path relative to the JSONL file's folder (or ``root``). Remote
        (``azureml://``, ``https://``) URLs, missing files and malformed lines go to `skipped`.
        An object-detection file (boxes as labels) is refused: read it with the detection data set.

        Example:
            >>> Dataset.from_automl_jsonl("/no/such/annotations.jsonl")
            Traceback (most recent call last):
            ...
            azvision._errors.ConfigurationError: /no/such/annotations.jsonl does not exist
        """
        from ._dataset_formats import read_automl_jsonl

        records = read_automl_jsonl(path, root=root)
        if any(record.detection for record in records):
            raise ConfigurationError(
                f"{path} labels boxes (object detection): use DetectionDataset.from_automl_jsonl"
            )
        rows = ((r.where, str(r.path or r.image_url), r.labels, r.problem) for r in records)
        base = Path(root) if root is not None else Path(path)
        return cls._from_rows(rows, base if base.is_dir() else base.parent, multilabel)

    @classmethod
    def from_coco(
        cls,
        json_path: str | os.PathLike[str],
        images_dir: str | os.PathLike[str] | None = None,
        *,
        multilabel: bool | None = None,
    ) -> Dataset:
        """A classification data set from a COCO file: each annotation's category labels its image.

        Image paths (``file_name``) resolve against ``images_dir`` (default: the JSON file's folder).

        Example:
            >>> Dataset.from_coco("/no/such/coco.json")
            Traceback (most recent call last):
            ...
            azvision._errors.ConfigurationError: the COCO file /no/such/coco.json does not exist
        """
        from ._dataset_formats import read_coco_labels

        base = Path(images_dir) if images_dir is not None else Path(json_path).parent
        return cls._from_rows(read_coco_labels(json_path, images_dir), base, multilabel)

    @classmethod
    def _from_rows(cls, rows: Iterable[Row], base: Path, multilabel: bool | None) -> Dataset:
        """Items from ``(where, path, labels, problem)`` rows; every row not taken goes to ``skipped``."""
        items: list[DatasetItem] = []
        skipped: list[SkippedFile] = []
        seen: set[Path] = set()
        for where, raw_path, labels, problem in rows:
            shown = raw_path or where
            if problem is not None:
                skipped.append(SkippedFile(path=shown, reason=f"{where}: {problem}"))
                continue
            file = Path(raw_path)
            file = file if file.is_absolute() else base / file
            resolved = file.resolve()
            if resolved in seen:
                skipped.append(SkippedFile(path=shown, reason=f"{where}: listed twice"))
                continue
            seen.add(resolved)
            if not labels:
                skipped.append(SkippedFile(path=shown, reason=f"{where}: no labels"))
                continue
            reason = "no such file" if not file.exists() else _unreadable_reason(file)
            if reason is not None:
                skipped.append(SkippedFile(path=shown, reason=reason))
                continue
            items.append(DatasetItem(file, labels))
        is_multilabel = any(len(it.labels) > 1 for it in items) if multilabel is None else multilabel
        if not is_multilabel:
            for item in items:
                if len(item.labels) > 1:
                    raise ConfigurationError(
                        f"{_relative(item.path, base)} has {len(item.labels)} labels but multilabel=False"
                    )
        return cls(items=tuple(items), skipped=tuple(skipped), root=base, multilabel=is_multilabel)


def _walk(folder: Path, base: Path, skipped: list[SkippedFile]) -> Iterator[Path]:
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        skipped.append(SkippedFile(path=_relative(folder, base), reason=f"unreadable folder: {exc.strerror}"))
        return
    for entry in entries:
        if entry.name.startswith("."):
            skipped.append(SkippedFile(path=_relative(entry, base), reason=f"hidden {_kind(entry)}"))
        elif entry.is_dir():
            yield from _walk(entry, base, skipped)
        else:
            yield entry


def _kind(path: Path) -> str:
    return "folder" if path.is_dir() else "file"


def _unreadable_reason(path: Path) -> str | None:
    """``None`` for a file Pillow can open as an image; else why it cannot be used."""
    from PIL import Image, UnidentifiedImageError

    try:
        with path.open("rb") as handle:
            head = handle.read(512)
            if not head:
                return "empty file (0 bytes)"
            handle.seek(0)
            with Image.open(handle) as img:
                img.size  # noqa: B018 — the header is parsed lazily; touching it validates it
    except UnidentifiedImageError:
        return f"not an image: {_describe(head)}"
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    except (ValueError, SyntaxError, EOFError) as exc:
        return f"corrupt image header: {exc}"
    return None


def _describe(head: bytes) -> str:
    stripped = head.lstrip()
    if stripped.startswith(b"%PDF"):
        return "a PDF document"
    if b"<svg" in stripped[:512]:
        return "an SVG (vector) file; rasterise it to PNG first"
    try:
        stripped.decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised or unsupported format"
    return "this is text, not a picture"


def _relative(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return path.relative_to(root).as_posix()
        except ValueError:
            pass
    return path.as_posix()


def _split_key(seed: int, name: str) -> str:
    return hashlib.sha256(f"{seed}\0{name}".encode()).hexdigest()
