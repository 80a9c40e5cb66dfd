"""Listing a project's images through the official training client: paging, counts, regions, image URLs."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator

import httpx
import pytest
from azure.cognitiveservices.vision.customvision.training import CustomVisionTrainingClient
from azure.cognitiveservices.vision.customvision.training.models import (
    ImageFileCreateBatch,
    ImageFileCreateEntry,
    Region,
)
from msrest.authentication import ApiKeyCredentials
from PIL import Image

from azvision.emulator import Emulator

COMPACT_DETECTION = "a27d5ca5-bb19-49d8-a70a-fec086c47f5b"


def tiny_png(seed: int, size: tuple[int, int] = (40, 30)) -> bytes:
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    image.putpixel((seed % size[0], 0), (seed % 256, 7, 9))  # distinct bytes for every seed
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture(scope="module")
def client(emu: Emulator) -> CustomVisionTrainingClient:
    return CustomVisionTrainingClient(
        emu.endpoint, ApiKeyCredentials(in_headers={"Training-key": emu.training_key})
    )


def upload(client: CustomVisionTrainingClient, project_id: str, entries: list[ImageFileCreateEntry]) -> None:
    for start in range(0, len(entries), 64):
        batch = ImageFileCreateBatch(images=entries[start : start + 64])
        assert client.create_images_from_files(project_id, batch).is_batch_successful


def test_tagged_images_page_through_the_whole_project(client: CustomVisionTrainingClient) -> None:
    project = client.create_project("listing")
    cat, dog = client.create_tag(project.id, "cat"), client.create_tag(project.id, "dog")
    entries = [
        ImageFileCreateEntry(name=f"{i}.png", contents=tiny_png(i), tag_ids=[(cat, dog)[i % 2].id])
        for i in range(300)
    ] + [ImageFileCreateEntry(name=f"u{i}.png", contents=tiny_png(1000 + i)) for i in range(7)]
    upload(client, project.id, entries)

    assert client.get_tagged_image_count(project.id) == 300
    assert client.get_untagged_image_count(project.id) == 7
    assert client.get_image_count(project.id) == 307
    assert client.get_tagged_image_count(project.id, tag_ids=[dog.id]) == 150
    assert len(client.get_tagged_images(project.id)) == 50  # the service's default page

    seen: list[str] = []
    skip = 0
    while True:
        page = client.get_tagged_images(project.id, take=256, skip=skip, order_by="Oldest")
        seen += [image.id for image in page]
        skip += len(page)
        if len(page) < 256:
            break
    assert len(seen) == len(set(seen)) == 300
    oldest_first = client.get_tagged_images(project.id, take=3, order_by="Oldest")
    newest_first = client.get_tagged_images(project.id, take=3)
    assert [i.id for i in oldest_first] == seen[:3] and newest_first[0].id == seen[-1]

    untagged = client.get_untagged_images(project.id, take=256)
    assert len(untagged) == 7 and all(not image.tags for image in untagged)
    dogs = client.get_tagged_images(project.id, tag_ids=[dog.id], take=256)
    assert len(dogs) == 150 and {t.tag_name for i in dogs for t in i.tags} == {"dog"}
    by_status = client.get_images(project.id, tagging_status="Untagged", take=256)
    assert {i.id for i in by_status} == {i.id for i in untagged}


def test_image_uris_download_the_stored_bytes_and_scaled_copies(
    client: CustomVisionTrainingClient,
) -> None:
    project = client.create_project("uris")
    tag = client.create_tag(project.id, "big")
    original = tiny_png(5, size=(1600, 900))
    upload(client, project.id, [ImageFileCreateEntry(name="big.png", contents=original, tag_ids=[tag.id])])
    image = client.get_tagged_images(project.id)[0]

    assert httpx.get(image.original_image_uri).content == original  # no key: a blob URL
    sizes = {}
    for name, uri in (("resized", image.resized_image_uri), ("thumbnail", image.thumbnail_uri)):
        response = httpx.get(uri)
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(response.content)) as scaled:
            sizes[name] = scaled.size
    assert sizes == {"resized": (1024, 576), "thumbnail": (200, 113)}
    assert httpx.get(image.original_image_uri + "/other").status_code == 404


def test_detection_images_carry_their_regions(client: CustomVisionTrainingClient) -> None:
    project = client.create_project("regions", domain_id=COMPACT_DETECTION)
    ball, box = client.create_tag(project.id, "ball"), client.create_tag(project.id, "box")
    regions = [
        Region(tag_id=ball.id, left=0.1, top=0.2, width=0.3, height=0.4),
        Region(tag_id=box.id, left=0.5, top=0.5, width=0.25, height=0.25),
    ]
    upload(
        client,
        project.id,
        [
            ImageFileCreateEntry(name="two.png", contents=tiny_png(1), regions=regions),
            ImageFileCreateEntry(name="none.png", contents=tiny_png(2)),
        ],
    )
    assert client.get_tagged_image_count(project.id) == 1  # regions tag an image
    image = client.get_tagged_images(project.id)[0]
    found = sorted((r.tag_name, r.left, r.top, r.width, r.height) for r in image.regions)
    assert found == [("ball", 0.1, 0.2, 0.3, 0.4), ("box", 0.5, 0.5, 0.25, 0.25)]
    assert all(r.region_id for r in image.regions)
    assert client.get_untagged_image_count(project.id) == 1
