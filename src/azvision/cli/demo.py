"""``azvision demo``: the whole story offline, against an embedded emulator, in one command.

It generates a small labelled image set, trains and publishes a Custom Vision model, classifies held-out
images through the prediction API, the ONNX export (locally), the export deployed behind an Azure ML online
endpoint (the shipped ``score.py`` in a real ``azmlinfsrv``), Image Analysis tags and v3.2 categories, and
an Azure OpenAI vision deployment given 5 training images per label as in-context examples, then prints one
table: accuracy, latency p50/p95, throughput and list-price cost per 1,000 images.
Everything stays on loopback. The Azure ML part builds the inference server's own virtual environment on
first use (it needs the package index once); if that is not possible the row says why and the rest runs.
The work folder keeps the images (``data/train``, ``data/test``), the export (``export/``), the deployment's
scoring script (``aml/score.py``) and ``summary.json`` (what ``--json`` prints).

Exit status: 0 every backend answered (a skipped Azure ML row included), 1 a backend failed, 2 the demo
cannot run here (a missing extra).

Example (shell)::

    azvision demo --quick --workdir demo/ --json | tail -n 1
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console

from .._errors import AzVisionError, missing_extra
from .._models import Prediction
from .._pricing import TokenTally, cost_per_1000_images, describe_basis
from .._protocol import Classifier
from ..evaluation import Metrics, evaluate
from ..synthetic import make_dataset
from ._demo_table import DemoRow, footnotes, next_steps, results_table
from ._output import error_line, progress, stderr_is_tty, usage_errors
from ._routing import usage_report
from .train import training_progress

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from ..datasets import Dataset
    from ..emulator import Emulator

__all__ = ["demo", "register", "run_demo", "scoring_script"]

_PROJECT = "azvision-demo"
_PUBLISH_NAME = "demo"
_AML_ENDPOINT = "demo-classifier"
#: (classes, training images per class, held-out images per class)
_FULL: tuple[tuple[str, ...], int, int] = (("circle", "square", "triangle", "star"), 20, 10)
_QUICK: tuple[tuple[str, ...], int, int] = (("circle", "square", "triangle"), 12, 6)
_AML_NAME = "Azure ML endpoint"
_ONNX_NOTE = "latency is per batch of up to 16 images (one onnxruntime run)"
_AOAI_NAME = "Azure OpenAI few-shot"
_AOAI_EXAMPLES_PER_LABEL = 5
_CASCADE_NAME = "Cascade ONNX→CV"


def register(app: typer.Typer) -> None:
    """Add ``azvision demo`` to the command line."""
    app.command("demo")(demo)


def demo(
    workdir: Annotated[
        Path | None,
        typer.Option(
            help="Keep the images, the ONNX export and summary.json here (default: a new temp folder)."
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="3 classes and 54 images instead of 4 and 120 (for CI).")
    ] = False,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="Print a JSON summary as the last line of stdout (the rest to stderr)."),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No steps or progress bars: the table and its notes only.")
    ] = False,
) -> None:
    """Train, publish, export and compare every backend offline, against an embedded emulator.

    No Azure account and no network: the services are emulated on 127.0.0.1. The first run builds the
    emulated Azure ML endpoint's inference-server environment (pip, once); without a package index that
    row is skipped with the reason and everything else still runs.
    """
    with usage_errors(str):
        emulator_type = _emulator_type()
    target = workdir if workdir is not None else Path(tempfile.mkdtemp(prefix="azvision-demo-"))
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        error_line(f"cannot use --workdir {target}: {exc.strerror or exc}")
        raise typer.Exit(2) from None
    console = Console(stderr=json_out, highlight=False)
    started = time.perf_counter()
    rows = run_demo(target, quick=quick, console=console, verbose=not quiet, emulator_type=emulator_type)
    seconds = time.perf_counter() - started
    console.print(results_table(rows))
    console.print("\n".join(footnotes(rows)), markup=False, soft_wrap=True)
    if not quiet:
        console.print(next_steps(target), markup=False, soft_wrap=True)
        console.print(f"demo finished in {seconds:.0f} s", markup=False, soft_wrap=True)
    classes, n_train, n_test = _QUICK if quick else _FULL
    summary = {
        "workdir": str(target),
        "classes": list(classes),
        "train_images": n_train * len(classes),
        "test_images": n_test * len(classes),
        "seconds": round(seconds, 1),
        "rows": [row.to_dict() for row in rows],
    }
    (target / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", "utf-8")
    if json_out:
        typer.echo(json.dumps(summary))
    raise typer.Exit(1 if any(row.status == "failed" for row in rows) else 0)


def _emulator_type() -> type[Emulator]:
    try:
        from ..emulator._server import Emulator
    except ImportError as exc:
        raise missing_extra(exc, what="the demo", extra="demo") from exc
    return Emulator


def run_demo(
    workdir: Path,
    *,
    quick: bool = False,
    console: Console | None = None,
    verbose: bool = True,
    emulator_type: type[Emulator] | None = None,
) -> list[DemoRow]:
    """Run every step of the demo in ``workdir`` and return the table's rows (the code behind ``demo``).

    Example:
        >>> rows = run_demo(Path("demo"), quick=True)  # doctest: +SKIP
        >>> [(row.id, row.status) for row in rows][:2]  # doctest: +SKIP
        [('custom_vision', 'ok'), ('onnx', 'ok')]
    """
    run = _DemoRun(workdir, quick, console or Console(), verbose, emulator_type or _emulator_type())
    return run.rows()


class _DemoRun:
    def __init__(self, workdir: Path, quick: bool, console: Console, verbose: bool, emulator: type[Emulator]):
        self.workdir = workdir
        self.classes, self.n_train, self.n_test = _QUICK if quick else _FULL
        self.console = console
        self.verbose = verbose
        self.bars = verbose and stderr_is_tty()
        self.emulator = emulator
        self.project_id = ""

    def say(self, message: str) -> None:
        if self.verbose:
            self.console.print(message, markup=False, soft_wrap=True)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.say(f"▸ {title}")
        started = time.perf_counter()
        yield
        self.say(f"  done in {time.perf_counter() - started:.1f} s")

    def rows(self) -> list[DemoRow]:
        data_dir = self.workdir / "data"
        with self.step(f"generating {len(self.classes)} classes of shapes in {data_dir}"):
            train = make_dataset(data_dir / "train", classes=self.classes, per_class=self.n_train, seed=0)
            test = make_dataset(data_dir / "test", classes=self.classes, per_class=self.n_test, seed=1)
            self.say(f"  {len(train)} training and {len(test)} held-out images: {', '.join(self.classes)}")
        rows: list[DemoRow] = []
        with self.emulator() as emulator:
            self.say(
                "▸ emulator of Custom Vision, Image Analysis, Azure ML and Azure OpenAI serving on "
                f"{emulator.endpoint}"
            )
            export_dir, why_not = self._train(emulator, train, test, rows)
            if export_dir is not None:
                with self.step("ONNX export: classifying locally with onnxruntime"):
                    from ..backends.onnx import OnnxBackend

                    onnx = partial(OnnxBackend, export_dir)
                    rows.append(self._score("onnx", "ONNX, local", test, onnx, note=_ONNX_NOTE))
                rows.append(self._cascade(emulator, export_dir, test))
                rows.append(self._azure_ml(export_dir, test))
            else:
                reason = f"needs the trained model: {why_not}"
                rows += [
                    DemoRow("onnx", "ONNX, local", "onnx", "skipped", note=reason),
                    DemoRow("cascade", _CASCADE_NAME, "cascade", "skipped", note=reason),
                    DemoRow("azure_ml", _AML_NAME, "azure_ml", "skipped", note=reason),
                ]
            rows += self._image_analysis(emulator, test)
            rows.append(self._azure_openai(emulator, train, test))
        return rows

    def _train(
        self, emulator: Emulator, train: Dataset, test: Dataset, rows: list[DemoRow]
    ) -> tuple[Path | None, str]:
        from ..training.custom_vision import CustomVisionTrainer

        trainer = CustomVisionTrainer(
            emulator.endpoint,
            emulator.training_key,
            prediction_resource_id=emulator.prediction_resource_id,
            prediction_endpoint=emulator.endpoint,
            prediction_key=emulator.prediction_key,
        )
        name = "Custom Vision"
        try:
            with trainer, self.step("Custom Vision: upload, train, publish, export to ONNX"):
                with training_progress(self.console, enabled=self.bars) as report:
                    result = trainer.train_from_folder(
                        train,
                        project=_PROJECT,
                        publish_name=_PUBLISH_NAME,
                        export_dir=self.workdir / "export",
                        timeout=300,
                        progress=report,
                    )
                if result.performance is not None:
                    perf = result.performance
                    self.say(
                        f"  {result.iteration.name}: precision {perf.precision:.0%}, recall {perf.recall:.0%}"
                    )
                self.say(f"  published as {_PUBLISH_NAME!r}; ONNX export in {result.export_dir}")
                self.project_id = str(result.project.id)
                rows.append(self._score("custom_vision", name, test, trainer.classifier))
        except AzVisionError as exc:
            reason = f"{type(exc).__name__}: {exc}"
            self.say(f"  failed: {reason}")
            rows.append(DemoRow("custom_vision", name, "custom_vision", "failed", note=reason))
            return None, reason
        return result.export_dir, ""

    def _score(
        self,
        row_id: str,
        name: str,
        test: Dataset,
        make: Callable[[], Classifier],
        *,
        mode: str = "tags",
        scored: bool = True,
        note: str = "",
    ) -> DemoRow:
        """Classify the held-out images with one backend; a row with accuracy, latency, throughput, cost."""
        tops: Counter[str] = Counter()
        tokens = TokenTally()

        def seen(image: object, truth: str, outcome: Prediction | AzVisionError) -> None:
            if isinstance(outcome, Prediction) and outcome.label:
                tops[outcome.label] += 1
            tokens.add(outcome)
            advance(isinstance(outcome, Prediction))

        backend = "image_analysis" if row_id.startswith("image_analysis") else row_id
        try:
            with make() as clf, progress(name, total=len(test), enabled=self.bars) as advance:
                started = time.perf_counter()
                metrics = evaluate(clf, test, on_outcome=seen)
                elapsed = time.perf_counter() - started
                routed = usage_report(clf)
        except AzVisionError as exc:
            return DemoRow(row_id, name, backend, "failed", note=f"{type(exc).__name__}: {exc}")
        rate = metrics.scored / elapsed if elapsed > 0 and metrics.scored else None
        notes = [note] if note else []
        notes += self._notes(metrics, tops, scored)
        row = DemoRow(
            row_id,
            name,
            backend,
            "failed" if metrics.failed == metrics.total else "ok",
            accuracy=metrics.accuracy if scored and metrics.scored else None,
            latency_p50_ms=metrics.latency_p50_ms,
            latency_p95_ms=metrics.latency_p95_ms,
            images_per_second=rate,
            cost_per_1000_usd=cost_per_1000_images(backend, mode=mode, images_per_second=rate, tokens=tokens),
            images=metrics.total,
            failed=metrics.failed,
            note="; ".join(notes),
            cost_basis=describe_basis(backend, mode=mode, images_per_second=rate, tokens=tokens),
        )
        if routed is not None:
            row = _routed_row(row, routed, metrics)
        if scored and row.accuracy is not None:
            self.say(f"  accuracy {row.accuracy:.1%} on {metrics.scored} held-out images")
        return row

    def _cascade(self, emulator: Emulator, export_dir: Path, test: Dataset) -> DemoRow:
        """The export first, the published iteration only for the images it is unsure of."""
        from ..backends.custom_vision import CustomVisionBackend
        from ..backends.onnx import OnnxBackend
        from ..routing import Cascade
        from ..routing._cascade import DEFAULT_THRESHOLD

        def make() -> Classifier:
            cloud = CustomVisionBackend(
                emulator.endpoint,
                emulator.prediction_key,
                self.project_id,
                _PUBLISH_NAME,
                labels=self.classes,
            )
            return Cascade([OnnxBackend(export_dir), cloud], threshold=DEFAULT_THRESHOLD)

        with self.step(f"Cascade: ONNX first, Custom Vision below confidence {DEFAULT_THRESHOLD}"):
            return self._score("cascade", _CASCADE_NAME, test, make)

    @staticmethod
    def _notes(metrics: Metrics, tops: Counter[str], scored: bool) -> list[str]:
        parts = []
        if metrics.failed:
            failures = ", ".join(f"{n} {kind}" for kind, n in metrics.failures_by_type.items())
            parts.append(f"failed: {failures}")
        if not scored:
            common = ", ".join(f"{label} ×{n}" for label, n in tops.most_common(3)) or "no labels"
            parts.append(f"pre-trained vocabulary, not your labels (top answers: {common})")
        return parts

    def _azure_ml(self, export_dir: Path, test: Dataset) -> DemoRow:
        from ..backends.azure_ml import AzureMLEndpointBackend
        from ..emulator import AmlEndpointSpec
        from ..emulator._inference_server import InferenceServerError, ensure_environment, environment_dir

        name = _AML_NAME
        self.say(
            "▸ Azure ML: the inference server's own virtual environment "
            f"(built on first use — pip, needs the package index once — then cached in {environment_dir()})"
        )
        started = time.perf_counter()
        try:
            ensure_environment()
        except (InferenceServerError, OSError):
            log = environment_dir().with_name(environment_dir().name + ".build.log")
            reason = (
                "could not build the inference-server environment (its first build needs the package "
                f"index); pip's output is in {log}"
            )
            self.say(f"  skipped after {time.perf_counter() - started:.1f} s: {reason}")
            return DemoRow("azure_ml", name, "azure_ml", "skipped", note=reason)
        self.say(f"  environment ready in {time.perf_counter() - started:.1f} s")
        # What a deployment is made of: the scoring script and the model folder (the ONNX export).
        script = self.workdir / "aml" / "score.py"
        script.parent.mkdir(parents=True, exist_ok=True)
        script.write_bytes(scoring_script().read_bytes())
        spec = AmlEndpointSpec(score_script=script, model_dir=export_dir)
        with contextlib.ExitStack() as stack:
            try:
                with self.step(f"Azure ML: deploying {script} + the export as endpoint {_AML_ENDPOINT!r}"):
                    aml = stack.enter_context(self.emulator(aml_endpoints={_AML_ENDPOINT: spec}))
            except (RuntimeError, OSError) as exc:
                reason = f"the endpoint did not start: {str(exc).splitlines()[0]}"
                self.say(f"  failed: {reason}")
                return DemoRow("azure_ml", name, "azure_ml", "failed", note=reason)
            uri = aml.aml_scoring_uri(_AML_ENDPOINT)
            with self.step("Azure ML: classifying through the scoring URI"):
                return self._score(
                    "azure_ml",
                    name,
                    test,
                    lambda: AzureMLEndpointBackend(uri, aml.aml_key, deployment="blue", parser="automl"),
                )

    def _image_analysis(self, emulator: Emulator, test: Dataset) -> list[DemoRow]:
        from ..backends.image_analysis import ImageAnalysisBackend

        rows = []
        modes: tuple[tuple[Literal["tags", "categories"], str], ...] = (
            ("tags", "Image Analysis tags"),
            ("categories", "CV 3.2 categories"),
        )
        for mode, name in modes:
            with self.step(f"{name}: pre-trained model, nothing to train"):
                rows.append(
                    self._score(
                        f"image_analysis_{mode}",
                        name,
                        test,
                        partial(ImageAnalysisBackend, emulator.endpoint, emulator.vision_key, mode=mode),
                        mode=mode,
                        scored=False,
                    )
                )
        return rows

    def _azure_openai(self, emulator: Emulator, train: Dataset, test: Dataset) -> DemoRow:
        from ..backends._aoai_prompt import MAX_EXAMPLES
        from ..backends.azure_openai import AzureOpenAIBackend

        examples = {
            label: [item.path for item in train.items if label in item.labels][:_AOAI_EXAMPLES_PER_LABEL]
            for label in self.classes
        }
        make = partial(
            AzureOpenAIBackend,
            emulator.endpoint,
            emulator.openai_key,
            deployment="gpt-4o",
            labels=self.classes,
            examples=examples,
        )
        given = sum(len(paths) for paths in examples.values())
        sent = min(given, MAX_EXAMPLES)
        note = f"{given} in-context examples ({_AOAI_EXAMPLES_PER_LABEL} per label), {sent} sent per request"
        if sent < given:
            note += f" (a request holds {MAX_EXAMPLES + 1} images; the labels take turns)"
        with self.step(f"{_AOAI_NAME}: a vision chat model shown {sent} labelled training images a request"):
            return self._score("azure_openai", _AOAI_NAME, test, make, note=note)


def _routed_row(row: DemoRow, routed: dict[str, Any], metrics: Metrics) -> DemoRow:
    """A cascade's row: its cost is what its cloud calls cost, spread over every image it answered."""
    stages = routed["stages"]
    cloud = sum(stage["calls"] for stage in stages[1:])
    total = max(metrics.total, 1)
    cost = routed["usage"]["cost_usd"] / total * 1000.0
    share = f"{cloud} of {metrics.total} images ({cloud / total:.0%}) reached {stages[-1]['name']}"
    note = "; ".join(part for part in (share, row.note) if part)
    basis = f"{share} at its list price; the rest were answered locally (no charge)"
    return replace(row, cost_per_1000_usd=cost, note=note, cost_basis=basis)


def scoring_script() -> Traversable:
    """The packaged copy of ``examples/aml/score.py``, the scoring script the demo deploys.

    It ships inside the package (``azvision/emulator/assets/score.py``) so that the demo works from a
    ``pip install``; a test keeps it identical to the documented copy in ``examples/aml/``.

    Example:
        >>> scoring_script().name
        'score.py'
    """
    return resources.files("azvision.emulator").joinpath("assets", "score.py")
