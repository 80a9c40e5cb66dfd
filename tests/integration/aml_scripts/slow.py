"""Test scoring script that sleeps for the number of seconds given as {"sleep": s}."""

import json
import time


def init() -> None:
    pass


def run(data: str) -> dict[str, float]:
    seconds = float(json.loads(data)["sleep"])
    time.sleep(seconds)
    return {"slept": seconds}
