"""Query parameters of the emulated ``analyze`` operations, checked as the service checks them.

Example:
    >>> from starlette.datastructures import QueryParams
    >>> Query40.parse(QueryParams("features=Caption,tags")).features
    ('tags', 'caption')
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import QueryParams

from azvision.emulator._ia_errors import invalid

__all__ = ["FEATURES_32", "FEATURES_40", "Query40", "features_32"]

FEATURES_40 = ("tags", "caption", "denseCaptions", "objects", "read", "smartCrops", "people")
FEATURES_32 = (
    "Categories",
    "Adult",
    "Color",
    "ImageType",
    "Tags",
    "Description",
    "Faces",
    "Objects",
    "Brands",
)


@dataclass(frozen=True)
class Query40:
    features: tuple[str, ...]
    aspect_ratios: tuple[float, ...]

    @classmethod
    def parse(cls, params: QueryParams) -> Query40:
        raw = [f.strip() for f in params.get("features", "").split(",") if f.strip()]
        if not raw:
            raise invalid(
                "Either 'features' or 'model-name' needs to be specified in the query parameter.",
                "BadArgument",
            )
        known = {f.lower(): f for f in FEATURES_40}
        if any(f.lower() not in known for f in raw):
            raise invalid(
                "Analyze query is invalid.",
                "NotSupportedVisualFeature",
                "Specified feature type is not valid",
            )
        wanted = {known[f.lower()] for f in raw}
        _check_language(params, english_only=bool(wanted - {"tags"}))
        return cls(tuple(f for f in FEATURES_40 if f in wanted), _aspect_ratios(params))


def _check_language(params: QueryParams, *, english_only: bool) -> None:
    # Like the service, only tags may be asked for in another language with 4.0 (they still
    # come back in English here); v3.2 is English-only in the emulator.
    language = params.get("language", "en").lower()
    if language != "en" and (english_only or len(language) < 2):
        raise invalid(
            "Analyze query is invalid.",
            "NotSupportedLanguage",
            "The input language is not supported",
        )


def _aspect_ratios(params: QueryParams) -> tuple[float, ...]:
    text = params.get("smartcrops-aspect-ratios", "").strip()
    if not text:
        return ()
    bad = invalid(
        "Analyze query is invalid.",
        "BadArgument",
        "'smartcrops-aspect-ratios' aspect ratio is not in allowed range [0.75 to 1.8]",
    )
    try:
        ratios = tuple(float(r) for r in text.split(","))
    except ValueError:
        raise bad from None
    if not all(0.75 <= r <= 1.8 for r in ratios):
        raise bad
    return ratios


def features_32(params: QueryParams) -> tuple[str, ...]:
    raw = [f.strip() for f in params.get("visualFeatures", "").split(",") if f.strip()]
    known = {f.lower(): f for f in FEATURES_32}
    if any(f.lower() not in known for f in raw):
        raise invalid(
            "Analyze query is invalid.",
            "NotSupportedVisualFeature",
            "Specified feature type is not valid",
        )
    details = [d.strip().lower() for d in params.get("details", "").split(",") if d.strip()]
    if any(d not in ("celebrities", "landmarks") for d in details):
        raise invalid("Analyze query is invalid.", "InvalidDetails", "Invalid details.")
    _check_language(params, english_only=True)
    wanted = {known[f.lower()] for f in raw} or {"Categories"}
    return tuple(f for f in FEATURES_32 if f in wanted)
