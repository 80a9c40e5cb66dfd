"""The emulator's streaming JSON reader: long strings are cut as they arrive, and the JSON stays valid."""

from __future__ import annotations

import itertools
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from azvision.emulator._json_stream import StringCapper

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text("abc", max_size=3), inner, max_size=4)
    ),
    max_leaves=12,
)
FUZZ = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def capped(body: bytes, limit: int, cuts: list[int]) -> StringCapper:
    capper = StringCapper(limit)
    edges = sorted({min(c, len(body)) for c in cuts} | {0, len(body)})
    for start, end in itertools.pairwise(edges):
        capper.feed(body[start:end])
    return capper


def encoded(text: str, ascii_only: bool) -> str:
    return json.dumps(text, ensure_ascii=ascii_only)[1:-1]


def assert_cut(original: Any, got: Any, limit: int, ascii_only: bool) -> None:
    """``got`` is ``original`` with every string's JSON form cut to a prefix of at most ``limit`` bytes."""
    if isinstance(original, str):
        assert isinstance(got, str)
        whole, kept = encoded(original, ascii_only), encoded(got, ascii_only)
        assert whole.startswith(kept) and len(kept.encode()) <= limit
        assert got == original or len(whole.encode()) > limit
    elif isinstance(original, list):
        assert isinstance(got, list) and len(got) == len(original)
        for a, b in zip(original, got, strict=True):
            assert_cut(a, b, limit, ascii_only)
    elif isinstance(original, dict):
        assert isinstance(got, dict) and list(got) == list(original)
        for key in original:
            assert_cut(original[key], got[key], limit, ascii_only)
    else:
        assert got == original


@FUZZ
@given(values, st.integers(3, 40), st.booleans(), st.lists(st.integers(0, 400), max_size=8))
def test_cut_bodies_stay_valid_json_with_each_string_a_prefix(
    value: Any, limit: int, ascii_only: bool, cuts: list[int]
) -> None:
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    capper = capped(body, limit, cuts)
    assert capper.seen == len(body)
    assert_cut(value, json.loads(capper.body()), limit, ascii_only)


@FUZZ
@given(values, st.booleans(), st.lists(st.integers(0, 400), max_size=8))
def test_a_body_without_long_strings_is_kept_byte_for_byte(
    value: Any, ascii_only: bool, cuts: list[int]
) -> None:
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    capper = capped(body, len(body), cuts)
    assert capper.body() == body and capper.cut_strings == 0


def test_a_huge_base64_image_is_held_only_up_to_the_limit() -> None:
    capper = StringCapper(string_limit=1000)
    capper.feed(b'{"images": [{"name": "big.png", "contents": "')
    for _ in range(1000):
        capper.feed(b"QUJD" * 1024)  # 4 MB of base64 in all
    capper.feed(b'"}, {"name": "small.png", "contents": "QUJD"}]}')
    body = json.loads(capper.body())
    assert [len(image["contents"]) for image in body["images"]] == [1000, 4]
    assert capper.kept < 1200 and capper.seen > 4_000_000 and capper.cut_strings == 1
