"""Shared fixtures for tests that run against the emulator: small, deterministic image data sets."""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image, ImageDraw

SHAPES = ("circle", "stripes", "checker")
Box = tuple[float, float, float, float]  # left, top, width, height, normalised


def shape_image(kind: str, seed: int, size: int = 128) -> bytes:
    """A PNG of one of :data:`SHAPES` in random colours, sizes and positions, with pixel noise."""
    rng = random.Random(f"{kind}-{seed}")
    image = Image.new("RGB", (size, size), tuple(rng.randint(0, 255) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    ink = tuple(rng.randint(0, 255) for _ in range(3))
    if kind == "circle":
        radius = rng.randint(size // 6, size * 2 // 5)
        x, y = rng.randint(radius, size - radius), rng.randint(radius, size - radius)
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=ink)
    elif kind == "stripes":
        width = rng.randint(4, 12)
        for x in range(0, size, 2 * width):
            draw.rectangle([x, 0, x + width, size], fill=ink)
    elif kind == "checker":
        cell = rng.randint(8, 20)
        for x in range(0, size, cell):
            for y in range(0, size, cell):
                if (x // cell + y // cell) % 2:
                    draw.rectangle([x, y, x + cell, y + cell], fill=ink)
    else:
        raise ValueError(kind)
    noise = np.random.default_rng(rng.randrange(2**32)).integers(-20, 21, (size, size, 3))
    pixels = (np.asarray(image, dtype=np.int16) + noise).clip(0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def object_scene(kind: str, seed: int, size: int = 160) -> tuple[bytes, Box]:
    """A PNG with one ``"ball"`` or ``"box"`` on a noisy background, and the object's box."""
    rng = random.Random(f"{kind}-{seed}")
    background = np.random.default_rng(rng.randrange(2**32)).integers(90, 160, (size, size, 3))
    image = Image.fromarray(background.astype(np.uint8))
    draw = ImageDraw.Draw(image)
    side = rng.randint(45, 70)
    x, y = rng.randint(0, size - side), rng.randint(0, size - side)
    if kind == "ball":
        draw.ellipse([x, y, x + side, y + side], fill=(220, 30, 30))
    elif kind == "box":
        draw.rectangle([x, y, x + side, y + side], fill=(20, 20, 200))
        draw.rectangle(
            [x + side // 4, y + side // 4, x + 3 * side // 4, y + 3 * side // 4], fill=(240, 240, 0)
        )
    else:
        raise ValueError(kind)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue(), (x / size, y / size, side / size, side / size)


@dataclass(frozen=True)
class ShapeDataset:
    """Training and held-out images per class (disjoint seeds)."""

    train: dict[str, list[bytes]]
    test: dict[str, list[bytes]]


@pytest.fixture(scope="session")
def shape_dataset() -> ShapeDataset:
    """3 visually distinct classes of 128 px images: 12 to train and 5 held out per class."""
    return ShapeDataset(
        train={kind: [shape_image(kind, i) for i in range(12)] for kind in SHAPES},
        test={kind: [shape_image(kind, 1000 + i) for i in range(5)] for kind in SHAPES},
    )


@pytest.fixture(scope="session")
def make_shape_image() -> Callable[..., bytes]:
    """:func:`shape_image`, for tests that need more images."""
    return shape_image


@pytest.fixture(scope="session")
def make_object_scene() -> Callable[..., tuple[bytes, Box]]:
    """:func:`object_scene`, for object detection tests."""
    return object_scene
