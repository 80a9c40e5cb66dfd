"""The list-price table behind "cost per 1,000 images": complete, sourced, and applied the way Azure bills."""

from __future__ import annotations

from pathlib import Path

import pytest

from azvision._pricing import DEFAULT_AML_INSTANCE, PRICES, cost_per_1000_images, describe_basis

DOCS = Path(__file__).parents[2] / "docs"


def test_every_azure_price_names_its_pricing_page_and_year() -> None:
    for key, price in PRICES.items():
        assert price.key == key
        if key == "onnx.local":
            assert price.usd == 0.0
            continue
        assert price.source.startswith("https://azure.microsoft.com/pricing/details/"), key
        assert price.as_of.isdigit() and len(price.as_of) == 4, key
        assert price.usd > 0, key


def test_per_request_services_cost_their_transaction_price_per_image() -> None:
    assert cost_per_1000_images("custom_vision") == PRICES["custom_vision.prediction"].usd
    assert cost_per_1000_images("image_analysis", mode="tags") == PRICES["image_analysis.tags"].usd
    assert (
        cost_per_1000_images("image_analysis", mode="categories") == PRICES["image_analysis.categories"].usd
    )
    assert cost_per_1000_images("onnx") == 0.0


def test_each_image_analysis_feature_on_a_call_is_billed() -> None:
    both = cost_per_1000_images("image_analysis", mode="objects", features=("caption", "objects"))
    assert both == pytest.approx(PRICES["image_analysis.objects"].usd + PRICES["image_analysis.caption"].usd)
    assert cost_per_1000_images("image_analysis", mode="tags", features=("read",)) is None  # not in the table


def test_azure_ml_spreads_instance_hours_over_the_measured_throughput() -> None:
    hourly = PRICES[f"azure_ml.{DEFAULT_AML_INSTANCE}"].usd
    assert cost_per_1000_images("azure_ml", images_per_second=1.0) == pytest.approx(hourly / 3.6)
    fast = cost_per_1000_images("azure_ml", images_per_second=100.0)
    slow = cost_per_1000_images("azure_ml", images_per_second=10.0)
    assert fast is not None and slow is not None and slow == pytest.approx(10 * fast)
    assert cost_per_1000_images("azure_ml") is None
    assert cost_per_1000_images("azure_ml", images_per_second=0.0) is None
    assert cost_per_1000_images("azure_ml", images_per_second=5.0, instance_type="Standard_NC6") is None
    assert cost_per_1000_images("someone_elses_backend") is None


def test_the_basis_line_says_list_price_and_the_assumed_instance() -> None:
    assert (
        describe_basis("custom_vision")
        == "Custom Vision S0, prediction: $2.00 per 1,000 transactions (list price, 2024)"
    )
    aml = describe_basis("azure_ml", images_per_second=12.34)
    assert DEFAULT_AML_INSTANCE in aml and "12.3 images/s measured here" in aml and "list price" in aml
    assert "no Azure charge" in describe_basis("onnx")
    assert describe_basis("image_analysis", mode="categories").startswith(
        "Computer Vision 3.2 S1, categories"
    )
    assert describe_basis("nope") == "nope: no list price known"


def test_the_cli_docs_show_every_price_with_its_source() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    for price in PRICES.values():
        if price.source:
            assert price.item in text, price.key
            assert f"${price.usd:.2f}" in text or f"${price.usd:.3f}" in text, price.key
            assert price.source in text, price.key
    assert "recalled" in text and "not fetched" in text


def test_azure_openai_is_priced_from_the_tokens_a_run_used() -> None:
    from azvision import Prediction
    from azvision._pricing import TokenTally

    tally = TokenTally()
    assert cost_per_1000_images("azure_openai") is None
    assert cost_per_1000_images("azure_openai", tokens=tally) is None  # nothing measured yet
    assert "no token usage" in describe_basis("azure_openai", tokens=tally)
    for prompt in (900, 1100):
        tally.add(
            Prediction(
                labels=(),
                backend="azure_openai",
                model="gpt-4o-mini-2024-07-18",
                usage={"prompt_tokens": prompt, "completion_tokens": 8, "total_tokens": prompt + 8},
            )
        )
    tally.add(Prediction(labels=(), backend="onnx"))  # no usage: not counted
    assert tally.per_image() == (1000.0, 8.0)
    expected = (1000 * PRICES["azure_openai.gpt-4o-mini.input"].usd + 8 * 0.60) / 1000
    assert cost_per_1000_images("azure_openai", tokens=tally) == pytest.approx(expected)
    basis = describe_basis("azure_openai", tokens=tally)
    assert basis.startswith("Azure OpenAI gpt-4o-mini (Global Standard): $0.15 / $0.60 per 1M")
    assert "1000 + 8 tokens an image measured here" in basis and "list price" in basis
    unknown = TokenTally()
    unknown.add(Prediction(labels=(), backend="azure_openai", model="o3", usage={"prompt_tokens": 5}))
    assert cost_per_1000_images("azure_openai", tokens=unknown) is None
    assert "no list price" in describe_basis("azure_openai", tokens=unknown)
