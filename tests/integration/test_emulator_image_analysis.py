"""The emulated Image Analysis 4.0 (official ``ImageAnalysisClient``) and Computer Vision 3.2."""

from __future__ import annotations

import io
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import httpx
import pytest
from azure.ai.vision.imageanalysis import ImageAnalysisClient
from azure.ai.vision.imageanalysis.models import ImageAnalysisResult
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from PIL import Image, ImageDraw, ImageFont

from azvision.emulator._ia_describe import CATEGORY_TAXONOMY
from azvision.emulator._server import Emulator
from tests.conftest import shared_path

ANALYZE_40 = "/computervision/imageanalysis:analyze"
ANALYZE_32 = "/vision/v3.2/analyze"


def _encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def shapes() -> bytes:
    """A red disc at (100,100)-(300,300) and a blue box at (400,50)-(600,150) on white."""
    image = Image.new("RGB", (640, 480), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((100, 100, 299, 299), fill=(220, 20, 30))
    draw.rectangle((400, 50, 599, 149), fill=(20, 40, 210))
    return _encode(image)


def field() -> bytes:
    image = Image.new("RGB", (800, 600), (90, 150, 230))
    ImageDraw.Draw(image).rectangle((0, 300, 800, 600), fill=(60, 160, 50))
    return _encode(image, "JPEG")


def sea() -> bytes:
    image = Image.new("RGB", (800, 600), (130, 180, 240))
    ImageDraw.Draw(image).rectangle((0, 330, 800, 600), fill=(20, 60, 140))
    return _encode(image, "JPEG")


def page_of_text() -> bytes:
    image = Image.new("RGB", (800, 400), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    for row, line in enumerate(["The quick brown fox jumps", "over the lazy dog 12345"]):
        draw.text((30, 60 + row * 120), line, fill="black", font=font)
    return _encode(image)


def night() -> bytes:
    return _encode(Image.new("RGB", (300, 200), (14, 14, 22)))


def portrait() -> bytes:
    image = Image.new("RGB", (400, 400), (235, 235, 235))
    ImageDraw.Draw(image).ellipse((110, 60, 290, 340), fill=(224, 172, 140))
    return _encode(image)


class _Files(BaseHTTPRequestHandler):
    files: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def client(emulator: Emulator) -> ImageAnalysisClient:
    return ImageAnalysisClient(emulator.endpoint, AzureKeyCredential(emulator.vision_key))


@pytest.fixture(scope="module")
def files() -> Iterator[Callable[[str, bytes], str]]:
    """Serve bytes on a loopback URL: ``files("/a.png", data)`` → ``http://127.0.0.1:P/a.png``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def publish(path: str, data: bytes) -> str:
        _Files.files[path] = data
        return f"http://127.0.0.1:{server.server_address[1]}{path}"

    yield publish
    server.shutdown()
    thread.join(5)


def _v32(emulator: Emulator, data: bytes, query: str = "", **headers: str) -> httpx.Response:
    return httpx.post(
        f"{emulator.endpoint}{ANALYZE_32}{query}",
        content=data,
        headers={
            "Ocp-Apim-Subscription-Key": emulator.vision_key,
            "Content-Type": "application/octet-stream",
            **headers,
        },
    )


def _v40(emulator: Emulator, data: bytes, query: str, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{emulator.endpoint}{ANALYZE_40}{query}",
        content=data,
        headers={
            "Ocp-Apim-Subscription-Key": emulator.vision_key,
            "Content-Type": "application/octet-stream",
            **headers,
        },
    )


def test_tags_caption_and_objects_from_bytes(client: ImageAnalysisClient) -> None:
    result = client.analyze(image_data=shapes(), visual_features=["tags", "caption", "objects"])
    assert (result.metadata.width, result.metadata.height) == (640, 480)
    assert result.model_version == "2023-10-01"
    objects = sorted(result.objects.list, key=lambda o: o.bounding_box.x)
    assert [o.tags[0].name for o in objects] == ["circle", "rectangle"]
    for obj, (x, y, w, h) in zip(objects, [(100, 100, 200, 200), (400, 50, 200, 100)], strict=True):
        box = obj.bounding_box
        assert [box.x, box.y, box.width, box.height] == pytest.approx([x, y, w, h], abs=6)
        assert 0.5 <= obj.tags[0].confidence <= 1
    assert "white" in [t.name for t in result.tags.list]
    assert result.caption.text == "two shapes on a white background"
    assert 0 < result.caption.confidence <= 1
    # Only what was asked for comes back.
    assert result.dense_captions is None and result.read is None and result.people is None


def test_same_image_gets_the_same_answer(client: ImageAnalysisClient) -> None:
    features = ["tags", "caption", "objects", "denseCaptions", "smartCrops", "people"]
    first = client.analyze(image_data=field(), visual_features=features)
    second = client.analyze(image_data=field(), visual_features=features)
    assert first.as_dict() == second.as_dict()


def test_url_input_matches_byte_input(
    client: ImageAnalysisClient, files: Callable[[str, bytes], str]
) -> None:
    url = files("/shapes.png", shapes())
    by_url = client.analyze_from_url(url, visual_features=["tags", "objects"])
    by_bytes = client.analyze(image_data=shapes(), visual_features=["tags", "objects"])
    assert by_url.as_dict() == by_bytes.as_dict()


@pytest.mark.parametrize(
    "url",
    ["https://example.com/cat.jpg", "{base}/missing.png", "ftp://127.0.0.1/cat.jpg", "not a url"],
    ids=["not-loopback", "loopback-404", "ftp", "garbage"],
)
def test_unreachable_urls_get_the_services_url_error(
    client: ImageAnalysisClient, files: Callable[[str, bytes], str], url: str
) -> None:
    base = files("/present.png", shapes()).rsplit("/", 1)[0]
    with pytest.raises(HttpResponseError) as caught:
        client.analyze_from_url(url.format(base=base), visual_features=["tags"])
    assert caught.value.status_code == 400
    assert caught.value.error is not None and caught.value.error.code == "InvalidRequest"
    assert caught.value.error.message == "Image URL is badly formatted or not accessible."


@pytest.mark.parametrize(
    ("image", "tag", "caption"),
    [
        (field, "grass", "a grassy field under a blue sky"),
        (sea, "water", "a body of water under a blue sky"),
        (page_of_text, "text", "text on a white background"),
        (night, "dark", "a dark scene"),
        (portrait, "person", "a person in front of a white background"),
    ],
    ids=["field", "sea", "text", "night", "portrait"],
)
def test_scenes_get_fitting_tags_and_captions(
    client: ImageAnalysisClient, image: Callable[[], bytes], tag: str, caption: str
) -> None:
    result = client.analyze(image_data=image(), visual_features=["tags", "caption"])
    assert tag in [t.name for t in result.tags.list]
    assert result.caption.text == caption


def test_every_feature_is_well_formed(client: ImageAnalysisClient) -> None:
    result: ImageAnalysisResult = client.analyze(
        image_data=portrait(),
        visual_features=["tags", "caption", "denseCaptions", "objects", "read", "smartCrops", "people"],
        smart_crops_aspect_ratios=[0.9, 1.33],
    )
    whole = result.dense_captions.list[0]
    assert whole.text == result.caption.text
    assert (whole.bounding_box.width, whole.bounding_box.height) == (400, 400)
    assert result.read.blocks == []
    (person,) = result.people.list
    assert person.bounding_box.x == pytest.approx(110, abs=6)
    assert [c.aspect_ratio for c in result.smart_crops.list] == [0.9, 1.33]
    for crop in result.smart_crops.list:
        box = crop.bounding_box
        assert box.x >= 0 and box.y >= 0 and box.x + box.width <= 400 and box.y + box.height <= 400
        assert box.width / box.height == pytest.approx(crop.aspect_ratio, abs=0.01)


@pytest.mark.parametrize(
    ("data", "features", "options", "inner"),
    [
        (b"definitely not an image", ["tags"], {}, "InvalidImageFormat"),
        (_encode(Image.new("RGB", (40, 400))), ["tags"], {}, "InvalidImageSize"),
        (shapes(), ["tags", "colour"], {}, "NotSupportedVisualFeature"),
        (shapes(), ["smartCrops"], {"smart_crops_aspect_ratios": [2.5]}, "BadArgument"),
        (shapes(), ["caption"], {"language": "fr"}, "NotSupportedLanguage"),
    ],
    ids=["format", "too-narrow", "unknown-feature", "crop-ratio", "language"],
)
def test_bad_requests_are_mapped_by_the_official_client(
    client: ImageAnalysisClient,
    data: bytes,
    features: list[str],
    options: dict[str, object],
    inner: str,
) -> None:
    with pytest.raises(HttpResponseError) as caught:
        client.analyze(image_data=data, visual_features=features, **options)
    error = caught.value.error
    assert caught.value.status_code == 400
    assert error is not None and error.code == "InvalidRequest"
    assert error.innererror["code"] == inner


def test_wrong_key_is_401_without_the_key(emulator: Emulator) -> None:
    client = ImageAnalysisClient(emulator.endpoint, AzureKeyCredential("wrong-key"))
    with pytest.raises(ClientAuthenticationError) as caught:
        client.analyze(image_data=shapes(), visual_features=["tags"])
    assert caught.value.status_code == 401
    assert caught.value.error is not None and caught.value.error.code == "401"
    assert "Access denied" in caught.value.error.message
    assert emulator.vision_key not in str(caught.value)


def test_oversized_upload_is_rejected_with_the_service_limit(emulator: Emulator) -> None:
    response = _v40(emulator, b"\xff" * 20_971_521, "?api-version=2023-10-01&features=tags")
    assert response.status_code == 400
    assert response.headers["x-ms-error-code"] == "InvalidRequest"
    assert "larger than 20971520 bytes" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("?api-version=2023-10-01", 400, "Either 'features' or 'model-name'"),
        ("?features=tags", 404, "Resource not found"),
        ("?api-version=2022-10-12-preview&features=tags", 404, "Resource not found"),
    ],
    ids=["no-features", "no-api-version", "old-api-version"],
)
def test_query_errors(emulator: Emulator, query: str, status: int, message: str) -> None:
    response = _v40(emulator, shapes(), query)
    assert response.status_code == status
    assert message in response.json()["error"]["message"]


def test_multipart_upload_is_analysed_like_raw_bytes(emulator: Emulator) -> None:
    url = f"{emulator.endpoint}{ANALYZE_40}?api-version=2023-10-01&features=tags,objects"
    key = {"Ocp-Apim-Subscription-Key": emulator.vision_key}
    multipart = httpx.post(url, files={"image": ("s.png", shapes(), "image/png")}, headers=key)
    raw = _v40(emulator, shapes(), "?api-version=2023-10-01&features=tags,objects")
    assert multipart.status_code == 200
    assert multipart.json() == raw.json()


def test_unsupported_content_type_is_rejected(emulator: Emulator) -> None:
    response = _v40(
        emulator, shapes(), "?api-version=2023-10-01&features=tags", **{"Content-Type": "text/plain"}
    )
    assert response.status_code == 400
    assert "content type" in response.json()["error"]["message"]


# ------------------------------------------------------------------------------------ v3.2


def test_categories_come_from_the_86_category_taxonomy(emulator: Emulator) -> None:
    seen = set()
    for image in (field, sea, page_of_text, night, portrait, shapes):
        response = _v32(emulator, image(), "?visualFeatures=Categories")
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"categories", "requestId", "metadata", "modelVersion"}
        for category in body["categories"]:
            assert category["name"] in CATEGORY_TAXONOMY
            assert (category["score"] * 256).is_integer() and 0 < category["score"] < 1
        seen.add(body["categories"][0]["name"])
    assert {"outdoor_field", "outdoor_water", "text_", "dark_", "people_portrait"} <= seen


def test_shipped_taxonomy_matches_the_reference() -> None:
    taxonomy = shared_path("reference/category-taxonomy-86.txt")
    assert list(CATEGORY_TAXONOMY) == taxonomy.read_text().split()


def test_v32_full_answer_shape(emulator: Emulator, files: Callable[[str, bytes], str]) -> None:
    url = files("/field.jpg", field())
    response = httpx.post(
        f"{emulator.endpoint}{ANALYZE_32}?visualFeatures=Categories,Tags,Description,Objects,Color",
        json={"url": url},
        headers={"Ocp-Apim-Subscription-Key": emulator.vision_key},
    )
    assert response.status_code == 200
    body = response.json()
    assert body["categories"][0]["name"] == "outdoor_field"
    assert {"sky", "grass"} <= {t["name"] for t in body["tags"]}
    assert body["description"]["captions"][0]["text"] == "a grassy field under a blue sky"
    assert body["objects"] == []
    assert body["color"]["dominantColors"] == ["Blue", "Green"]
    assert body["metadata"] == {"width": 800, "height": 600, "format": "Jpeg"}
    assert body["modelVersion"] == "2021-05-01"
    uuid.UUID(body["requestId"])


def test_v32_limits_and_errors(emulator: Emulator) -> None:
    too_big = _v32(emulator, b"\xff" * (4 * 1024 * 1024 + 1))
    assert too_big.status_code == 400
    error = too_big.json()["error"]
    assert error["innererror"]["code"] == "InvalidImageSize"
    uuid.UUID(error["requestId"])

    webp = _encode(Image.new("RGB", (100, 100), "red"), "WEBP")
    assert _v32(emulator, webp).json()["error"]["innererror"]["code"] == "InvalidImageFormat"
    assert _v40(emulator, webp, "?api-version=2023-10-01&features=tags").status_code == 200

    unknown = _v32(emulator, shapes(), "?visualFeatures=Categories,Sparkle")
    assert unknown.json()["error"]["innererror"]["code"] == "NotSupportedVisualFeature"
    assert _v32(emulator, shapes(), **{"Ocp-Apim-Subscription-Key": "nope"}).status_code == 401
