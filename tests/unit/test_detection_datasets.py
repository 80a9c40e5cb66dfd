"""DetectionDataset: COCO, VOC and YOLO readers, format detection, and validation naming every offender."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from azvision import AnnotationError, BoundingBox, ConfigurationError, DetectionDataset
from azvision.synthetic import make_detection_dataset


def image(path: Path, size: tuple[int, int] = (200, 100)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (40, 90, 160)).save(path)
    return path


def coco(
    root: Path, annotations: list[dict[str, object]], images: list[dict[str, object]] | None = None
) -> Path:
    doc = {
        "images": images or [{"id": 1, "file_name": "a.png", "width": 200, "height": 100}],
        "categories": [{"id": 1, "name": "fork"}, {"id": 2, "name": " Scissors  "}],
        "annotations": annotations,
    }
    path = root / "instances.json"
    path.write_text(json.dumps(doc))
    return path


def test_coco_boxes_are_normalised_and_labels_stripped(tmp_path: Path) -> None:
    image(tmp_path / "a.png")
    path = coco(tmp_path, [{"image_id": 1, "category_id": 2, "bbox": [50, 25, 100, 50]}])
    data = DetectionDataset.from_coco(path)
    (item,) = data.items
    assert item.size == (200, 100)
    assert item.regions[0].label == "Scissors"
    assert item.regions[0].box == BoundingBox(left=0.25, top=0.25, width=0.5, height=0.5)
    assert data.categories == ("fork", "Scissors")


def test_every_offender_is_named_in_one_error(tmp_path: Path) -> None:
    image(tmp_path / "a.png")
    image(tmp_path / "broken.png").write_bytes(b"not a picture")
    images = [
        {"id": 1, "file_name": "a.png", "width": 200, "height": 100},
        {"id": 2, "file_name": "missing.png", "width": 200, "height": 100},
        {"id": 3, "file_name": "broken.png", "width": 200, "height": 100},
    ]
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [150, 10, 100, 20]},  # far outside
        {"id": 11, "image_id": 1, "category_id": 1, "bbox": [10, 10, 0, 20]},  # zero area
        {"id": 12, "image_id": 1, "category_id": 9, "bbox": [10, 10, 20, 20]},  # unknown category
        {"id": 13, "image_id": 1, "category_id": 1, "bbox": [100, 50, 101, 50.5]},  # rounding: clipped
    ]
    with pytest.raises(AnnotationError) as info:
        DetectionDataset.from_coco(coco(tmp_path, annotations, images))
    problems = info.value.problems
    assert len(problems) == 5
    text = "\n".join(problems)
    assert "annotation 10" in text and "outside the image" in text
    assert "annotation 11" in text and "no area" in text
    assert "unknown category id 9" in text
    assert "missing.png: no such image file" in text
    assert "broken.png: not an image" in text
    assert isinstance(info.value, ConfigurationError)
    assert "5 annotation problems" in str(info.value)


def test_box_past_the_edge_by_rounding_is_clipped(tmp_path: Path) -> None:
    image(tmp_path / "a.png")
    path = coco(tmp_path, [{"image_id": 1, "category_id": 1, "bbox": [100, 50, 101, 50.5]}])
    box = DetectionDataset.from_coco(path).items[0].regions[0].box
    assert box.right == 1.0 and box.bottom == 1.0 and box.left == 0.5


def test_images_without_regions_are_kept_as_negatives(tmp_path: Path) -> None:
    image(tmp_path / "a.png")
    image(tmp_path / "b.png")
    images = [
        {"id": 1, "file_name": "a.png", "width": 200, "height": 100},
        {"id": 2, "file_name": "b.png", "width": 200, "height": 100},
    ]
    path = coco(tmp_path, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 20, 20]}], images)
    data = DetectionDataset.from_coco(path)
    assert len(data) == 2 and data.negatives == 1
    assert data.counts() == {"fork": 1}


VOC = """<annotation><filename>{name}</filename><size><width>200</width><height>100</height></size>
<object><name>fork</name><bndbox><xmin>20</xmin><ymin>10</ymin><xmax>120</xmax><ymax>60</ymax></bndbox></object>
{extra}</annotation>"""


def test_voc_folder_with_annotations_and_jpegimages(tmp_path: Path) -> None:
    image(tmp_path / "JPEGImages" / "one.jpg")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "one.xml").write_text(VOC.format(name="one.jpg", extra=""))
    data = DetectionDataset.from_path(tmp_path)
    assert data.items[0].regions[0].box == BoundingBox(left=0.1, top=0.1, width=0.5, height=0.5)
    assert data.labels == ("fork",)


def test_voc_problems_are_all_listed(tmp_path: Path) -> None:
    image(tmp_path / "one.png")
    bad = "<object><name>knife</name><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>5</xmax><ymax>9</ymax></bndbox></object>"
    (tmp_path / "one.xml").write_text(VOC.format(name="one.png", extra=bad))
    (tmp_path / "two.xml").write_text(VOC.format(name="two.png", extra=""))
    (tmp_path / "three.xml").write_text("<annotation>")
    with pytest.raises(AnnotationError) as info:
        DetectionDataset.from_voc(tmp_path)
    text = "\n".join(info.value.problems)
    assert len(info.value.problems) == 3
    assert "one.xml: object 2" in text and "no area" in text
    assert "two.png: no such image file" in text
    assert "three.xml: not valid XML" in text


def test_yolo_with_classes_txt_and_images_labels_folders(tmp_path: Path) -> None:
    image(tmp_path / "images" / "a.png")
    image(tmp_path / "images" / "empty.png")
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("1 0.5 0.5 0.5 0.5\n0 0.1 0.1 0.2 0.2\n")
    (tmp_path / "classes.txt").write_text("fork\nscissors\n")
    data = DetectionDataset.from_path(tmp_path)
    a = data.items[0]
    assert [r.label for r in a.regions] == ["scissors", "fork"]
    assert a.regions[0].box == BoundingBox(left=0.25, top=0.25, width=0.5, height=0.5)
    assert data.negatives == 1


def test_yolo_unknown_class_and_bad_line(tmp_path: Path) -> None:
    image(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("3 0.5 0.5 0.5 0.5\n0 0.5 0.5\n0 1.5 0.5 0.2 0.2\n")
    (tmp_path / "data.yaml").write_text("path: .\nnames:\n  0: fork\n  1: scissors\n")
    with pytest.raises(AnnotationError) as info:
        DetectionDataset.from_yolo(tmp_path)
    text = "\n".join(info.value.problems)
    assert "a.txt: line 1: unknown class 3" in text
    assert "a.txt: line 2: expected" in text
    assert "a.txt: line 3" in text and "outside the image" in text


def test_order_is_deterministic_and_split_is_stable(tmp_path: Path) -> None:
    data = make_detection_dataset(tmp_path, images=10, seed=3)
    again = DetectionDataset.from_path(tmp_path)
    assert [it.path.name for it in data] == sorted(it.path.name for it in data)
    assert data == again
    train, test = data.split(0.3, seed=1)
    assert len(test) == 3 and len(train) == 7
    assert data.split(0.3, seed=1) == (train, test)


def test_generated_set_has_several_objects_of_varied_size(tmp_path: Path) -> None:
    data = make_detection_dataset(tmp_path, images=20)
    per_image = [len(it.regions) for it in data]
    areas = [r.box.width * r.box.height for it in data for r in it.regions]
    assert min(per_image) >= 1 and max(per_image) >= 3
    assert max(areas) > 3 * min(areas)
    assert set(data.labels) == {"circle", "square", "triangle"}


def test_from_path_refuses_a_folder_without_annotations(tmp_path: Path) -> None:
    image(tmp_path / "a.png")
    with pytest.raises(ConfigurationError, match="no annotations found"):
        DetectionDataset.from_path(tmp_path)
