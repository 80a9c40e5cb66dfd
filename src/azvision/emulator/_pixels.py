"""Deterministic pixel statistics behind the emulated Image Analysis answers.

Nothing here is a trained model: `analyse` measures colours, brightness, texture and
contrasting blobs on a small copy of the image, and the service modules turn those numbers into
tags, captions, objects and categories. Same pixels in, same numbers out.

Example:
    >>> from PIL import Image
    >>> stats = analyse(Image.new("RGB", (200, 100), (30, 120, 220)))
    >>> stats.colours[0], (stats.width, stats.height)
    (('Blue', 1.0), (200, 100))
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

# The names Computer Vision 3.2 uses for dominant colours.
COLOUR_NAMES = (
    "Black",
    "Blue",
    "Brown",
    "Gray",
    "Green",
    "Orange",
    "Pink",
    "Purple",
    "Red",
    "Teal",
    "White",
    "Yellow",
)
_INDEX = {name: i for i, name in enumerate(COLOUR_NAMES)}

ANALYSIS_SIDE = 128
_MIN_BLOB_AREA = 0.004
_MAX_BLOBS = 10
_FOREGROUND_DISTANCE = 0.25

Float = NDArray[np.float32]


@dataclass(frozen=True)
class Blob:
    """A connected region that stands out from the background, in original-image pixels."""

    x: int
    y: int
    w: int
    h: int
    area: float  # share of the image covered by the region itself
    fill: float  # region pixels / bounding-box pixels (1.0 rectangle, ~0.785 disc)
    colour: str
    contrast: float  # mean colour distance to the background, 0..1
    skin: float  # share of skin-toned pixels in the region
    uniform: float  # share of region pixels with no luminance change (high for drawn shapes)


@dataclass(frozen=True)
class PixelStats:
    """Whole-image measurements; shares and levels are in [0, 1], ``horizon`` in [-1, 1]."""

    width: int
    height: int
    brightness: float
    saturation: float
    contrast: float
    edges: float  # share of pixels on a strong luminance edge
    flat: float  # share of pixels with no luminance change at all (drawings, renders)
    colours: tuple[tuple[str, float], ...]  # named colour shares, largest first
    background: str  # colour name of the image border
    foreground: str  # most common colour name in the central region
    accent: str  # "RRGGBB" of the most saturated colour
    sky: float  # blue share of the top third
    clouds: float  # white share of the top third
    grass: float  # green share of the bottom third
    water: float  # blue share of the bottom third
    ground: float  # brown/yellow/orange share of the bottom third
    rock: float  # gray share of the bottom third
    horizon: float  # mean luminance of the top third minus that of the bottom third
    skin: float
    highlights: float  # share of very bright pixels
    warm_highlights: float  # share of bright red/orange/yellow pixels
    blobs: tuple[Blob, ...]
    marks: int  # components too small to be objects: glyphs, specks

    def share(self, colour: str) -> float:
        """The fraction of pixels named ``colour`` (0.0 when absent)."""
        return dict(self.colours).get(colour, 0.0)


def analyse(image: Image.Image, size: tuple[int, int] | None = None) -> PixelStats:
    """Measure ``image`` (any mode) on a copy at most ``ANALYSIS_SIDE`` pixels on its longer side.

    ``size`` is the image's true ``(width, height)`` when ``image`` is a reduced decode (JPEG
    draft mode); boxes and ``width``/``height`` are reported in those pixels.
    """
    width, height = size or image.size
    rgb = np.asarray(_small_rgb(image), dtype=np.float32) / np.float32(255.0)
    hue, sat, val = _hsv(rgb)
    names = _colour_index(hue, sat, val)
    # Element-wise rather than a matrix product, which BLAS may round differently per machine.
    luma = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).astype(np.float32)
    gradient = _gradient(luma)
    skin = _skin_mask(rgb)
    rows = rgb.shape[0]
    third = max(1, rows // 3)
    top, bottom = names[:third], names[rows - third :]
    bright = luma > 0.85
    warm = bright & np.isin(names, [_INDEX["Red"], _INDEX["Orange"], _INDEX["Yellow"]])
    background_rgb = np.median(_border(rgb), axis=0)
    blobs, marks = _components(rgb, background_rgb, skin, gradient < 0.01, (width, height))
    return PixelStats(
        width=width,
        height=height,
        brightness=_r(luma.mean()),
        saturation=_r(sat.mean()),
        contrast=_r(min(1.0, float(luma.std()) * 2.0)),
        edges=_r((gradient > 0.12).mean()),
        flat=_r((gradient < 0.01).mean()),
        colours=_shares(names),
        background=_name_of(background_rgb),
        foreground=_central_colour(names),
        accent=_accent(rgb, sat * val),
        sky=_share_of(top, "Blue", "Teal"),
        clouds=_share_of(top, "White"),
        grass=_share_of(bottom, "Green"),
        water=_share_of(bottom, "Blue", "Teal"),
        ground=_share_of(bottom, "Brown", "Yellow", "Orange"),
        rock=_share_of(bottom, "Gray"),
        horizon=_r(luma[:third].mean() - luma[rows - third :].mean()),
        skin=_r(skin.mean()),
        highlights=_r(bright.mean()),
        warm_highlights=_r(warm.mean()),
        blobs=blobs,
        marks=marks,
    )


def _r(value: float | np.floating) -> float:
    # Rounded so that answers stay identical across numpy builds and BLAS kernels.
    return round(float(value), 6)


def _small_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        image = flat
    else:
        image = image.convert("RGB")
    scale = ANALYSIS_SIDE / max(image.size)
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BOX)
    return image


def _hsv(rgb: Float) -> tuple[Float, Float, Float]:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    high = rgb.max(axis=2)
    low = rgb.min(axis=2)
    span = high - low
    safe = np.where(span == 0, 1, span)
    hue = np.where(high == r, (g - b) / safe % 6, np.where(high == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = np.where(span == 0, 0, hue * 60).astype(np.float32)
    sat = np.where(high == 0, 0, span / np.where(high == 0, 1, high)).astype(np.float32)
    return hue, sat, high


def _colour_index(hue: Float, sat: Float, val: Float) -> NDArray[np.int64]:
    bins = np.digitize(hue, [15, 45, 70, 165, 195, 255, 290, 345])
    by_hue = np.array(
        [_INDEX[n] for n in ("Red", "Orange", "Yellow", "Green", "Teal", "Blue", "Purple", "Pink")]
        + [_INDEX["Red"]]
    )
    names = by_hue[bins]
    warm = (hue < 50) | (hue >= 345)
    names = np.where(warm & (val < 0.6), _INDEX["Brown"], names)
    names = np.where((bins == 0) & (sat < 0.5) & (val > 0.7), _INDEX["Pink"], names)
    grey = np.where(val > 0.8, _INDEX["White"], _INDEX["Gray"])
    names = np.where(sat < 0.15, grey, names)
    return np.where(val < 0.2, _INDEX["Black"], names).astype(np.int64)


def _name_of(colour: NDArray[np.floating]) -> str:
    pixel = np.asarray(colour, dtype=np.float32).reshape(1, 1, 3)
    return COLOUR_NAMES[int(_colour_index(*_hsv(pixel))[0, 0])]


def _shares(names: NDArray[np.int64]) -> tuple[tuple[str, float], ...]:
    counts = np.bincount(names.ravel(), minlength=len(COLOUR_NAMES)) / names.size
    ranked = sorted(
        ((COLOUR_NAMES[i], _r(c)) for i, c in enumerate(counts) if c > 0),
        key=lambda item: (-item[1], item[0]),
    )
    return tuple(ranked)


def _share_of(names: NDArray[np.int64], *colours: str) -> float:
    return _r(np.isin(names, [_INDEX[c] for c in colours]).mean())


def _central_colour(names: NDArray[np.int64]) -> str:
    h, w = names.shape
    centre = names[h // 4 : max(h // 4 + 1, 3 * h // 4), w // 4 : max(w // 4 + 1, 3 * w // 4)]
    counts = np.bincount(centre.ravel(), minlength=len(COLOUR_NAMES))
    return COLOUR_NAMES[int(np.argmax(counts))]


def _accent(rgb: Float, vividness: Float) -> str:
    flat = rgb.reshape(-1, 3)
    order = np.argsort(-vividness.ravel(), kind="stable")
    top = flat[order[: max(1, flat.shape[0] // 20)]]
    r, g, b = (round(float(c) * 255) for c in np.median(top, axis=0))
    return f"{r:02X}{g:02X}{b:02X}"


def _gradient(luma: Float) -> Float:
    gx = np.zeros_like(luma)
    gy = np.zeros_like(luma)
    gx[:, :-1] = np.abs(np.diff(luma, axis=1))
    gy[:-1, :] = np.abs(np.diff(luma, axis=0))
    return np.maximum(gx, gy)


def _skin_mask(rgb: Float) -> NDArray[np.bool_]:
    # Two classic skin-tone rules together (explicit RGB of Kovac et al., and the Cr/Cb box of
    # Chai & Ngan): either alone also takes wood, fur and blossom for skin.
    r, g, b = (rgb[..., i] * 255 for i in range(3))
    spread = rgb.max(axis=2) * 255 - rgb.min(axis=2) * 255
    cr = 128 + 0.5 * r - 0.4187 * g - 0.0813 * b
    cb = 128 - 0.1687 * r - 0.3313 * g + 0.5 * b
    mask: NDArray[np.bool_] = (
        (r > 95) & (g > 40) & (b > 20) & (spread > 15) & (np.abs(r - g) > 15) & (r > g) & (r > b)
    ) & ((cr >= 135) & (cr <= 173) & (cb >= 77) & (cb <= 127))
    return mask


def _border(rgb: Float) -> Float:
    h, w = rgb.shape[:2]
    k = max(1, min(h, w) // 16)
    return np.concatenate(
        [
            rgb[:k].reshape(-1, 3),
            rgb[-k:].reshape(-1, 3),
            rgb[:, :k].reshape(-1, 3),
            rgb[:, -k:].reshape(-1, 3),
        ]
    )


def _label(mask: NDArray[np.bool_]) -> NDArray[np.int64]:
    """4-connected component labels (0 = background) by min-label propagation."""
    h, w = mask.shape
    big = h * w + 1
    labels = np.where(mask, np.arange(1, h * w + 1).reshape(h, w), big)
    while True:
        padded = np.pad(labels, 1, constant_values=big)
        neighbours = np.minimum.reduce(
            [
                labels,
                padded[:-2, 1:-1],
                padded[2:, 1:-1],
                padded[1:-1, :-2],
                padded[1:-1, 2:],
            ]
        )
        updated = np.where(mask, neighbours, big)
        # Pointer jumping: follow each label to the label its own pixel now holds.
        flat = np.concatenate([[big], updated.ravel(), [big]])
        jumped = np.where(mask, flat[np.clip(updated, 0, h * w + 1)], big)
        jumped = np.minimum(jumped, updated)
        if np.array_equal(jumped, labels):
            return np.where(mask, labels, 0)
        labels = jumped


def _components(
    rgb: Float,
    background: NDArray[np.floating],
    skin: NDArray[np.bool_],
    still: NDArray[np.bool_],
    size: tuple[int, int],
) -> tuple[tuple[Blob, ...], int]:
    """Regions that differ from the background: the larger ones as blobs, plus a count of marks."""
    h, w = rgb.shape[:2]
    distance = np.sqrt(((rgb - background) ** 2).sum(axis=2) / 3.0)
    mask = distance > _FOREGROUND_DISTANCE
    labels = _label(mask)
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    width, height = size
    found: list[Blob] = []
    large = counts >= max(4, _MIN_BLOB_AREA * labels.size)
    marks = int(np.count_nonzero(~large & (counts >= 3)))
    for blob_id, count in sorted(zip(ids[large], counts[large], strict=True), key=lambda p: -p[1]):
        if len(found) == _MAX_BLOBS:
            break
        rows, cols = np.nonzero(labels == blob_id)
        top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
        if (left == 0 and right == w - 1) or (top == 0 and bottom == h - 1):
            continue  # a band across the whole frame is scenery, not an object
        x0, x1 = int(left * width // w), -(-(int(right) + 1) * width // w)
        y0, y1 = int(top * height // h), -(-(int(bottom) + 1) * height // h)
        found.append(
            Blob(
                x=x0,
                y=y0,
                w=max(1, min(width, x1) - x0),
                h=max(1, min(height, y1) - y0),
                area=_r(count / labels.size),
                fill=_r(count / ((bottom - top + 1) * (right - left + 1))),
                colour=_name_of(rgb[rows, cols].mean(axis=0)),
                contrast=_r(min(1.0, float(distance[rows, cols].mean()))),
                skin=_r(skin[rows, cols].mean()),
                uniform=_r(still[rows, cols].mean()),
            )
        )
    return tuple(found), marks
