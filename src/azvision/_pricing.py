"""The one table of list prices behind "cost per 1,000 images" (``azvision demo``, the docs).

**Read this before trusting a number.** azvision is developed on a machine without internet access, so
these prices were not fetched: they are US-dollar pay-as-you-go list prices (East US, Linux, first volume
tier) as recalled from Microsoft's public pricing pages, with the page and the year each figure was last
known current. Prices differ by region, currency, volume tier and agreement, and change; check the
``source`` page before you budget with them. Everything that uses them says "list price".

How each backend is billed:

* Custom Vision (S0): one prediction transaction per image.
* Image Analysis (S1): one transaction per image *per visual feature* (tags and caption on one call are
  two transactions); v3.2 ``Categories`` is one transaction.
* Azure ML managed online endpoints: no per-request charge; you pay the instances' compute hours, busy
  or idle. The cost per 1,000 images therefore depends on throughput: ``hourly price / images per hour``,
  for an instance kept busy (assumed instance type: `DEFAULT_AML_INSTANCE`, one instance).
* ONNX (local): no charge from Azure (your own hardware).
* Azure OpenAI: per token, input (prompt, images included) and output (completion) at their own prices per
  model; the cost per 1,000 images comes from the token usage *measured* on a run (`TokenTally`), since
  it depends on the prompt, the examples and the image detail. Global Standard deployments assumed.

Example:
    >>> cost_per_1000_images("custom_vision")
    2.0
    >>> round(cost_per_1000_images("azure_ml", images_per_second=10.0), 4)
    0.0064
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_AML_INSTANCE",
    "PRICES",
    "Price",
    "TokenTally",
    "cost_per_1000_images",
    "describe_basis",
]

_CUSTOM_VISION_PAGE = "https://azure.microsoft.com/pricing/details/cognitive-services/custom-vision-service/"
_VISION_PAGE = "https://azure.microsoft.com/pricing/details/cognitive-services/computer-vision/"
_VM_PAGE = "https://azure.microsoft.com/pricing/details/virtual-machines/linux/"
_OPENAI_PAGE = "https://azure.microsoft.com/pricing/details/cognitive-services/openai-service/"
#: Azure OpenAI model families with a list price: (family, USD per 1M input tokens, per 1M output tokens).
_OPENAI_MODELS = (
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4.1", 2.00, 8.00),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1-nano", 0.10, 0.40),
)

#: The instance type assumed for Azure ML endpoint costs (the one Microsoft's deployment samples use).
DEFAULT_AML_INSTANCE = "Standard_DS3_v2"


@dataclass(frozen=True)
class Price:
    """One list price: ``usd`` per ``unit``, read from ``source``, last known current in ``as_of``.

    Example:
        >>> PRICES["custom_vision.prediction"].unit
        '1,000 transactions'
    """

    key: str
    item: str
    usd: float
    unit: str
    source: str
    as_of: str
    note: str = ""


def _table(*prices: Price) -> dict[str, Price]:
    return {price.key: price for price in prices}


#: Every price azvision uses, by key. Recalled, not fetched: see the module documentation.
PRICES: dict[str, Price] = _table(
    Price(
        "custom_vision.prediction",
        "Custom Vision S0, prediction",
        2.00,
        "1,000 transactions",
        _CUSTOM_VISION_PAGE,
        "2024",
    ),
    Price(
        "custom_vision.training",
        "Custom Vision S0, training",
        10.00,
        "compute hour",
        _CUSTOM_VISION_PAGE,
        "2024",
    ),
    Price(
        "custom_vision.storage",
        "Custom Vision S0, image storage",
        0.70,
        "1,000 images a month",
        _CUSTOM_VISION_PAGE,
        "2024",
    ),
    Price(
        "image_analysis.tags",
        "Image Analysis S1, tags",
        1.00,
        "1,000 transactions",
        _VISION_PAGE,
        "2024",
        "feature group 1, first 1M transactions a month",
    ),
    Price(
        "image_analysis.objects",
        "Image Analysis S1, objects",
        1.00,
        "1,000 transactions",
        _VISION_PAGE,
        "2024",
        "feature group 1 as recalled, first 1M transactions a month",
    ),
    Price(
        "image_analysis.caption",
        "Image Analysis S1, caption",
        1.50,
        "1,000 transactions",
        _VISION_PAGE,
        "2024",
        "feature group 2 (with Describe) as recalled, first 1M transactions a month",
    ),
    Price(
        "image_analysis.categories",
        "Computer Vision 3.2 S1, categories",
        1.00,
        "1,000 transactions",
        _VISION_PAGE,
        "2024",
        "feature group 1 as recalled, first 1M transactions a month",
    ),
    Price(
        f"azure_ml.{DEFAULT_AML_INSTANCE}",
        f"Azure ML managed online endpoint, one {DEFAULT_AML_INSTANCE} instance (4 vCPU, 14 GiB)",
        0.229,
        "instance hour",
        _VM_PAGE,
        "2024",
        "Azure ML adds no surcharge on managed online endpoints; you pay the VM hours",
    ),
    Price("onnx.local", "ONNX export run locally", 0.0, "1,000 images", "", "", "your own hardware"),
    *(
        Price(
            f"azure_openai.{family}.{side}",
            f"Azure OpenAI {family}, {side} tokens",
            usd,
            f"1M {side} tokens",
            _OPENAI_PAGE,
            "2025",
            "Global Standard deployment; images count as input tokens",
        )
        for family, usd_in, usd_out in _OPENAI_MODELS
        for side, usd in (("input", usd_in), ("output", usd_out))
    ),
)


def _openai_family(model: str | None) -> str | None:
    """The priced family of a model name as the service reports it (``gpt-4o-2024-11-20`` → ``gpt-4o``)."""
    if not model:
        return None
    name = model.lower()
    matches = [family for family, _, _ in _OPENAI_MODELS if name == family or name.startswith(family + "-")]
    return max(matches, key=len) if matches else None


class TokenTally:
    """The token usage of a run's answers (``Prediction.usage``), for a token-billed backend's cost.

    Example:
        >>> from azvision import Prediction
        >>> tally = TokenTally()
        >>> tally.add(Prediction(labels=(), backend="azure_openai", model="gpt-4o-2024-11-20",
        ...                      usage={"prompt_tokens": 400, "completion_tokens": 10}))
        >>> tally.per_image(), round(cost_per_1000_images("azure_openai", tokens=tally), 4)
        ((400.0, 10.0), 1.1)
    """

    def __init__(self) -> None:
        self.images = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._models: Counter[str] = Counter()

    def add(self, outcome: object) -> None:
        """Count one outcome: a prediction with ``usage`` adds its tokens; anything else is ignored."""
        usage = getattr(outcome, "usage", None)
        if not usage:
            return
        self.images += 1
        self.prompt_tokens += int(usage.get("prompt_tokens", 0))
        self.completion_tokens += int(usage.get("completion_tokens", 0))
        model = getattr(outcome, "model", None)
        if model:
            self._models[str(model)] += 1

    @property
    def model(self) -> str | None:
        """The model that answered most of the counted images."""
        common = self._models.most_common(1)
        return common[0][0] if common else None

    def per_image(self) -> tuple[float, float] | None:
        """Mean (prompt, completion) tokens per counted image; ``None`` before any."""
        if not self.images:
            return None
        return self.prompt_tokens / self.images, self.completion_tokens / self.images


_IMAGE_ANALYSIS_FEATURES = ("tags", "objects", "caption")


def cost_per_1000_images(
    backend: str,
    *,
    mode: str = "tags",
    features: Iterable[str] = (),
    images_per_second: float | None = None,
    instance_type: str = DEFAULT_AML_INSTANCE,
    tokens: TokenTally | None = None,
) -> float | None:
    """List-price cost in USD of classifying 1,000 images one request each; ``None`` when unknown.

    ``backend`` is a registry name. Image Analysis: ``mode`` (``"tags"``, ``"objects"``,
    ``"categories"``) plus any extra ``features`` requested on the same call, each billed. Azure ML:
    needs the measured ``images_per_second`` of one busy ``instance_type`` instance (``None`` without it,
    or for an instance type not in `PRICES`). Azure OpenAI: needs the ``tokens`` a run used (``None``
    without them, or for a model not in `PRICES`).

    Example:
        >>> cost_per_1000_images("image_analysis", mode="tags", features=("caption",))
        2.5
        >>> cost_per_1000_images("onnx")
        0.0
    """
    if backend == "custom_vision":
        return PRICES["custom_vision.prediction"].usd
    if backend == "onnx":
        return PRICES["onnx.local"].usd
    if backend == "image_analysis":
        if mode == "categories":
            return PRICES["image_analysis.categories"].usd
        billed = dict.fromkeys([mode, *features])
        unknown = [name for name in billed if name not in _IMAGE_ANALYSIS_FEATURES]
        if unknown:
            return None
        return round(sum(PRICES[f"image_analysis.{name}"].usd for name in billed), 6)
    if backend == "azure_ml":
        price = PRICES.get(f"azure_ml.{instance_type}")
        if price is None or not images_per_second or images_per_second <= 0:
            return None
        return price.usd / (images_per_second * 3600.0) * 1000.0
    if backend == "azure_openai":
        return _openai_cost(tokens)
    return None


def _openai_cost(tokens: TokenTally | None) -> float | None:
    family = _openai_family(tokens.model if tokens is not None else None)
    per_image = tokens.per_image() if tokens is not None else None
    if family is None or per_image is None:
        return None
    prompt, completion = per_image
    usd_in = PRICES[f"azure_openai.{family}.input"].usd
    usd_out = PRICES[f"azure_openai.{family}.output"].usd
    return (prompt * usd_in + completion * usd_out) / 1000.0


def describe_basis(
    backend: str,
    *,
    mode: str = "tags",
    images_per_second: float | None = None,
    tokens: TokenTally | None = None,
) -> str:
    """One line saying what a cost figure is based on (for table footnotes).

    Example:
        >>> describe_basis("custom_vision")
        'Custom Vision S0, prediction: $2.00 per 1,000 transactions (list price, 2024)'
    """
    if backend == "azure_ml":
        price = PRICES[f"azure_ml.{DEFAULT_AML_INSTANCE}"]
        rate = f" at {images_per_second:.1f} images/s measured here" if images_per_second else ""
        return f"{price.item}: ${price.usd:.3f} per {price.unit}{rate} (list price, {price.as_of})"
    if backend == "azure_openai":
        return _openai_basis(tokens)
    key = {
        "custom_vision": "custom_vision.prediction",
        "onnx": "onnx.local",
        "image_analysis": f"image_analysis.{mode}",
    }.get(backend)
    if key is None or key not in PRICES:
        return f"{backend}: no list price known"
    price = PRICES[key]
    if not price.source:
        return f"{price.item}: no Azure charge ({price.note})"
    return f"{price.item}: ${price.usd:.2f} per {price.unit} (list price, {price.as_of})"


def _openai_basis(tokens: TokenTally | None) -> str:
    model = tokens.model if tokens is not None else None
    family = _openai_family(model)
    per_image = tokens.per_image() if tokens is not None else None
    if per_image is None:
        return "Azure OpenAI: billed per token; no token usage was measured"
    if family is None:
        return f"Azure OpenAI {model}: no list price known for this model"
    usd_in = PRICES[f"azure_openai.{family}.input"]
    usd_out = PRICES[f"azure_openai.{family}.output"].usd
    prompt, completion = per_image
    return (
        f"Azure OpenAI {family} (Global Standard): ${usd_in.usd:.2f} / ${usd_out:.2f} per 1M input / output "
        f"tokens x {prompt:.0f} + {completion:.0f} tokens an image measured here (list price, {usd_in.as_of})"
    )
