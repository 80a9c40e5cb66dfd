"""Test scoring script whose run() always fails."""


def init() -> None:
    pass


def run(data: str) -> None:
    raise ValueError("the model cannot score this input")
