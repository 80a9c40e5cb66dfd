"""The JSON bodies of the emulated Image Analysis 4.0 and Computer Vision 3.2 ``analyze`` answers.

Example:
    >>> from PIL import Image
    >>> from azvision.emulator._pixels import analyse
    >>> body = result_32((analyse(Image.new("RGB", (80, 60))), "PNG"), ("Color",), "id-1")
    >>> body["metadata"], body["color"]["isBwImg"]
    ({'width': 80, 'height': 60, 'format': 'Png'}, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from azvision.emulator._ia_describe import (
    a_or_an,
    box_of,
    caption_of,
    categories_of,
    confidence,
    object_confidence,
    shape_of,
    smart_crops,
    tags_of,
)
from azvision.emulator._ia_query import Query40
from azvision.emulator._pixels import PixelStats

__all__ = ["MODEL_VERSION_32", "MODEL_VERSION_40", "result_32", "result_40"]

MODEL_VERSION_40 = "2023-10-01"
MODEL_VERSION_32 = "2021-05-01"


def result_40(measured: tuple[PixelStats, str], query: Query40) -> dict[str, Any]:
    s, _ = measured
    tags = tags_of(s)
    caption, caption_confidence = caption_of(s, tags)
    whole = {"x": 0, "y": 0, "w": s.width, "h": s.height}
    builders: dict[str, Callable[[], tuple[str, Any]]] = {
        "caption": lambda: (
            "captionResult",
            {"text": caption, "confidence": caption_confidence},
        ),
        "denseCaptions": lambda: (
            "denseCaptionsResult",
            {
                "values": [{"text": caption, "confidence": caption_confidence, "boundingBox": whole}]
                + [
                    {
                        "text": a_or_an(f"{b.colour.lower()} {shape_of(b)}"),
                        "confidence": object_confidence(b),
                        "boundingBox": box_of(b),
                    }
                    for b in s.blobs[:9]
                ]
            },
        ),
        "tags": lambda: (
            "tagsResult",
            {"values": [{"name": n, "confidence": c} for n, c in tags]},
        ),
        "objects": lambda: (
            "objectsResult",
            {
                "values": [
                    {
                        "boundingBox": box_of(b),
                        "tags": [{"name": shape_of(b), "confidence": object_confidence(b)}],
                    }
                    for b in s.blobs
                ]
            },
        ),
        "read": lambda: ("readResult", {"blocks": []}),
        "smartCrops": lambda: (
            "smartCropsResult",
            {"values": smart_crops(s, query.aspect_ratios)},
        ),
        "people": lambda: (
            "peopleResult",
            {
                "values": [
                    {"boundingBox": box_of(b), "confidence": confidence(0.4 + 0.6 * b.skin)}
                    for b in s.blobs
                    if b.skin >= 0.5
                ]
            },
        ),
    }
    body: dict[str, Any] = {
        "modelVersion": MODEL_VERSION_40,
        "metadata": {"width": s.width, "height": s.height},
    }
    body.update(builders[feature]() for feature in query.features)
    return body


def result_32(measured: tuple[PixelStats, str], features: tuple[str, ...], request_id: str) -> dict[str, Any]:
    s, image_format = measured
    tags = tags_of(s)
    caption, caption_confidence = caption_of(s, tags)
    grey = s.saturation < 0.06
    builders: dict[str, Callable[[], tuple[str, Any]]] = {
        "Categories": lambda: ("categories", categories_of(s, tags)),
        "Adult": lambda: (
            "adult",
            {
                "isAdultContent": False,
                "isRacyContent": False,
                "isGoryContent": False,
                "adultScore": confidence(0.002 + 0.01 * s.skin),
                "racyScore": confidence(0.003 + 0.02 * s.skin),
                "goreScore": confidence(0.001 + 0.005 * s.share("Red")),
            },
        ),
        "Color": lambda: (
            "color",
            {
                "dominantColorForeground": s.foreground,
                "dominantColorBackground": s.background,
                "dominantColors": [c for c, share in s.colours if share >= 0.1][:3] or [s.colours[0][0]],
                "accentColor": s.accent,
                "isBwImg": grey,
                "isBWImg": grey,
            },
        ),
        "ImageType": lambda: (
            "imageType",
            {
                "clipArtType": 3 if s.flat >= 0.85 else 2 if s.flat >= 0.7 else 0,
                "lineDrawingType": int(grey and s.flat >= 0.85 and s.edges >= 0.02),
            },
        ),
        "Tags": lambda: ("tags", [{"name": n, "confidence": c} for n, c in tags]),
        "Description": lambda: (
            "description",
            {
                "tags": [n for n, _ in tags[:10]],
                "captions": [{"text": caption, "confidence": caption_confidence}],
            },
        ),
        "Faces": lambda: ("faces", []),
        "Objects": lambda: (
            "objects",
            [
                {
                    "rectangle": box_of(b),
                    "object": shape_of(b),
                    "confidence": object_confidence(b),
                }
                for b in s.blobs
            ],
        ),
        "Brands": lambda: ("brands", []),
    }
    body: dict[str, Any] = dict(builders[feature]() for feature in features)
    body["requestId"] = request_id
    body["metadata"] = {
        "width": s.width,
        "height": s.height,
        "format": image_format.capitalize(),
    }
    body["modelVersion"] = MODEL_VERSION_32
    return body
