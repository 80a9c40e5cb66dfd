"""OnnxBackend without sockets: output decoding per export family, export reading, and tiny real graphs.

The graphs are built here with ``onnx.helper`` and run by the real onnxruntime, so every family's whole
path (export files → session → preprocessing → decoding → Prediction) runs in milliseconds.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import sys
import zipfile
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from azvision import (
    AzVisionError,
    BackendTimeoutError,
    ConfigurationError,
    InvalidImageError,
    Prediction,
    RetryPolicy,
    ServiceError,
    create_classifier,
)
from azvision.backends._onnx_export import default_opset, read_export
from azvision.backends._onnx_outputs import (
    DEFAULT_ANCHORS,
    Decoder,
    classifier_labels,
    decode_yolo,
    non_max_suppression,
    output_family,
    ssd_labels,
    yolo_settings,
    zipmap_labels,
)
from azvision.backends.onnx import OnnxBackend

BGR_0_255 = {"Image.BitmapPixelFormat": "Bgr8", "Image.NominalPixelRange": "NominalRange_0_255"}


def png(color: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


RED, GREEN, BLUE = png((255, 0, 0)), png((0, 255, 0)), png((0, 0, 255))


# --- tiny models --------------------------------------------------------------------------------


def model_bytes(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    *,
    initializers: Sequence[onnx.TensorProto] = (),
    metadata: dict[str, str] | None = None,
    opsets: Sequence[tuple[str, int]] = (("", 13),),
) -> bytes:
    graph = helper.make_graph(list(nodes), "tiny", list(inputs), list(outputs), list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = 7
    helper.set_model_props(model, metadata if metadata is not None else BGR_0_255)
    serialised: bytes = model.SerializeToString()
    return serialised


def channel_mean_classifier(
    k: int = 3, *, batch: int | str = "N", side: int = 8, float16: bool = False, scale: float = 0.01
) -> bytes:
    """``data`` [batch,3,side,side] → per-channel mean → ×scale (first k of B,G,R, then 0) → softmax."""
    weights = np.zeros((3, k), np.float32)
    for channel in range(min(3, k)):
        weights[channel, channel] = scale
    dtype = TensorProto.FLOAT16 if float16 else TensorProto.FLOAT
    nodes = [helper.make_node("Cast", ["data"], ["data32"], to=TensorProto.FLOAT)]
    nodes += [
        helper.make_node("ReduceMean", ["data32"], ["mean"], axes=[2, 3], keepdims=0),
        helper.make_node("MatMul", ["mean", "w"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["model_output"], axis=1),
    ]
    return model_bytes(
        nodes,
        [helper.make_tensor_value_info("data", dtype, [batch, 3, side, side])],
        [helper.make_tensor_value_info("model_output", TensorProto.FLOAT, [batch, k])],
        initializers=[numpy_helper.from_array(weights, "w")],
    )


def zipmap_classifier(labels: Sequence[str]) -> bytes:
    """The legacy shape: ``loss`` = ZipMap over softmax(channel means / 10) of B, G, R."""
    nodes = [
        helper.make_node("ReduceMean", ["data"], ["mean"], axes=[2, 3], keepdims=0),
        helper.make_node("Mul", ["mean", "tenth"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
        helper.make_node(
            "ZipMap", ["probs"], ["loss"], domain="ai.onnx.ml", classlabels_strings=list(labels)
        ),
    ]
    loss = helper.make_tensor_value_info("loss", TensorProto.UNDEFINED, None)
    loss.type.CopyFrom(
        helper.make_sequence_type_proto(
            helper.make_map_type_proto(
                TensorProto.STRING, helper.make_tensor_type_proto(TensorProto.FLOAT, [])
            )
        )
    )
    return model_bytes(
        nodes,
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [None, 3, 8, 8])],
        [loss],
        initializers=[numpy_helper.from_array(np.array(0.1, np.float32), "tenth")],
        metadata={"Image.BitmapPixelFormat": "Bgr8"},
        opsets=(("", 9), ("ai.onnx.ml", 1)),
    )


def constant_output_model(input_name: str, shape: list[int], outputs: dict[str, np.ndarray]) -> bytes:
    """A model whose outputs are constants (the input is read, times zero, so it stays in the graph)."""
    nodes = [helper.make_node("ReduceMean", [input_name], ["m"], keepdims=1)]
    infos = []
    for name, value in outputs.items():
        if value.dtype == np.int64:
            nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value)))
            elem = TensorProto.INT64
        else:
            nodes.append(
                helper.make_node("Constant", [], [f"{name}_c"], value=numpy_helper.from_array(value))
            )
            nodes.append(helper.make_node("Mul", ["m", "zero"], [f"{name}_z"]))
            nodes.append(helper.make_node("Add", [f"{name}_c", f"{name}_z"], [name]))
            elem = TensorProto.FLOAT
        infos.append(helper.make_tensor_value_info(name, elem, list(value.shape)))
    return model_bytes(
        nodes,
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, shape)],
        infos,
        initializers=[numpy_helper.from_array(np.zeros([1] * len(shape), np.float32), "zero")],
        metadata={},
    )


def write_export(
    folder: Path,
    model: bytes,
    labels: Sequence[str] | None,
    manifest: dict[str, Any] | None = None,
    hints: dict[str, str] | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(model)
    if labels is not None:
        (folder / "labels.txt").write_text("\n".join(labels))
    if manifest is not None:
        (folder / "cvexport.manifest").write_text(json.dumps(manifest, indent=2).replace("\n", "\r\n"))
    if hints is not None:
        (folder / "metadata_properties.json").write_text(json.dumps(hints, indent=4, sort_keys=True))
    return folder


def yolo_grid(labels: int, hits: dict[tuple[int, int, int], int], side: int = 2) -> np.ndarray:
    """A [5·(5+labels), side, side] grid, silent except ``(anchor, row, col) -> class`` certainties."""
    grid = np.zeros((5, 5 + labels, side, side), np.float32)
    grid[:, 4] = -30.0  # no object anywhere ...
    for (anchor, row, col), cls in hits.items():
        grid[anchor, 4, row, col] = 30.0  # ... except here, certainly
        grid[anchor, 5 + cls, row, col] = 30.0
    return grid.reshape(-1, side, side)


# --- output families -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outputs", "family", "names"),
    [
        ([("model_output", "tensor(float)", ["N", 4])], "classifier", ["model_output"]),
        (
            [("classLabel", "tensor(string)", ["N", 1]), ("loss", "seq(map(string,tensor(float)))", [])],
            "zipmap",
            ["loss"],
        ),
        ([("model_outputs0", "tensor(float)", ["N", 45, 13, 13])], "yolo", ["model_outputs0"]),
        (
            [
                ("detected_classes", "tensor(int64)", [1, "N"]),
                ("detected_boxes", "tensor(float)", [1, "N", 4]),
                ("detected_scores", "tensor(float)", [1, "N"]),
            ],
            "ssd",
            ["detected_boxes", "detected_scores", "detected_classes"],
        ),
        ([("model_output", "tensor(float16)", [1, 2])], "classifier", ["model_output"]),
    ],
)
def test_the_family_comes_from_the_outputs(outputs: Any, family: str, names: list[str]) -> None:
    assert output_family(outputs) == (family, names)


def test_outputs_of_no_known_export_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"ids tensor\(int64\).*model_output"):
        output_family([("ids", "tensor(int64)", [1, 5])])


def test_classifier_probabilities_map_to_labels_in_labels_txt_order() -> None:
    labels = classifier_labels(np.array([0.1, 0.6, 0.3], np.float32), ["a", "b", "c"], 0.0)
    assert [(lab.name, round(lab.confidence, 6)) for lab in labels] == [("a", 0.1), ("b", 0.6), ("c", 0.3)]
    assert [lab.name for lab in classifier_labels(np.array([0.1, 0.6, 0.3]), "abc", 0.25)] == ["b", "c"]


def test_classifier_output_size_must_match_the_labels() -> None:
    with pytest.raises(ConfigurationError, match="3 probabilities but there are 2 labels"):
        classifier_labels(np.array([0.1, 0.6, 0.3]), ["a", "b"], 0.0)


def test_non_finite_probabilities_are_a_service_error_and_float32_overshoot_is_clipped() -> None:
    with pytest.raises(ServiceError, match="the onnx backend got the confidence nan"):
        classifier_labels(np.array([np.nan, 1.0]), ["a", "b"], 0.0)
    assert classifier_labels(np.array([1.0000001], np.float32), ["a"], 0.0)[0].confidence == 1.0


def test_zipmap_scores_are_mapped_by_key_not_by_position() -> None:
    labels = zipmap_labels({"Negative": 0.05, "cat": 0.9, "dog": 0.05}, 0.0)
    assert {lab.name: lab.confidence for lab in labels} == {"Negative": 0.05, "cat": 0.9, "dog": 0.05}
    assert Prediction(labels=labels, backend="onnx").label == "cat"


def test_yolo_decodes_centre_size_and_class_of_one_detection() -> None:
    # anchor 2 (3.33843 x 5.47434 cells) in row 1, column 0 of a 4x4 grid, tx = ty = tw = th = 0
    grid = yolo_grid(2, {(2, 1, 0): 1}, side=4)
    (found,) = decode_yolo(grid, ["ball", "box"], 0.0)
    width, height = DEFAULT_ANCHORS[2][0] / 4, DEFAULT_ANCHORS[2][1] / 4
    assert found.name == "box"
    assert found.confidence == pytest.approx(1.0)
    assert found.box is not None
    assert found.box.left == pytest.approx(max(0.0, 0.5 / 4 - width / 2))
    assert found.box.top == pytest.approx(max(0.0, 1.5 / 4 - height / 2))
    assert found.box.right == pytest.approx(min(1.0, 0.5 / 4 + width / 2))


def test_yolo_offsets_and_sizes_follow_sigmoid_and_exp() -> None:
    grid = yolo_grid(1, {(0, 0, 1): 0}, side=2).reshape(5, 6, 2, 2)
    grid[0, 0, 0, 1] = np.log(1 / 3)  # sigmoid -> 0.25
    grid[0, 2, 0, 1] = np.log(2.0)  # exp -> twice the anchor width
    (found,) = decode_yolo(grid.reshape(-1, 2, 2), ["x"], 0.0, anchors=[(0.5, 0.5)] * 5)
    assert found.box is not None
    centre_x, width = (1 + 0.25) / 2, 2 * 0.5 / 2
    assert (found.box.left, found.box.width) == pytest.approx((centre_x - width / 2, width))
    assert (found.box.top, found.box.height) == pytest.approx((0.25 - 0.125, 0.25))


def test_yolo_suppresses_overlaps_of_one_class_only() -> None:
    # Anchors 3 and 4 of the same cell overlap heavily; the same class is suppressed, another is not.
    same = decode_yolo(yolo_grid(2, {(3, 0, 0): 0, (4, 0, 0): 0}), ["a", "b"], 0.0, anchors=[(1, 1)] * 5)
    assert len(same) == 1
    mixed = decode_yolo(yolo_grid(2, {(3, 0, 0): 0, (4, 0, 0): 1}), ["a", "b"], 0.0, anchors=[(1, 1)] * 5)
    assert sorted(lab.name for lab in mixed) == ["a", "b"]


def test_yolo_channel_count_must_fit_the_labels() -> None:
    with pytest.raises(ConfigurationError, match="35 channels; 5 anchors and 3 labels need 40"):
        decode_yolo(yolo_grid(2, {}), ["a", "b", "c"], 0.0)


def test_nms_keeps_the_best_first_and_stops_at_the_cap_and_the_floor() -> None:
    boxes = np.array([[0.1 * i, 0.0, 0.05, 0.05] for i in range(10)])  # disjoint
    scores = np.linspace(0.9, 0.0, 10)[:, None]
    kept = non_max_suppression(boxes, scores, min_score=0.3, max_detections=5)
    assert [row for row, _, _ in kept] == [0, 1, 2, 3, 4]
    assert len(non_max_suppression(boxes, scores, min_score=0.5)) == 5  # 0.9 .. 0.5


def test_ssd_detections_become_boxes_from_corners() -> None:
    boxes = np.array([[0.1, 0.2, 0.5, 0.9], [-0.02, 0.5, 0.3, 1.01], [0.0, 0.0, 1.0, 1.0]])
    labels = ssd_labels(boxes, np.array([0.9, 0.5, 0.005]), np.array([1, 0, 0]), ["a", "b"], 0.0)
    assert [(lab.name, lab.confidence) for lab in labels] == [("b", 0.9), ("a", 0.5)]  # 0.005 < floor
    assert labels[0].box is not None and labels[1].box is not None
    assert (labels[0].box.width, labels[0].box.height) == pytest.approx((0.4, 0.7))
    assert (labels[1].box.left, labels[1].box.bottom) == (0.0, 1.0)  # clipped to the image


def test_ssd_class_outside_the_labels_or_ragged_outputs_are_errors() -> None:
    with pytest.raises(ConfigurationError, match="class 2 but there are only 2 labels"):
        ssd_labels(np.zeros((1, 4)), np.array([0.9]), np.array([2]), ["a", "b"], 0.0)
    with pytest.raises(ServiceError, match="2 boxes, 1 scores"):
        ssd_labels(np.zeros((2, 4)), np.array([0.9]), np.array([0]), ["a"], 0.0)


def test_decoder_ignores_batch_padding() -> None:
    outputs = [np.array([[0.2, 0.8], [0.9, 0.1], [0.5, 0.5]], np.float32)]
    decoded = Decoder("classifier", ("a", "b")).decode(outputs, 2)
    assert [Prediction(labels=labels, backend="onnx").label for labels in decoded] == ["b", "a"]


def test_yolo_settings_come_from_metadata_properties_when_usable() -> None:
    hints = {
        "CustomVision.Postprocess.Yolo.Biases": "[1, 2, 3, 4]",
        "CustomVision.Postprocess.Yolo.NmsThreshold": "0.3",
    }
    assert yolo_settings(hints) == (((1.0, 2.0), (3.0, 4.0)), 0.3)
    assert yolo_settings({"CustomVision.Postprocess.Yolo.Biases": "[]"}) == (DEFAULT_ANCHORS, 0.45)
    assert yolo_settings({"CustomVision.Postprocess.Yolo.Biases": "oops"}) == (DEFAULT_ANCHORS, 0.45)


# --- export files --------------------------------------------------------------------------------


def test_default_opset_is_read_from_the_model_bytes() -> None:
    assert default_opset(channel_mean_classifier()) == 13
    assert default_opset(zipmap_classifier(["a", "b", "c"])) == 9
    assert default_opset(b"\xff\xff\xff") is None
    assert default_opset(b"not a model at all") is None


def test_a_zip_with_its_files_in_a_folder_is_read_like_the_folder(tmp_path: Path) -> None:
    blob = io.BytesIO()
    with zipfile.ZipFile(blob, "w") as archive:
        archive.writestr("export/model.onnx", channel_mean_classifier())
        archive.writestr("export/labels.txt", "\ufeffblue\r\ngreen\r\nred\r\n")
        archive.writestr("export/cvexport.manifest", json.dumps({"Platform": "ONNX", "IterationId": "it-7"}))
        archive.writestr("export/LICENSE", "MIT")
    (tmp_path / "e.zip").write_bytes(blob.getvalue())
    export = read_export(tmp_path / "e.zip")
    assert export.labels == ("blue", "green", "red")
    assert export.name == "it-7"


@pytest.mark.parametrize(("labels", "message"), [("a\n\nb", "line 2 is empty"), ("\n\n", "it is empty")])
def test_malformed_labels_files_are_named(tmp_path: Path, labels: str, message: str) -> None:
    folder = write_export(tmp_path, channel_mean_classifier(), None)
    (folder / "labels.txt").write_text(labels)
    with pytest.raises(ConfigurationError, match=message):
        read_export(folder)


def test_exports_for_other_platforms_are_refused(tmp_path: Path) -> None:
    folder = write_export(tmp_path, b"", ["a"], manifest={"Platform": "TensorFlow"})
    with pytest.raises(ConfigurationError, match=r"TensorFlow export.*platform ONNX"):
        read_export(folder)


def test_a_folder_without_a_model_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "labels.txt").write_text("a")
    with pytest.raises(ConfigurationError, match=r"has no model.onnx"):
        OnnxBackend(tmp_path)


def test_opset_1_models_are_refused_as_too_old_before_onnxruntime_sees_them(tmp_path: Path) -> None:
    old = model_bytes(
        [helper.make_node("Identity", ["data"], ["model_output"])],
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("model_output", TensorProto.FLOAT, [1, 3, 8, 8])],
        opsets=(("", 1),),
    )
    (tmp_path / "old.onnx").write_bytes(old)
    with pytest.raises(ConfigurationError, match=r"too old.*export the iteration again from Custom Vision"):
        OnnxBackend(tmp_path / "old.onnx", labels_path=None)


# --- the backend on tiny real graphs -------------------------------------------------------------


@pytest.fixture
def classifier_dir(tmp_path: Path) -> Path:
    manifest = {"DomainType": "Classification", "Platform": "ONNX", "IterationId": "iter-1"}
    return write_export(tmp_path / "export", channel_mean_classifier(), ["blue", "green", "red"], manifest)


def test_classifier_export_runs_with_bgr_pixels_and_all_labels(classifier_dir: Path) -> None:
    with OnnxBackend(classifier_dir) as clf:
        prediction = clf.classify(RED)
        assert prediction.label == "red"
        assert [lab.name for lab in prediction.labels] == ["red", "blue", "green"]  # all labels, sorted
        assert prediction.backend == "onnx" and prediction.model == "iter-1"
        assert prediction.image_size == (40, 30)
        assert clf.classify(BLUE).label == "blue"
        assert (clf.family, clf.labels) == ("classifier", ("blue", "green", "red"))


def test_threshold_drops_unlikely_labels(classifier_dir: Path) -> None:
    with OnnxBackend(classifier_dir, threshold=0.5) as clf:
        assert [lab.name for lab in clf.classify(GREEN).labels] == ["green"]


def test_batches_give_the_single_results_in_order_with_errors_in_place(
    classifier_dir: Path, tmp_path: Path
) -> None:
    inputs: list[Any] = [RED, str(tmp_path / "missing.jpg"), GREEN, b"not an image", BLUE, RED, BLUE]
    with OnnxBackend(classifier_dir, batch_size=2) as clf:
        outcomes = list(clf.classify_many(inputs))
        singles = [clf.classify(image) for image in (RED, GREEN, BLUE, RED, BLUE)]
    assert len(outcomes) == len(inputs)
    assert isinstance(outcomes[1], InvalidImageError) and str(outcomes[1].source).endswith("missing.jpg")
    assert isinstance(outcomes[3], InvalidImageError)
    predictions = [o for o in outcomes if isinstance(o, Prediction)]
    assert [p.label for p in predictions] == ["red", "green", "blue", "red", "blue"]
    for batched, single in zip(predictions, singles, strict=True):
        assert [lab.name for lab in batched.labels] == [lab.name for lab in single.labels]
        assert [lab.confidence for lab in batched.labels] == pytest.approx(
            [lab.confidence for lab in single.labels], abs=1e-6
        )


def test_batches_read_at_most_one_chunk_ahead(classifier_dir: Path) -> None:
    consumed = 0

    def endless() -> Iterator[bytes]:
        nonlocal consumed
        while True:
            consumed += 1
            yield RED

    async def first_outcome() -> object:
        with OnnxBackend(classifier_dir, batch_size=4) as clf:
            stream = clf.aclassify_many(endless())
            outcome = await anext(stream)
            await stream.aclose()  # type: ignore[attr-defined]
            return outcome

    assert isinstance(asyncio.run(first_outcome()), Prediction)
    assert consumed <= 8  # the running chunk and the one decoded meanwhile
    with OnnxBackend(classifier_dir, batch_size=4) as clf:
        stream = clf.classify_many(endless())
        assert isinstance(next(stream), Prediction)
        stream.close()  # type: ignore[attr-defined]
    assert consumed <= 8 + 12  # plus one chunk of outcomes buffered for the sync caller


def test_async_batches_accept_async_iterables(classifier_dir: Path) -> None:
    async def images() -> AsyncIterator[bytes]:
        for image in (GREEN, b"", RED):
            yield image

    async def run() -> list[Any]:
        async with OnnxBackend(classifier_dir, batch_size=8) as clf:
            return [outcome async for outcome in clf.aclassify_many(images())]

    outcomes = asyncio.run(run())
    assert [o.label if isinstance(o, Prediction) else type(o) for o in outcomes] == [
        "green",
        InvalidImageError,
        "red",
    ]


def test_fixed_batch_models_are_padded_and_float16_inputs_are_fed_float16(tmp_path: Path) -> None:
    folder = write_export(tmp_path, channel_mean_classifier(batch=4, float16=True), ["blue", "green", "red"])
    with OnnxBackend(folder, batch_size=16) as clf:
        assert clf.spec.dtype == "float16"
        outcomes = list(clf.classify_many([RED, GREEN, BLUE, RED, GREEN]))
    assert [o.label for o in outcomes if isinstance(o, Prediction)] == [
        "red",
        "green",
        "blue",
        "red",
        "green",
    ]


def test_bare_model_without_labels_is_a_clear_error(tmp_path: Path) -> None:
    write_export(tmp_path, channel_mean_classifier(), None)
    with pytest.raises(ConfigurationError, match=r"no labels.txt.*pass labels_path"):
        OnnxBackend(tmp_path / "model.onnx")


def test_labels_path_serves_a_bare_model(tmp_path: Path) -> None:
    write_export(tmp_path / "m", channel_mean_classifier(), None)
    (tmp_path / "names.txt").write_text("blue\ngreen\nred\n")
    with OnnxBackend(tmp_path / "m" / "model.onnx", labels_path=tmp_path / "names.txt") as clf:
        assert clf.classify(RED).label == "red"
        assert clf.model_name == "model.onnx"


def test_label_count_different_from_the_output_is_a_clear_error(tmp_path: Path) -> None:
    write_export(tmp_path, channel_mean_classifier(k=3), ["blue", "green"])
    with pytest.raises(ConfigurationError, match="3 probabilities but there are 2 labels"):
        OnnxBackend(tmp_path)


def test_manifest_domain_must_agree_with_the_model(tmp_path: Path) -> None:
    write_export(
        tmp_path, channel_mean_classifier(), ["b", "g", "r"], manifest={"DomainType": "ObjectDetection"}
    )
    with pytest.raises(ConfigurationError, match=r"ObjectDetection.*classifier"):
        OnnxBackend(tmp_path)


def test_legacy_zipmap_models_take_labels_from_the_graph_by_key(tmp_path: Path) -> None:
    # Class order B, G, R named so that sorted keys (ant, moth, zebra) differ from class order.
    write_export(tmp_path, zipmap_classifier(["zebra", "ant", "moth"]), None)
    with OnnxBackend(tmp_path / "model.onnx") as clf:
        assert clf.family == "zipmap"
        assert set(clf.labels) == {"zebra", "ant", "moth"}
        assert clf.classify(RED).label == "moth"
        assert clf.classify(BLUE).label == "zebra"
        assert [o.label for o in clf.classify_many([GREEN, RED]) if isinstance(o, Prediction)] == [
            "ant",
            "moth",
        ]


def test_zipmap_labels_file_must_name_the_graphs_labels(tmp_path: Path) -> None:
    write_export(tmp_path, zipmap_classifier(["zebra", "ant", "moth"]), ["zebra", "ant", "bee"])
    with pytest.raises(ConfigurationError, match=r"labels.txt names"):
        OnnxBackend(tmp_path)


def test_yolo_export_gives_boxes(tmp_path: Path) -> None:
    grid = yolo_grid(2, {(0, 1, 0): 1})[None]
    model = constant_output_model("data", [1, 3, 64, 64], {"model_outputs0": grid})
    hints = {"CustomVision.Postprocess.Yolo.Biases": json.dumps([0.5, 0.5] * 5)}
    folder = write_export(tmp_path, model, ["ball", "box"], {"DomainType": "ObjectDetection"}, hints)
    with OnnxBackend(folder) as clf:
        assert clf.family == "yolo" and clf.spec.resize == "stretch"
        (found,) = clf.classify(RED).labels
    assert found.name == "box" and found.box is not None
    assert (found.box.left, found.box.top, found.box.width) == pytest.approx((0.125, 0.625, 0.25))


def test_ssd_export_gives_boxes_with_rgb_input(tmp_path: Path) -> None:
    outputs: dict[str, np.ndarray] = {
        "detected_boxes": np.array([[[0.1, 0.2, 0.5, 0.6], [0.0, 0.0, 0.2, 0.2]]], np.float32),
        "detected_scores": np.array([[0.9, 0.3]], np.float32),
        "detected_classes": np.array([[1, 0]], np.int64),
    }
    folder = write_export(
        tmp_path, constant_output_model("image_tensor", [1, 3, 32, 32], outputs), ["a", "b"]
    )
    with OnnxBackend(folder, threshold=0.5) as clf:
        assert (clf.family, clf.spec.channel_order) == ("ssd", "RGB")
        (found,) = clf.classify(RED).labels
    assert found.name == "b" and found.confidence == pytest.approx(0.9)
    assert found.box is not None and found.box.height == pytest.approx(0.4)


def test_inference_is_stopped_at_the_timeout_and_not_retried(tmp_path: Path) -> None:
    side = 384
    nodes = [helper.make_node("ReduceMean", ["data"], ["m"], axes=[1], keepdims=0)]
    nodes += [helper.make_node("MatMul", [f"x{i}" if i else "m", "w"], [f"x{i + 1}"]) for i in range(40)]
    nodes += [
        helper.make_node("ReduceMean", ["x40"], ["pooled"], axes=[2], keepdims=0),
        helper.make_node("Softmax", ["pooled"], ["model_output"], axis=1),
    ]
    slow = model_bytes(
        nodes,
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, side, side])],
        [helper.make_tensor_value_info("model_output", TensorProto.FLOAT, [1, side])],
        initializers=[numpy_helper.from_array(np.eye(side, dtype=np.float32), "w")],
    )
    write_export(tmp_path, slow, [f"c{i}" for i in range(side)])
    with OnnxBackend(tmp_path, retry=RetryPolicy(max_attempts=3)) as clf:
        clf.timeout = 0.001
        with pytest.raises(BackendTimeoutError, match="stopped at the timeout") as caught:
            clf.classify(RED)
    assert not caught.value.retryable


def test_unknown_providers_are_a_configuration_error(classifier_dir: Path) -> None:
    with pytest.raises(ConfigurationError, match="not available here; choose from"):
        OnnxBackend(classifier_dir, providers=["NoSuchExecutionProvider"])


@pytest.mark.parametrize(("option", "value"), [("threshold", 1.5), ("batch_size", 0)])
def test_bad_options_are_configuration_errors(classifier_dir: Path, option: str, value: float) -> None:
    options: dict[str, Any] = {option: value}
    with pytest.raises(ConfigurationError, match=option):
        OnnxBackend(classifier_dir, **options)


def test_missing_model_path_names_the_argument(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="model_path"):
        OnnxBackend()
    with pytest.raises(ConfigurationError, match="does not exist"):
        OnnxBackend(tmp_path / "nope.zip")


def test_the_factory_builds_it_and_repr_shows_the_model(classifier_dir: Path) -> None:
    clf = create_classifier("onnx", model_path=str(classifier_dir))
    try:
        assert isinstance(clf, OnnxBackend)
        assert (
            repr(clf)
            == "OnnxBackend(model='iter-1', family='classifier', labels=3, input='data' 8x8 BGR, batch=16)"
        )
    finally:
        clf.close()
    with pytest.raises(RuntimeError, match="closed"):
        clf.classify(RED)


def test_a_missing_onnxruntime_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.delitem(sys.modules, "azvision.backends.onnx")
    with pytest.raises(ConfigurationError, match=r"pip install 'azvision\[onnx\]'"):
        importlib.import_module("azvision.backends.onnx")


def test_unexpected_failures_on_one_input_stay_in_place(classifier_dir: Path) -> None:
    with OnnxBackend(classifier_dir) as clf:
        outcomes = list(clf.classify_many([RED, 42, BLUE]))  # type: ignore[list-item]
    assert isinstance(outcomes[1], AzVisionError)
    assert [o.label for o in outcomes if isinstance(o, Prediction)] == ["red", "blue"]
