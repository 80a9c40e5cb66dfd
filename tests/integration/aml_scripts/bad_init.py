"""Test scoring script whose init() fails, as when the model files are missing."""


def init() -> None:
    raise FileNotFoundError("model.onnx is not in AZUREML_MODEL_DIR")


def run(data: str) -> dict[str, str]:
    return {}
