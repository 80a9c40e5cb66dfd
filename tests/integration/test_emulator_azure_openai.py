"""The emulated Azure OpenAI chat completions, driven by the official ``openai`` client itself."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

openai = pytest.importorskip("openai")

from azvision.emulator import Emulator  # noqa: E402

from .conftest import ShapeDataset  # noqa: E402

API_VERSION = "2024-10-21"
LABELS = ["circle", "stripes", "checker"]


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def schema(labels: list[str], *, multilabel: bool = False) -> dict[str, Any]:
    value: dict[str, Any] = {"type": "string", "enum": labels}
    if multilabel:
        value = {"type": "array", "items": value}
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "classification",
            "strict": True,
            "schema": {
                "type": "object",
                "properties": {"label": value, "reason": {"type": "string"}},
                "required": ["label", "reason"],
                "additionalProperties": False,
            },
        },
    }


def few_shot(dataset: ShapeDataset, query: bytes, per_label: int = 3) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    for label in LABELS:
        for image in dataset.train[label][:per_label]:
            parts.append({"type": "text", "text": f'Example of "{label}":'})
            parts.append({"type": "image_url", "image_url": {"url": data_url(image), "detail": "low"}})
    parts.append({"type": "text", "text": "Classify this image."})
    parts.append({"type": "image_url", "image_url": {"url": data_url(query), "detail": "low"}})
    return [{"role": "system", "content": "You classify images."}, {"role": "user", "content": parts}]


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


def test_classic_client_learns_in_context_examples(emu: Emulator, shape_dataset: ShapeDataset) -> None:
    client = openai.AzureOpenAI(
        azure_endpoint=emu.endpoint, api_key=emu.openai_key, api_version=API_VERSION, max_retries=0
    )
    right = 0
    for label in LABELS:
        for query in shape_dataset.test[label][:3]:
            reply = client.chat.completions.create(
                model="gpt-4o", messages=few_shot(shape_dataset, query), response_format=schema(LABELS)
            )
            answer = json.loads(reply.choices[0].message.content or "")
            assert set(answer) == {"label", "reason"} and answer["label"] in LABELS
            right += answer["label"] == label
    assert right >= 6  # of 9 held-out images, from 3 examples a label (chance: 3)


def test_usage_follows_the_image_token_rules(emu: Emulator, shape_dataset: ShapeDataset) -> None:
    client = openai.OpenAI(base_url=f"{emu.endpoint}/openai/v1/", api_key=emu.openai_key, max_retries=0)
    image = data_url(shape_dataset.test["circle"][0])

    def prompt_tokens(detail: str) -> int:
        content = [{"type": "image_url", "image_url": {"url": image, "detail": detail}}]
        reply = client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": content}]
        )
        assert reply.usage is not None
        assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
        return reply.usage.prompt_tokens

    # A 128x128 image at high detail is one 512-px tile: 170 + 85, against 85 flat at low detail.
    assert prompt_tokens("high") - prompt_tokens("low") == 170


def test_logprobs_give_the_probability_of_the_label(emu: Emulator, shape_dataset: ShapeDataset) -> None:
    client = openai.OpenAI(base_url=f"{emu.endpoint}/openai/v1/", api_key=emu.openai_key, max_retries=0)
    reply = client.chat.completions.create(
        model="gpt-4o",
        messages=few_shot(shape_dataset, shape_dataset.test["stripes"][1]),
        response_format=schema(LABELS),
        logprobs=True,
        top_logprobs=3,
    )
    tokens = reply.choices[0].logprobs.content
    assert "".join(token.token for token in tokens) == reply.choices[0].message.content
    label_tokens = [token for token in tokens if len(token.top_logprobs) > 1]
    assert label_tokens, "the label's first token offers the other labels as alternatives"
    alternatives = {alt.token for alt in label_tokens[0].top_logprobs}
    assert {"circ", "stri", "chec"} == alternatives
    assert math.isclose(sum(math.exp(alt.logprob) for alt in label_tokens[0].top_logprobs), 1.0, abs_tol=1e-6)


async def test_async_client_and_bearer_token(emu: Emulator, shape_dataset: ShapeDataset) -> None:
    client = openai.AsyncAzureOpenAI(
        azure_endpoint=emu.endpoint,
        azure_ad_token_provider=lambda: emu.openai_key,
        api_version=API_VERSION,
        max_retries=0,
    )
    async with client:
        reply = await client.chat.completions.create(
            model="gpt-4o-prod",
            messages=few_shot(shape_dataset, shape_dataset.test["checker"][0]),
            response_format=schema(LABELS, multilabel=True),
        )
    answer = json.loads(reply.choices[0].message.content or "")
    assert answer["label"] and set(answer["label"]) <= set(LABELS)
    assert reply.model == "gpt-4o-2024-11-20"


def test_errors_have_the_service_shapes(emu: Emulator, png_bytes: bytes) -> None:
    client = openai.AzureOpenAI(
        azure_endpoint=emu.endpoint, api_key=emu.openai_key, api_version=API_VERSION, max_retries=0
    )
    image = {"type": "image_url", "image_url": {"url": data_url(png_bytes), "detail": "low"}}
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="no-such", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.body["code"] == "DeploymentNotFound"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as blocked:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "[emulator:content_filter] hi"}]
        )
    assert blocked.value.code == "content_filter"
    assert blocked.value.body["innererror"]["content_filter_result"]["violence"]["filtered"]  # type: ignore[index]
    with pytest.raises(openai.BadRequestError, match="Max is 10"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": [image] * 11}])
    with pytest.raises(openai.BadRequestError, match="image_url is only supported"):
        client.chat.completions.create(model="gpt-35-turbo", messages=[{"role": "user", "content": [image]}])
    with pytest.raises(openai.BadRequestError, match="json_schema"):
        client.chat.completions.create(
            model="gpt-4-turbo",
            messages=[{"role": "user", "content": [image]}],
            response_format=schema(LABELS),
        )
    wrong = openai.AzureOpenAI(
        azure_endpoint=emu.endpoint, api_key="wrong", api_version=API_VERSION, max_retries=0
    )
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])


def test_rpm_quota_answers_429_with_retry_headers(png_bytes: bytes) -> None:
    with Emulator(openai_rpm=60) as emu:
        url = f"{emu.endpoint}/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}"
        body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
        first = httpx.post(url, json=body, headers={"api-key": emu.openai_key})
        second = httpx.post(url, json=body, headers={"api-key": emu.openai_key})
    assert first.status_code == 200 and first.headers["x-ratelimit-remaining-requests"] == "0"
    assert second.status_code == 429
    assert 0 < int(second.headers["retry-after-ms"]) <= 1000 and second.headers["retry-after"] == "1"
    assert second.json()["error"]["code"] == "429"


def test_tpm_quota_counts_the_estimate_with_max_tokens() -> None:
    with Emulator(openai_tpm=600) as emu:  # 10 tokens a second, 100 of burst
        url = f"{emu.endpoint}/openai/v1/chat/completions"
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 60}
        first = httpx.post(url, json=body, headers={"Authorization": f"Bearer {emu.openai_key}"})
        second = httpx.post(url, json=body, headers={"Authorization": f"Bearer {emu.openai_key}"})
    assert first.status_code == 200 and second.status_code == 429
    assert "token rate limit" in second.json()["error"]["message"]
    assert int(first.headers["x-ratelimit-remaining-tokens"]) < 600


def test_knowledge_folder_answers_zero_shot(tmp_path: Path, shape_dataset: ShapeDataset) -> None:
    for label in LABELS:
        (tmp_path / label).mkdir()
        for index, image in enumerate(shape_dataset.train[label]):
            (tmp_path / label / f"{index}.png").write_bytes(image)
    with Emulator(openai_knowledge=tmp_path) as emu:
        client = openai.OpenAI(base_url=f"{emu.endpoint}/openai/v1/", api_key=emu.openai_key, max_retries=0)
        right = 0
        for label in LABELS:
            for query in shape_dataset.test[label][:3]:
                content = [
                    {"type": "text", "text": "Which is it?"},
                    {"type": "image_url", "image_url": {"url": data_url(query), "detail": "low"}},
                ]
                reply = client.chat.completions.create(
                    model="gpt-4.1",
                    messages=[{"role": "user", "content": content}],
                    response_format=schema(LABELS),
                )
                right += json.loads(reply.choices[0].message.content or "")["label"] == label
    assert right >= 8
