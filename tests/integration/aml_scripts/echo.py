"""Test scoring script: says which server process answered and what reached it."""

import os


def init() -> None:
    pass


def run(data: str, request_headers: dict[str, str]) -> dict[str, object]:
    headers = {k.lower(): v for k, v in request_headers.items()}
    return {"pid": os.getpid(), "body": data, "authorization": headers.get("authorization")}
