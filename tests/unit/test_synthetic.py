"""The generated demo data set: deterministic, laid out like a real one, and learnable for the right reason."""

from __future__ import annotations

import colorsys
import hashlib
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageFilter, ImageStat

from azvision.datasets import Dataset
from azvision.synthetic import SHAPES, Colours, make_dataset, shape_image


def digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def test_same_arguments_give_the_same_files_and_another_seed_other_images(tmp_path: Path) -> None:
    make_dataset(tmp_path / "a", per_class=3, seed=4)
    make_dataset(tmp_path / "b", per_class=3, seed=4)
    make_dataset(tmp_path / "c", per_class=3, seed=5)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert set(digest(tmp_path / "a").values()).isdisjoint(digest(tmp_path / "c").values())


def test_an_image_does_not_change_when_the_set_grows(tmp_path: Path) -> None:
    small = digest(Path(make_dataset(tmp_path / "small", per_class=2, seed=1).root or ""))
    large = digest(Path(make_dataset(tmp_path / "large", per_class=5, seed=1).root or ""))
    assert small.items() <= large.items()


def test_one_folder_per_class_that_the_dataset_loader_reads_back(tmp_path: Path) -> None:
    data = make_dataset(tmp_path, classes=("star", "ring", "cross"), per_class=4, image_format="png")
    assert data.counts() == {"cross": 4, "ring": 4, "star": 4}
    assert sorted(p.name for p in (tmp_path / "star").iterdir()) == [f"star_{i:03d}.png" for i in range(4)]
    reread = Dataset.from_folder(tmp_path)
    assert sorted((item.path, item.labels) for item in reread) == sorted(
        (item.path, item.labels) for item in data
    )
    assert not reread.skipped
    with Image.open(data.items[0].path) as image:
        assert image.format == "PNG"


def test_jpeg_is_the_default_format_and_sizes_stay_in_range(tmp_path: Path) -> None:
    data = make_dataset(tmp_path, per_class=5, size=(200, 260))
    for item in data:
        with Image.open(item.path) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert all(200 <= side <= 260 for side in image.size)
    assert shape_image("hexagon", seed=0, size=96).size == (96, 96)


def shape_mask(image: Image.Image) -> Image.Image:
    """White where the image differs clearly from its background (the median of its top rows)."""
    top = ImageStat.Stat(image.crop((0, 0, image.width, 4))).median
    background = Image.new("RGB", image.size, (top[0], top[1], top[2]))
    red, green, blue = ImageChops.difference(image, background).split()
    summed = ImageChops.add(ImageChops.add(red, green), blue)
    # Thin clutter lines and pixel noise fall away under a 5-pixel minimum filter; the shape does not.
    return summed.point(lambda v: 255 if v > 80 else 0).filter(ImageFilter.MinFilter(5))


@pytest.mark.parametrize("kind", SHAPES)
def test_the_shape_stands_out_inside_the_centre_crop(kind: str) -> None:
    """Models centre-crop (Custom Vision keeps the middle 224 of 256): the shape must be inside it."""
    for seed in range(6):
        image = shape_image(kind, seed=seed, size=(224, 320))
        box = shape_mask(image).getbbox()
        assert box is not None, (kind, seed)
        width, height = image.size
        short = min(width, height)
        left, top = (width - short) / 2, (height - short) / 2
        crop = (left + 0.06 * short, top + 0.06 * short, left + 0.94 * short, top + 0.94 * short)
        assert crop[0] <= box[0] and crop[1] <= box[1] and box[2] <= crop[2] and box[3] <= crop[3], (
            kind,
            seed,
        )
        assert (box[2] - box[0]) >= 0.2 * short  # big enough to see


def ink_hue(kind: str, seed: int, colours: Colours) -> float:
    """Hue (0-1) of the shape's pixels."""
    image = shape_image(kind, seed=seed, size=160, colours=colours, classes=("circle", "square", "triangle"))
    red, green, blue = ImageStat.Stat(image, shape_mask(image)).mean
    return colorsys.rgb_to_hsv(red / 255, green / 255, blue / 255)[0]


def hue_distance(a: float, b: float) -> float:
    return min(abs(a - b), 1 - abs(a - b))


def test_per_class_colours_tell_classes_apart_and_random_colours_do_not_follow_the_class() -> None:
    circles = [ink_hue("circle", seed, "per_class") for seed in range(5)]
    squares = [ink_hue("square", seed, "per_class") for seed in range(5)]
    assert max(hue_distance(a, b) for a in circles for b in circles) < 0.08
    assert min(hue_distance(a, b) for a in circles for b in squares) > 0.25  # a third of the wheel apart
    spread = [ink_hue("circle", seed, "random") for seed in range(8)]
    assert max(hue_distance(a, b) for a in spread for b in spread) > 0.3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"classes": ("circle", "blob")}, "classes must be distinct names"),
        ({"classes": ("circle", "circle")}, "classes must be distinct names"),
        ({"classes": ()}, "classes must be distinct names"),
        ({"per_class": 0}, "per_class must be at least 1"),
        ({"image_format": "gif"}, "image_format must be"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(
    tmp_path: Path, options: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_dataset(tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="unknown shape"):
        shape_image("blob")
