"""Benchmark 7 — the Azure OpenAI vision backend against an emulated deployment.

Four figures, side by side in one run:

* **RPM**: a deployment with 600 requests/minute and a token quota that never binds; ``classify_many``
  told ``max_rpm=600``. Target: ≥ 0.9 of the quota, 0 failed.
* **TPM**: a token quota that binds (60,000 tokens/minute, ~5 zero-shot requests a second, under the
  600 RPM); told ``max_tpm``. Utilisation counts what the service charges at admission, each request's
  estimate (its prompt tokens from ``usage`` plus the completion budget). Target: ≥ 0.9, no 429 reaching
  the caller. The emulator's token bucket holds ten seconds of quota, so the run starts by spending
  that burst from another client (as a neighbour sharing the deployment would): the figure is the
  sustained rate, not the burst.
* **TPM, not told**: the same without ``max_rpm``/``max_tpm``: the rate is learned (AIMD on 429s, and on
  ``x-ratelimit-remaining-*`` running low). Informational utilisation; target: no 429 reaching the caller.
* **Overhead**: ``AzureOpenAIBackend.classify`` vs the raw ``openai`` client sending the same request
  (structured output, logprobs, the image as a data URL), sequential, zero latency, alternating rounds as
  in ``bench_overhead``. Target: ≤ 1.10 ×.
* **Few-shot accuracy**: the demo's four shapes, 5 examples per label (9 of them fit in a request) vs
  the Custom Vision iteration trained on the demo's full training set (20 per label), on the same 40
  held-out images. Which 5 matters with so few, so the figure is the mean over the four disjoint draws
  of 5 the training set holds (each draw is also shown). Target: within 5 points.

The quota and overhead rows run the emulator in its own process (it would share the GIL with the client
otherwise); the accuracy row runs it in this one.
"""

from __future__ import annotations

import base64
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import openai

from azvision import AzureOpenAIBackend, AzVisionError, Prediction, RateLimitError
from azvision.evaluation import evaluate

from ._common import (
    Lab,
    RemoteEmulator,
    Result,
    alternate,
    bench_image,
    counts_since,
    request_total,
    wall_clock,
)

try:  # the generator of the demo's images (made public as azvision.synthetic)
    from azvision.synthetic import make_dataset  # type: ignore[import-not-found,unused-ignore]
except ImportError:
    from azvision.synthetic import make_dataset

NAME = "azure_openai"
DEPLOYMENT = "gpt-4o"
LABELS = ("red", "blue")
RPM = 600
HIGH_TPM = 100_000_000
TPM = 60_000
ROUNDS = 20
WARM_UP = 5
SHAPES = ("circle", "square", "triangle", "star")
EXAMPLES_PER_LABEL = 5


def _emulator(lab: Lab, *, rpm: float | None = None, tpm: float | None = None) -> RemoteEmulator:
    """An emulator in its own process (no trained project needed: no ``--data-dir``)."""
    options = [f"--seed={lab.settings.seed}"]
    options += [f"--openai-rpm={rpm}"] if rpm is not None else []
    options += [f"--openai-tpm={tpm}"] if tpm is not None else []
    return RemoteEmulator(options)


def _backend(emu: RemoteEmulator, **options: Any) -> AzureOpenAIBackend:
    return AzureOpenAIBackend(emu.endpoint, emu.openai_key, deployment=DEPLOYMENT, labels=LABELS, **options)


def _batch(emu: RemoteEmulator, images: list[str], **options: Any) -> dict[str, Any]:
    before = request_total(emu.stats(), "chat/completions")
    with _backend(emu, **options) as clf, wall_clock() as elapsed:
        outcomes = list(clf.classify_many(images))
        budget = clf.prompt.max_tokens
    answers = [o for o in outcomes if isinstance(o, Prediction)]
    errors = [o for o in outcomes if isinstance(o, AzVisionError)]
    return {
        "seconds": elapsed[0],
        "answered": len(answers),
        "failed": len(errors),
        "surfaced_429": sum(isinstance(e, RateLimitError) for e in errors),
        # what the service charged at admission: the prompt plus the completion budget
        "charged_tokens": sum((o.usage or {}).get("prompt_tokens", 0) + budget for o in answers),
        "server_counts": counts_since(before, request_total(emu.stats(), "chat/completions")),
    }


def _drain(emu: RemoteEmulator, image: str) -> int:
    """Spend the deployment's token burst from another client, until a 429 says tokens; requests sent."""
    with _backend(emu) as probe:
        request = probe._request(probe._load(image))
    with openai.OpenAI(base_url=f"{emu.endpoint}/openai/v1/", api_key=emu.openai_key, max_retries=0) as other:
        sent = 0
        while sent < 10_000:
            try:
                other.chat.completions.create(**request)
                sent += 1
            except openai.RateLimitError as exc:
                if "token rate limit" in str(exc):
                    return sent
                time.sleep(float(exc.response.headers.get("retry-after-ms", "100")) / 1000)
    return sent


def _per_minute(amount: float, run: dict[str, Any]) -> float:
    """``amount`` a minute over ``run``: N requests span N - 1 intervals (and the last one's answer)."""
    answered = max(run["answered"], 2)
    return amount * (answered - 1) / answered / run["seconds"] * 60.0


def _quota_rows(lab: Lab) -> list[Result]:
    settings = lab.settings
    images = lab.image_files(settings.scale(150, 50))
    with _emulator(lab, rpm=RPM, tpm=HIGH_TPM) as emu:
        rpm = _batch(emu, images, max_rpm=RPM)
    rate = _per_minute(rpm["answered"], rpm)
    tpm_images = lab.image_files(settings.scale(75, 25))
    with _emulator(lab, rpm=RPM, tpm=TPM) as emu:
        drained = _drain(emu, tpm_images[0])
        tpm = _batch(emu, tpm_images, max_tpm=TPM)
    tokens = _per_minute(tpm["charged_tokens"], tpm)
    with _emulator(lab, rpm=RPM, tpm=TPM) as emu:
        _drain(emu, tpm_images[0])
        learned = _batch(emu, tpm_images)
    learned_tokens = _per_minute(learned["charged_tokens"], learned)
    return [
        Result(
            f"azure_openai: RPM utilisation at {RPM} RPM, high TPM",
            rate / RPM,
            "x",
            target=0.9,
            ratio=rate / RPM,
            note=f"{len(images)} images, max_rpm={RPM}: {rate:.0f} requests/min; server saw "
            f"{rpm['server_counts']}",
            details=rpm,
        ),
        Result(
            "azure_openai: RPM run, failed items",
            rpm["failed"],
            "items",
            target=0,
            better="lower",
        ),
        Result(
            f"azure_openai: TPM utilisation at {TPM:,} TPM (binding)",
            tokens / TPM,
            "x",
            target=0.9,
            ratio=tokens / TPM,
            note=f"{len(tpm_images)} images after a neighbour spent the burst ({drained} requests), "
            f"max_tpm={TPM}: {tokens:,.0f} tokens/min charged; server saw {tpm['server_counts']}",
            details={**tpm, "drained_requests": drained},
        ),
        Result(
            "azure_openai: TPM run, 429s surfaced to the caller",
            tpm["surfaced_429"],
            "items",
            target=0,
            better="lower",
            note=f"{tpm['failed']} failed in all",
        ),
        Result(
            f"azure_openai: TPM utilisation at {TPM:,} TPM, quota not told (learned)",
            learned_tokens / TPM,
            "x",
            ratio=learned_tokens / TPM,
            note=f"no max_rpm/max_tpm: the rate is learned from 429s and x-ratelimit-remaining-*; "
            f"{learned['failed']} failed; server saw {learned['server_counts']}",
            details=learned,
        ),
        Result(
            "azure_openai: quota not told, 429s surfaced to the caller",
            learned["surfaced_429"],
            "items",
            target=0,
            better="lower",
        ),
    ]


def _overhead_row(lab: Lab) -> Result:
    images = [bench_image(i) for i in range(lab.settings.scale(300, 100))]
    with _emulator(lab) as emu, _backend(emu) as clf:
        client = openai.OpenAI(base_url=f"{emu.endpoint}/openai/v1/", api_key=emu.openai_key, max_retries=0)
        prompt = clf.prompt

        def official(data: bytes) -> str:
            url = "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")
            completion = client.chat.completions.create(
                model=DEPLOYMENT,
                messages=[
                    {"role": "system", "content": prompt.system},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "Classify this image."},
                            {"type": "image_url", "image_url": {"url": url, "detail": "low"}},
                        ],
                    },
                ],
                response_format=prompt.response_format,  # type: ignore[arg-type]
                max_completion_tokens=prompt.max_tokens,
                logprobs=True,
                top_logprobs=len(LABELS),
            )
            label: str = json.loads(completion.choices[0].message.content or "{}")["label"]
            return label

        sides = {"official": official, "azvision": clf.classify}
        per_call, ratio = alternate(sides, images, ROUNDS, warm_up=WARM_UP)
        client.close()
    return Result(
        "azure_openai: overhead, azvision / openai client per call",
        ratio,
        "x",
        target=1.10,
        better="lower",
        ratio=ratio,
        note=f"median of {ROUNDS} alternating rounds; {len(images)} sequential calls each, zero latency: "
        f"openai {per_call['official'] * 1000:.2f} ms, azvision {per_call['azvision'] * 1000:.2f} ms",
        details={f"{side}_ms_per_call": s * 1000 for side, s in per_call.items()},
    )


def _accuracy_row() -> Result:
    """Mean few-shot accuracy over the disjoint draws of 5 examples per label the training set holds."""
    from azvision import CustomVisionTrainer
    from azvision.emulator import Emulator

    with tempfile.TemporaryDirectory(prefix="azvision-bench-aoai-") as scratch:
        root = Path(scratch)
        train = make_dataset(root / "train", classes=SHAPES, per_class=20, seed=0)
        test = make_dataset(root / "test", classes=SHAPES, per_class=10, seed=1)
        per_label = {label: [item.path for item in train.items if label in item.labels] for label in SHAPES}
        with Emulator(training_seconds=0.1) as emu:
            with CustomVisionTrainer(
                emu.endpoint,
                emu.training_key,
                prediction_resource_id=emu.prediction_resource_id,
                prediction_endpoint=emu.endpoint,
                prediction_key=emu.prediction_key,
            ) as trainer:
                trainer.train_from_folder(train, project="bench-aoai", publish_name="bench", timeout=120)
                with trainer.classifier() as cv:
                    cv_accuracy = evaluate(cv, test).accuracy
            draws, failed, note = [], 0, ""
            for start in range(0, 20, EXAMPLES_PER_LABEL):
                examples = {
                    label: paths[start : start + EXAMPLES_PER_LABEL] for label, paths in per_label.items()
                }
                with AzureOpenAIBackend(
                    emu.endpoint, emu.openai_key, deployment=DEPLOYMENT, labels=SHAPES, examples=examples
                ) as aoai:
                    metrics = evaluate(aoai, test)
                    note = aoai.prompt.note or ""
                draws.append(metrics.accuracy)
                failed += metrics.failed
    mean = statistics.fmean(draws)
    points = round((mean - cv_accuracy) * 100, 6)
    return Result(
        f"azure_openai: few-shot ({EXAMPLES_PER_LABEL}/label) accuracy - Custom Vision (full set), points",
        points,
        "pt",
        target=-5.0,
        note=f"{len(test)} held-out images, 4 shapes: Azure OpenAI few-shot {mean:.1%} (mean of {len(draws)} "
        f"disjoint draws: {', '.join(f'{a:.1%}' for a in draws)}; {failed} failed), Custom Vision trained on "
        f"20/label {cv_accuracy:.1%}; per request {note.split(':', 1)[1].split('):')[0].strip()})",
        details={"azure_openai_draws": draws, "custom_vision_accuracy": cv_accuracy, "failed": failed},
    )


def run(lab: Lab) -> list[Result]:
    """The RPM, TPM, overhead and few-shot accuracy rows."""
    return [*_quota_rows(lab), _overhead_row(lab), _accuracy_row()]
