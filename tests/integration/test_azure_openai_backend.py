"""AzureOpenAIBackend against the emulated Azure OpenAI resource: the real client, real sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("openai")

from azure.core.credentials import AccessToken

from azvision import (
    AuthenticationError,
    AzureOpenAIBackend,
    NotFoundError,
    Prediction,
    ServiceError,
)
from azvision.emulator import Emulator

from .conftest import SHAPES, ShapeDataset

LABELS = list(SHAPES)


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


def examples(dataset: ShapeDataset, per_label: int = 3) -> dict[str, list[bytes]]:
    return {label: dataset.train[label][:per_label] for label in LABELS}


def make(emu: Emulator, dataset: ShapeDataset, **options: Any) -> AzureOpenAIBackend:
    settings: dict[str, Any] = {
        "key": emu.openai_key,
        "deployment": "gpt-4o",
        "labels": LABELS,
        "examples": examples(dataset),
    }
    return AzureOpenAIBackend(emu.endpoint, **{**settings, **options})


@pytest.mark.parametrize("api_version", [None, "2024-10-21"])
def test_few_shot_batch_in_both_api_styles(
    emu: Emulator, shape_dataset: ShapeDataset, api_version: str | None
) -> None:
    images = [image for label in LABELS for image in shape_dataset.test[label][:3]]
    truth = [label for label in LABELS for _ in range(3)]
    with make(emu, shape_dataset, api_version=api_version) as clf:
        outcomes = list(clf.classify_many(images))
    assert all(isinstance(outcome, Prediction) for outcome in outcomes)
    right = sum(o.label == t for o, t in zip(outcomes, truth, strict=True) if isinstance(o, Prediction))
    assert right >= 6
    first = outcomes[0]
    assert isinstance(first, Prediction)
    assert first.backend == "azure_openai" and first.model == "gpt-4o-2024-11-20"
    assert first.usage is not None and first.usage["prompt_tokens"] > 10 * 85
    assert "logprobs" in first.notes[0]
    assert 0.0 < first.confidence <= 1.0


async def test_async_classify_with_an_entra_credential(emu: Emulator, shape_dataset: ShapeDataset) -> None:
    class Credential:  # the emulator takes its key as the Entra token
        def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
            assert scopes == ("https://cognitiveservices.azure.com/.default",)
            return AccessToken(emu.openai_key, int(time.time()) + 3600)

    for api_version in (None, "2024-10-21"):
        clf = make(emu, shape_dataset, key=None, credential=Credential(), api_version=api_version)
        prediction = await clf.aclassify(shape_dataset.test["stripes"][0])
        await clf.aclose()
        assert prediction.label in LABELS and "auth='entra'" in repr(clf)


def test_request_cost_matches_the_billed_prompt(emu: Emulator, shape_dataset: ShapeDataset) -> None:
    for detail in ("low", "high"):
        with make(emu, shape_dataset, detail=detail) as clf:
            image = shape_dataset.test["circle"][0]
            prediction = clf.classify(image)
            assert prediction.usage is not None
            expected = prediction.usage["prompt_tokens"] + clf.prompt.max_tokens
            assert clf._request_cost(clf._load(image)) == expected


def test_multilabel_zero_shot(emu: Emulator, shape_dataset: ShapeDataset) -> None:
    with make(emu, shape_dataset, examples=None, multilabel=True, logprobs=False) as clf:
        prediction = clf.classify(shape_dataset.test["circle"][0])
    assert prediction.labels and {lab.name for lab in prediction.labels} <= set(LABELS)
    assert "no logprobs" in prediction.notes[0]


def test_rpm_quota_is_kept_without_a_429(shape_dataset: ShapeDataset) -> None:
    with Emulator(openai_rpm=240) as emu:  # 4 requests a second
        with make(emu, shape_dataset, examples=None, max_rpm=240) as clf:
            outcomes = list(clf.classify_many(shape_dataset.test["circle"][:5] * 2))
        stats = emu.stats()
    assert all(isinstance(outcome, Prediction) for outcome in outcomes)
    counts = next(v for k, v in stats.items() if "deployments" in k or "/v1/" in k)
    assert counts.get("200") == 10 and "429" not in counts


def test_throttled_requests_wait_for_retry_after_ms(shape_dataset: ShapeDataset) -> None:
    with Emulator(openai_rpm=120) as emu:  # no client-side limit: the 429s are retried, never surfaced
        with make(emu, shape_dataset, examples=None, concurrency=4) as clf:
            outcomes = list(clf.classify_many(shape_dataset.test["checker"][:4]))
        stats = emu.stats()
    assert all(isinstance(outcome, Prediction) for outcome in outcomes)
    counts = next(v for k, v in stats.items() if "/v1/" in k)
    assert counts["200"] == 4 and counts.get("429", 0) >= 1


def test_service_errors_are_typed_and_keep_the_key_secret(emu: Emulator, shape_dataset: ShapeDataset) -> None:
    image = shape_dataset.test["circle"][0]
    with make(emu, shape_dataset, deployment="nope") as clf, pytest.raises(NotFoundError) as missing:
        clf.classify(image)
    assert missing.value.code == "DeploymentNotFound"
    with make(emu, shape_dataset, deployment="gpt-35-turbo") as clf, pytest.raises(ServiceError) as text_only:
        clf.classify(image)
    assert "image_url is only supported" in text_only.value.message
    with (
        make(emu, shape_dataset, instructions="[emulator:content_filter]") as clf,
        pytest.raises(ServiceError) as blocked,
    ):
        clf.classify(image)
    assert blocked.value.code == "content_filter" and blocked.value.status_code == 400
    wrong = "wrong-key-0123456789"
    with make(emu, shape_dataset, key=wrong) as clf, pytest.raises(AuthenticationError) as denied:
        clf.classify(image)
    assert wrong not in str(denied.value) and wrong not in repr(denied.value) and wrong not in repr(clf)


def test_event_loops_in_turn_share_one_async_client_slot(emu: Emulator, shape_dataset: ShapeDataset) -> None:
    images = shape_dataset.test["circle"][:2]
    clf = make(emu, shape_dataset, examples=None)

    async def classify_both() -> tuple[list[str | None], object]:
        answers = [(await clf.aclassify(image)).label for image in images]
        batch = [o async for o in clf.aclassify_many(images)]
        assert all(isinstance(outcome, Prediction) for outcome in batch)
        return answers, clf._aclient.get()

    first, first_client = asyncio.run(classify_both())
    second, second_client = asyncio.run(classify_both())  # a new loop: the closed one's client is dropped
    assert first == second and all(label in LABELS for label in first)
    assert second_client is not first_client and clf._aclient.loop is not None
    asyncio.run(clf.aclose())
    assert clf._aclient.loop is None
    with pytest.raises(RuntimeError, match="closed"):
        clf.classify(images[0])


def test_examples_beyond_the_request_limit_are_chosen_and_noted(
    emu: Emulator, shape_dataset: ShapeDataset
) -> None:
    with make(emu, shape_dataset, examples=examples(shape_dataset, per_label=5)) as clf:
        prediction = clf.classify(shape_dataset.test["stripes"][0])
    assert clf.prompt.example_count == 9
    assert prediction.notes[0].startswith("confidence:")
    assert any(
        note.startswith("few-shot: 9 of 15 examples sent (circle 3, stripes 3, checker 3)")
        for note in prediction.notes
    )
    assert prediction.usage is not None and prediction.usage["prompt_tokens"] > 10 * 85


# -- max_rpm / max_tpm against the emulated deployment's quotas ------------------------------------------
def chat_counts(emu: Emulator) -> dict[str, int]:
    return next(v for k, v in emu.stats().items() if "chat/completions" in k)


def test_max_tpm_keeps_a_small_token_quota(shape_dataset: ShapeDataset) -> None:
    images = [image for label in LABELS for image in shape_dataset.test[label][:3]]
    with Emulator(openai_tpm=30_000) as emu:  # 500 tokens a second: about 2 zero-shot requests
        with make(emu, shape_dataset, examples=None, max_tpm=30_000, concurrency=4) as clf:
            outcomes = list(clf.classify_many(images))
        counts = chat_counts(emu)
    assert all(isinstance(outcome, Prediction) for outcome in outcomes)
    assert counts.get("200") == len(images) and "429" not in counts


async def test_both_quotas_on_the_async_path(shape_dataset: ShapeDataset) -> None:
    images = shape_dataset.test["checker"][:6]
    with Emulator(openai_rpm=120, openai_tpm=60_000) as emu:  # 2 requests a second bind
        clf = make(emu, shape_dataset, examples=None, max_rpm=120, max_tpm=60_000, concurrency=4)
        outcomes = [outcome async for outcome in clf.aclassify_many(images)]
        await clf.aclose()
        counts = chat_counts(emu)
    assert all(isinstance(outcome, Prediction) for outcome in outcomes)
    assert counts.get("200") == len(images) and "429" not in counts


def drain(emu: Emulator, request: dict[str, Any]) -> int:
    """Spend the deployment's budget from another client, as a neighbour sharing it would; 429s seen."""
    import openai

    with openai.OpenAI(base_url=f"{emu.endpoint}/openai/v1/", api_key=emu.openai_key, max_retries=0) as other:
        for sent in range(100):
            try:
                other.chat.completions.create(**request)
            except openai.RateLimitError:
                return sent
    return 0


def test_a_quota_drained_by_another_client_surfaces_no_429(shape_dataset: ShapeDataset) -> None:
    image = shape_dataset.test["circle"][0]
    with (
        Emulator(openai_tpm=30_000) as emu,
        make(emu, shape_dataset, examples=None, max_tpm=30_000, concurrency=4) as clf,
    ):
        assert drain(emu, clf._request(clf._load(image))) > 0
        outcomes = list(clf.classify_many(shape_dataset.test["stripes"][:5]))
        held = clf._throttle.gate_until
    assert all(isinstance(outcome, Prediction) for outcome in outcomes)
    assert held > 0  # the batch waited, on a 429's retry-after-ms or on x-ratelimit-remaining-tokens
