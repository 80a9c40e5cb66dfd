"""What the emulated Image Analysis says about an image, from its pixel statistics.

**This is an emulation, not the service.** There is no trained model: tags come from dominant
colours, brightness, saturation, texture and where blue or green sits in the frame; objects from
regions that contrast with the background (`azvision.emulator._pixels`); a caption is
composed from the top tags; v3.2 categories are drawn only from the service's 86-category
taxonomy (``azvision/data/category_taxonomy_86.txt``). The same image always gets the same answer.

Example:
    >>> from PIL import Image
    >>> from azvision.emulator._pixels import analyse
    >>> stats = analyse(Image.new("RGB", (200, 100), (30, 120, 220)))
    >>> tags_of(stats)[0][0]
    'blue'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from azvision.emulator._pixels import Blob, PixelStats

__all__ = [
    "CATEGORY_TAXONOMY",
    "a_or_an",
    "box_of",
    "caption_of",
    "categories_of",
    "confidence",
    "object_confidence",
    "shape_of",
    "smart_crops",
    "tags_of",
]

# Read as a file (not through the SDK's taxonomy module): the emulator shares data, not code.
_TAXONOMY_FILE = Path(__file__).resolve().parent.parent / "data" / "category_taxonomy_86.txt"
#: The 86 category names of Computer Vision 3.2, in the taxonomy page's order.
CATEGORY_TAXONOMY: tuple[str, ...] = tuple(
    line.strip() for line in _TAXONOMY_FILE.read_text("utf-8").splitlines() if line.strip()
)

_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def confidence(value: float) -> float:
    return round(min(max(value, 0.0), 0.9999), 4)


def shape_of(blob: Blob) -> str:
    if blob.skin >= 0.5:
        return "person"
    if blob.uniform < 0.5:
        return "object"  # a textured region of a photo: its outline says little
    squareish = 0.8 <= blob.w / blob.h <= 1.25
    if blob.fill >= 0.9:
        return "square" if squareish else "rectangle"
    if blob.fill >= 0.68:
        return "circle" if squareish else "ellipse"
    if 0.4 <= blob.fill < 0.62:
        return "triangle"
    return "shape"


def object_confidence(blob: Blob) -> float:
    # The service reports object confidences with three decimals.
    return round(0.5 + 0.45 * blob.contrast, 3)


def _text_score(s: PixelStats) -> float:
    # Glyphs: many small dark-on-light marks, little colour, moderate edge density (noise
    # would have far more edges).
    if s.marks >= 15 and s.saturation < 0.25 and s.brightness > 0.5 and 0.03 <= s.edges <= 0.4:
        return 0.55 + min(0.44, s.marks / 200)
    return 0.0


def tags_of(s: PixelStats) -> list[tuple[str, float]]:
    found: dict[str, float] = {}

    def add(name: str, value: float) -> None:
        if value >= 0.5:
            found[name] = max(found.get(name, 0.0), confidence(value))

    for rank, (colour, share) in enumerate(s.colours):
        if share >= 0.12 or rank == 0:
            add(colour.lower(), 0.55 + 0.45 * min(1.0, share / 0.6))
    green = s.share("Green")
    if s.sky >= 0.3:
        add("sky", 0.5 + 0.49 * s.sky)
    if s.clouds >= 0.2 and s.sky >= 0.3:
        add("cloud", 0.5 + 0.45 * s.clouds)
    if s.grass >= 0.3:
        add("grass", 0.5 + 0.45 * s.grass)
        if s.sky >= 0.3:
            add("field", 0.45 + 0.5 * min(s.grass, s.sky))
    # Blue above and below is sky unless the lower part is darker, as water under a sky is.
    if s.water >= 0.3 and s.grass < 0.3 and (s.sky < 0.3 or s.horizon >= 0.05):
        add("water", 0.5 + 0.45 * s.water)
    if green >= 0.3 and s.edges >= 0.08:
        add("plant", 0.5 + 0.4 * green + s.edges)
    scenery = max(s.sky, s.grass, s.water)
    if scenery >= 0.3:
        add("outdoor", 0.6 + 0.39 * scenery)
        if max(s.grass, s.water, green) >= 0.3:
            add("nature", 0.5 + 0.45 * max(s.grass, s.water, green))
    add("text", _text_score(s))
    if s.skin >= 0.12:
        add("person", 0.5 + 0.49 * min(1.0, s.skin / 0.4))
    if s.brightness < 0.25:
        add("dark", 0.5 + 2 * (0.25 - s.brightness))
    if s.saturation < 0.06:
        add("black and white", 0.95 - 5 * s.saturation)
    vivid = sum(1 for c, share in s.colours if c not in ("Black", "White", "Gray") and share >= 0.08)
    if s.saturation >= 0.4 and vivid >= 3:
        add("colorful", 0.5 + 0.5 * s.saturation)
    if s.flat >= 0.85:
        add("graphics", 0.5 + 0.45 * s.flat)
    if s.edges >= 0.25 and s.saturation >= 0.2:
        add("pattern", 0.5 + s.edges)
    if s.blobs:
        add(shape_of(s.blobs[0]), object_confidence(s.blobs[0]))
    if max(s.width / s.height, s.height / s.width) >= 2.2:
        add("panorama", 0.7)
    return sorted(found.items(), key=lambda item: (-item[1], item[0]))[:20]


def a_or_an(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _describe_blobs(blobs: tuple[Blob, ...], background: str) -> str:
    shapes = {shape_of(b) for b in blobs}
    colours = {b.colour.lower() for b in blobs}
    if len(blobs) == 1:
        thing = a_or_an(f"{blobs[0].colour.lower()} {shape_of(blobs[0])}")
    else:
        noun = f"{shapes.pop()}s" if len(shapes) == 1 else "shapes"
        colour = f"{colours.pop()} " if len(colours) == 1 else ""
        thing = f"{_NUMBERS[len(blobs)]} {colour}{noun}"
    return f"{thing} on {a_or_an(background)} background"


def caption_of(s: PixelStats, tags: list[tuple[str, float]]) -> tuple[str, float]:
    conf = dict(tags)
    background = s.background.lower()
    scenes: list[tuple[tuple[str, ...], str]] = [
        (("person",), f"a person in front of {a_or_an(background)} background"),
        (("text",), f"text on {a_or_an(background)} background"),
        (("sky", "grass"), "a grassy field under a blue sky"),
        (("sky", "water"), "a body of water under a blue sky"),
        (("sky", "cloud"), "a blue sky with clouds"),
        (("grass",), "a green field"),
        (("water",), "a body of water"),
        (("plant",), "a close up of green plants"),
        (("sky",), "a clear blue sky"),
    ]
    for needs, text in scenes:
        if all(n in conf for n in needs):
            return text, confidence(0.9 * sum(conf[n] for n in needs) / len(needs))
    if s.blobs:
        blobs = s.blobs[: len(_NUMBERS) - 1]
        mean = sum(object_confidence(b) for b in blobs) / len(blobs)
        return _describe_blobs(blobs, background), confidence(0.9 * mean)
    if "dark" in conf:
        return "a dark scene", confidence(0.9 * conf["dark"])
    colour, share = s.colours[0]
    return f"{a_or_an(colour.lower())} background", confidence(0.45 + 0.5 * share)


def box_of(blob: Blob) -> dict[str, int]:
    return {"x": blob.x, "y": blob.y, "w": blob.w, "h": blob.h}


def smart_crops(s: PixelStats, ratios: tuple[float, ...]) -> list[dict[str, Any]]:
    aspect = s.width / s.height
    wanted = ratios or (round(min(2.0, max(0.5, aspect)), 2),)
    if s.blobs:
        cx = sum((b.x + b.w / 2) * b.area for b in s.blobs) / sum(b.area for b in s.blobs)
        cy = sum((b.y + b.h / 2) * b.area for b in s.blobs) / sum(b.area for b in s.blobs)
    else:
        cx, cy = s.width / 2, s.height / 2
    crops = []
    for ratio in wanted:
        w = min(s.width, round(s.height * ratio))
        h = min(s.height, round(w / ratio))
        x = min(max(0, round(cx - w / 2)), s.width - w)
        y = min(max(0, round(cy - h / 2)), s.height - h)
        crops.append({"aspectRatio": ratio, "boundingBox": {"x": x, "y": y, "w": w, "h": h}})
    return crops


def _quantise(score: float) -> float:
    # The v3.2 service reports category scores in steps of 1/256.
    return min(255, max(1, round(score * 256))) / 256


def categories_of(s: PixelStats, tags: list[tuple[str, float]]) -> list[dict[str, Any]]:
    conf = dict(tags)
    found: dict[str, float] = {}
    if "person" in conf:
        people = [b for b in s.blobs if b.skin >= 0.5]
        if len(people) >= 3:
            found["people_group"] = conf["person"]
        big = max((b.area for b in people), default=0.0)
        found["people_portrait" if big >= 0.2 else "people_"] = conf["person"]
    if "text" in conf:
        found["text_"] = conf["text"]
    if "grass" in conf:
        found["outdoor_field" if "sky" in conf else "outdoor_grass"] = conf["grass"]
    if "water" in conf:
        found["outdoor_oceanbeach" if s.ground >= 0.15 else "outdoor_water"] = conf["water"]
    if "sky" in conf and not {"grass", "water"} & conf.keys():
        if s.rock >= 0.4:
            found["outdoor_mountain"] = 0.5 + 0.45 * s.rock
        found["sky_cloud"] = conf["sky"]
    if "plant" in conf:
        found["plant_leaves" if s.edges >= 0.2 else "plant_"] = conf["plant"]
    if "dark" in conf:
        if s.warm_highlights >= 0.03:
            found["dark_fire"] = conf["dark"]
        elif s.highlights >= 0.02:
            found["dark_light"] = conf["dark"]
        else:
            found["dark_"] = conf["dark"]
    earthy = s.share("Brown") + s.share("Red") + s.share("Orange")
    if earthy >= 0.5 and s.edges >= 0.12:
        found["building_brickwall"] = 0.5 + 0.45 * earthy
    if "pattern" in conf:
        found["abstract_texture"] = conf["pattern"]
    if "graphics" in conf and not found:
        shape = shape_of(s.blobs[0]) if s.blobs else ""
        name = {"square": "abstract_rect", "rectangle": "abstract_rect"}.get(shape)
        found[name or ("abstract_shape" if shape else "abstract_")] = conf["graphics"]
    if not found:
        return [{"name": "others_", "score": _quantise(0.3 + 0.2 * s.contrast)}]
    ranked = sorted(found.items(), key=lambda item: (-item[1], item[0]))[:3]
    return [{"name": name, "score": _quantise(score)} for name, score in ranked]
