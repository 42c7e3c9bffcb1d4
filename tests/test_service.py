"""The real service on 127.0.0.1 (uvicorn in a thread, or a `breastus serve` process), spoken to over HTTP."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import io
import json
import logging
import struct
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the service tests run on Linux")

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from service_helpers import (  # noqa: E402
    png_bytes,
    serve_in_thread,
    serve_process,
    start_serve_process,
    stop_process,
    wait_healthy,
)

from breastus import ConfigError, Prediction, Predictor  # noqa: E402
from breastus.service import (  # noqa: E402
    NOTICE,
    ServiceInputError,
    bearer_matches,
    create_app,
    describe_model,
    load_served_model,
    load_token,
    mask_outline,
    sniff_kind,
)

TOKEN = "test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint: Path) -> Predictor:
    return Predictor.from_checkpoint(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def server(predictor: Predictor, tiny_checkpoint: Path) -> Iterator[str]:
    """The service with a 200 kB upload limit and a 2-megapixel image limit."""
    app = create_app(
        predictor,
        max_upload_bytes=200_000,
        max_image_pixels=2_000_000,
        description=describe_model(predictor, tiny_checkpoint),
    )
    with serve_in_thread(app) as url:
        yield url


def upload(url: str, data: bytes, name: str = "scan.png", query: str = "", **kwargs: Any) -> Any:
    return httpx.post(f"{url}/v1/predict{query}", files={"file": (name, data, "image/png")}, timeout=60, **kwargs)


def assert_still_serving(url: str) -> None:
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    assert upload(url, png_bytes(seed=7)).status_code == 200


# --------------------------------------------------------------------------- answers


def test_predict_answers_what_the_predictor_says(server: str, predictor: Predictor, tmp_path: Path) -> None:
    for seed, size in ((0, (48, 40)), (1, (64, 64)), (2, (33, 57))):
        data = png_bytes(*size, seed=seed)
        path = tmp_path / f"image{seed}.png"
        path.write_bytes(data)
        expected = predictor.predict(path)
        response = upload(server, data, name="../../etc/secret-name.png")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["label"] == expected.label
        assert body["probabilities"].keys() == expected.probabilities.keys()
        for name, p in expected.probabilities.items():
            assert body["probabilities"][name] == pytest.approx(p, abs=1e-6)
        assert body["confidence"] == pytest.approx(expected.confidence, abs=1e-6)
        assert (body["width"], body["height"]) == size
        assert "path" not in body and "secret-name" not in response.text
        assert body["heatmap"] is None if "heatmap" in body else True
        assert body["notice"] == NOTICE


def test_model_and_health_describe_the_checkpoint(server: str, tiny_checkpoint: Path) -> None:
    version = hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()[:12]
    model = httpx.get(f"{server}/v1/model", timeout=10).json()
    assert model["classes"] == ["benign", "malignant", "normal"]
    assert model["name"] == "torchvision/resnet18"
    assert model["version"] == version
    assert model["image_size"] == 32
    assert model["calibrated"] is False
    assert "not a medical device" in model["notice"].lower()
    health = httpx.get(f"{server}/healthz", timeout=10).json()
    assert health == {"status": "ok", "name": "torchvision/resnet18", "version": version}


def test_heatmap_is_a_png_overlay_of_the_image(server: str) -> None:
    response = upload(server, png_bytes(50, 30, seed=3), query="?heatmap=true&outline=true")
    assert response.status_code == 200, response.text
    body = response.json()
    prefix = "data:image/png;base64,"
    assert body["heatmap"].startswith(prefix)
    overlay = Image.open(io.BytesIO(base64.b64decode(body["heatmap"][len(prefix) :])))
    assert overlay.format == "PNG" and overlay.mode == "RGB" and overlay.size == (50, 30)
    assert np.asarray(overlay).std(axis=2).max() > 0  # coloured, not gray
    assert body["outline"] is None  # this classifier has no lesion mask


def test_mask_outline_traces_a_square_in_image_pixels() -> None:
    mask = np.zeros((20, 40), dtype=bool)
    mask[5:15, 10:30] = True
    (line,) = mask_outline(mask, (80, 40))  # the image is twice the mask's size
    points = np.array(line)
    assert points[0].tolist() == points[-1].tolist()  # closed
    assert points[:, 0].min() == pytest.approx(19.5, abs=1.01) and points[:, 0].max() == pytest.approx(58.5, abs=1.01)
    assert points[:, 1].min() == pytest.approx(9.5, abs=1.01) and points[:, 1].max() == pytest.approx(28.5, abs=1.01)
    assert mask_outline(np.zeros((5, 5)), (5, 5)) == []
    edge = np.ones((6, 6))
    assert len(mask_outline(edge, (6, 6))) == 1  # a lesion touching the border still gives one closed contour


# --------------------------------------------------------------------------- malformed input


def truncated_png() -> bytes:
    data = png_bytes(64, 64, seed=4)
    return data[: len(data) // 2]


def huge_dimension_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid-looking PNG header declaring 900 megapixels, with a few bytes of data (a decompression bomb)."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 1000))
        + chunk(b"IEND", b"")
    )


def dicom_without_pixels() -> bytes:
    return b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\x14\x001.2.840.10008.1.2.1\0"


MALFORMED: list[tuple[str, bytes, int, str]] = [
    ("empty file", b"", 400, "empty"),
    ("truncated PNG", truncated_png(), 422, "truncated"),
    ("huge-dimension PNG", huge_dimension_png(), 413, "pixels"),
    ("text named .png", b"hello, this is not an image at all" * 3, 415, "not a PNG, JPEG or DICOM"),
    ("GIF", b"GIF89a" + b"\0" * 64, 415, "not a PNG, JPEG or DICOM"),
    ("PNG signature then garbage", b"\x89PNG\r\n\x1a\n" + b"\x07" * 100, 422, "corrupt"),
    ("JPEG signature then garbage", b"\xff\xd8\xff\xe0" + b"\x00" * 50, 422, "JPEG"),
    ("oversized file", png_bytes(8, 8) + b"\0" * 300_000, 413, "limit"),
]


@pytest.mark.parametrize(("what", "data", "status", "words"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_uploads_get_4xx_with_a_message_and_the_server_keeps_serving(
    server: str, what: str, data: bytes, status: int, words: str
) -> None:
    try:
        response = upload(server, data)
    except httpx.TransportError:  # pragma: no cover - the 413 may close the socket while the body is sent
        assert status == 413
    else:
        assert response.status_code == status, response.text
        assert words.lower() in response.json()["detail"].lower()
    assert_still_serving(server)


def test_dicom_without_pixels_gets_4xx(server: str) -> None:
    response = upload(server, dicom_without_pixels(), name="x.dcm")
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["detail"]
    assert_still_serving(server)


def test_requests_that_are_not_one_uploaded_file_get_4xx(server: str) -> None:
    raw = httpx.post(f"{server}/v1/predict", content=png_bytes(), headers={"content-type": "image/png"}, timeout=10)
    assert raw.status_code == 415 and "multipart/form-data" in raw.json()["detail"]
    no_file = httpx.post(f"{server}/v1/predict", data={"image": "x"}, files={"other": ("a.png", png_bytes())})
    assert no_file.status_code == 422 and "'file'" in no_file.json()["detail"]
    empty_body = httpx.post(f"{server}/v1/predict", headers={"content-type": "multipart/form-data; boundary=x"})
    assert 400 <= empty_body.status_code < 500
    bad_query = upload(server, png_bytes(), query="?heatmap=perhaps")
    assert bad_query.status_code == 422
    assert_still_serving(server)


@given(st.binary(max_size=300))
def test_sniff_kind_accepts_exactly_png_jpeg_and_dicom_signatures(data: bytes) -> None:
    try:
        kind = sniff_kind(data)
    except ServiceInputError as exc:
        assert exc.status in (400, 415)
        assert (exc.status == 400) == (data == b"")
        return
    expected = {"png": data[:8] == b"\x89PNG\r\n\x1a\n", "jpeg": data[:3] == b"\xff\xd8\xff"}
    assert expected.get(kind, data[128:132] == b"DICM")


# --------------------------------------------------------------------------- token, logs, concurrency


def test_token_is_required_on_the_api_but_not_for_health(predictor: Predictor, tmp_path: Path) -> None:
    token_file = tmp_path / "token.txt"
    token_file.write_text(TOKEN + "\n")
    with serve_in_thread(create_app(predictor, token=load_token(token_file))) as url:
        assert upload(url, png_bytes()).status_code == 401
        wrong = upload(url, png_bytes(), headers={"Authorization": "Bearer " + TOKEN[:-1] + "X"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        assert "bearer token" in wrong.json()["detail"]
        assert httpx.get(f"{url}/v1/model").status_code == 401
        good = {"Authorization": f"Bearer {TOKEN}"}
        assert upload(url, png_bytes(), headers=good).status_code == 200
        assert httpx.get(f"{url}/v1/model", headers=good).status_code == 200
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert httpx.get(f"{url}/").status_code == 200


def test_load_token_refuses_missing_and_weak_tokens(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_token(tmp_path / "missing.txt")
    (tmp_path / "short.txt").write_text("abc\n")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        load_token(tmp_path / "short.txt")
    assert bearer_matches(f"bearer {TOKEN}", TOKEN) and not bearer_matches(TOKEN, TOKEN)
    assert not bearer_matches(None, TOKEN) and not bearer_matches("Basic " + TOKEN, TOKEN)


def test_logs_are_json_lines_without_file_names_or_tokens(predictor: Predictor) -> None:
    from breastus.service import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("breastus.service")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with serve_in_thread(create_app(predictor, token=TOKEN)) as url:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            assert upload(url, png_bytes(), name="patient-jane-doe.png", headers=headers).status_code == 200
            assert upload(url, b"not an image", name="patient-jane-doe.png", headers=headers).status_code == 415
    finally:
        log.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    requests = [line for line in lines if line.get("event") == "request"]
    assert [(r["route"], r["status"]) for r in requests] == [("/v1/predict", 200), ("/v1/predict", 415)]
    assert all(r["ms"] > 0 and r["bytes_in"] > 0 for r in requests)
    text = stream.getvalue()
    assert "jane-doe" not in text and TOKEN not in text
    assert "6e 6f 74" not in text  # not even the first bytes of the rejected upload ("not ...")
    rejected = [line for line in lines if line.get("event") == "rejected"]
    assert rejected[0]["status"] == 415 and "not a PNG, JPEG or DICOM" in rejected[0]["detail"]


class SlowPredictor(Predictor):
    """A Predictor whose every forward pass takes at least ``delay`` seconds, recording batch sizes."""

    delay = 0.3
    batches: list[int]

    def _predict_items(self, items: Sequence[Any]) -> list[Prediction]:
        self.batches.append(len(items))
        time.sleep(self.delay)
        return super()._predict_items(items)


@pytest.fixture()
def slow_predictor(tiny_checkpoint: Path) -> SlowPredictor:
    slow = SlowPredictor.from_checkpoint(tiny_checkpoint, device="cpu")
    assert isinstance(slow, SlowPredictor)
    slow.batches = []
    return slow


async def _concurrent(url: str, images: list[bytes]) -> list[Any]:
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(
            *[client.post(f"{url}/v1/predict", files={"file": ("a.png", data)}) for data in images]
        )


def test_concurrent_requests_share_one_batch_and_get_their_own_answers(
    slow_predictor: SlowPredictor, predictor: Predictor
) -> None:
    images = [png_bytes(40, 40, seed=s) for s in range(8)]
    with serve_in_thread(create_app(slow_predictor, batch_wait_ms=50)) as url:
        slow_predictor.batches.clear()  # drop the warm-up call
        responses = asyncio.run(_concurrent(url, images))
    assert [r.status_code for r in responses] == [200] * 8
    assert sum(slow_predictor.batches) == 8 and len(slow_predictor.batches) <= 3  # batched, not one by one
    for data, response in zip(images, responses, strict=True):
        expected = predictor.predict(Image.open(io.BytesIO(data)))
        assert response.json()["label"] == expected.label
        for name, p in expected.probabilities.items():
            assert response.json()["probabilities"][name] == pytest.approx(p, abs=1e-5)


def test_saturated_service_answers_503_and_recovers(slow_predictor: SlowPredictor) -> None:
    app = create_app(slow_predictor, max_concurrency=1, max_queue=1, max_batch=1)
    with serve_in_thread(app) as url:
        responses = asyncio.run(_concurrent(url, [png_bytes(seed=s) for s in range(6)]))
        codes = sorted(r.status_code for r in responses)
        assert codes.count(200) >= 2 and codes.count(503) >= 1 and set(codes) <= {200, 503}
        busy = next(r for r in responses if r.status_code == 503)
        assert "busy" in busy.json()["detail"] and busy.headers["retry-after"] == "1"
        assert upload(url, png_bytes()).status_code == 200


def test_create_app_validates_its_limits(predictor: Predictor) -> None:
    with pytest.raises(ConfigError, match=r"max_concurrency must be an int >= 1\. Got 0"):
        create_app(predictor, max_concurrency=0)
    with pytest.raises(ConfigError, match="max_upload_bytes"):
        create_app(predictor, max_upload_bytes=-5)
    with pytest.raises(ConfigError, match="batch_wait_ms"):
        create_app(predictor, batch_wait_ms=float("nan"))


# --------------------------------------------------------------------------- backends, DICOM, the process


def test_onnxruntime_backend_matches_torch_and_still_draws_heatmaps(
    tiny_checkpoint: Path, predictor: Predictor
) -> None:
    pytest.importorskip("onnxruntime")
    served = load_served_model(tiny_checkpoint, backend="onnxruntime", device="cpu")
    assert served.description["backend"] == "onnxruntime" and served.explainer is not None
    app = create_app(served.predictor, explainer=served.explainer, description=served.description)
    data = png_bytes(seed=5)
    expected = predictor.predict(Image.open(io.BytesIO(data)))
    with serve_in_thread(app) as url:
        body = upload(url, data, query="?heatmap=true").json()
        assert httpx.get(f"{url}/v1/model").json()["backend"] == "onnxruntime"
    assert body["label"] == expected.label
    for name, p in expected.probabilities.items():
        assert body["probabilities"][name] == pytest.approx(p, abs=1e-5)
    assert body["heatmap"].startswith("data:image/png;base64,")
    # without the checkpoint's PyTorch model there are no heatmaps, and the answer says why
    with serve_in_thread(create_app(served.predictor)) as url:
        refused = upload(url, data, query="?heatmap=true")
        assert refused.status_code == 400 and "ONNX Runtime" in refused.json()["detail"]
        assert upload(url, data).status_code == 200


def test_dicom_upload_is_classified_like_the_file(server: str, predictor: Predictor, tmp_path: Path) -> None:
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    pixels = np.asarray(Image.open(io.BytesIO(png_bytes(48, 40, seed=6))))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"  # Ultrasound Image Storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientName = "Doe^Jane"
    ds.Modality = "US"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = pixels.tobytes()
    path = tmp_path / "scan.dcm"
    ds.save_as(path, enforce_file_format=True)
    expected = predictor.predict(path)
    response = upload(server, path.read_bytes(), name="scan.dcm")
    assert response.status_code == 200, response.text
    assert response.json()["label"] == expected.label
    for name, p in expected.probabilities.items():
        assert response.json()["probabilities"][name] == pytest.approx(p, abs=1e-6)
    assert "Doe" not in response.text


@pytest.mark.slow
def test_killed_server_restarts_and_serves_again(tiny_checkpoint: Path) -> None:
    data = png_bytes(seed=8)
    with serve_process(tiny_checkpoint) as (url, process):
        first = upload(url, data)
        assert first.status_code == 200
        assert httpx.get(f"{url}/").text.count("Not a medical device") == 1
        port = int(url.rsplit(":", 1)[1])
        process.kill()  # SIGKILL: no clean shutdown
        process.wait(timeout=30)
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/healthz", timeout=2)
        restarted = start_serve_process(tiny_checkpoint, port)
        try:
            wait_healthy(url, process=restarted)
            again = upload(url, data)
            assert again.status_code == 200 and again.json() == first.json()
        finally:
            stop_process(restarted)


def test_cli_serve_reports_bad_options(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from breastus.cli import main

    assert main(["serve", str(tiny_checkpoint), "--token-file", str(tmp_path / "none.txt")]) == 2
    assert main(["serve", str(tiny_checkpoint), "--max-upload-mb", "0"]) == 2
    assert main(["serve", str(tmp_path / "missing.pt")]) == 2


class LesionPredictor(Predictor):
    """Returns a square lesion mask at a quarter of the image's size with every prediction."""

    def predict(self, images: Any) -> Any:  # type: ignore[override]
        results = super().predict(images)
        single = not isinstance(results, list)
        out = []
        for p, image in zip([results] if single else results, [images] if single else images, strict=True):
            mask = np.zeros((image.height // 4, image.width // 4), dtype=bool)
            mask[2:6, 3:9] = True
            out.append(dataclasses.replace(p, lesion_probability=0.75, mask=mask))
        return out[0] if single else out


def test_lesion_fields_and_outline_flow_through(tiny_checkpoint: Path) -> None:
    lesion = LesionPredictor.from_checkpoint(tiny_checkpoint, device="cpu")
    with serve_in_thread(create_app(lesion)) as url:
        body = upload(url, png_bytes(48, 40), query="?outline=true").json()
        plain = upload(url, png_bytes(48, 40)).json()
    assert body["lesion_probability"] == 0.75 and "mask" not in body
    (line,) = body["outline"]
    points = np.array(line)
    assert 10 <= points[:, 0].min() < points[:, 0].max() <= 36  # mask columns 3..8 at 4x scale, in image pixels
    assert 6 <= points[:, 1].min() < points[:, 1].max() <= 24
    assert "outline" not in plain or plain["outline"] is None


def test_describe_model_reads_the_run_folder_without_leaking_paths(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from breastus.models import load_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    checkpoint_file = run / "best.pt"
    checkpoint_file.write_bytes(tiny_checkpoint.read_bytes())
    paths = [f"/secret/hospital/busi/{c}/{c} ({i}).png" for c in ("benign", "malignant", "normal") for i in (1, 2)]
    (run / "split.json").write_text(json.dumps({"paths": paths, "train": [0, 2, 4], "val": [1], "test": [3, 5]}))
    (run / "test_metrics.json").write_text(json.dumps({"accuracy": 0.5, "macro_f1": 0.4}))
    predictor = Predictor.from_checkpoint(checkpoint_file, device="cpu")
    described = describe_model(predictor, checkpoint_file, load_checkpoint(checkpoint_file))
    data = described["training"]["data"]
    assert data["dataset"] == "busi" and data["images"] == 6
    assert data["split"]["train"] == {"images": 3, "per_class": {"benign": 1, "malignant": 1, "normal": 1}}
    assert data["split"]["test"]["per_class"] == {"benign": 0, "malignant": 1, "normal": 1}
    assert described["metrics"] == {"accuracy": 0.5, "macro_f1": 0.4}
    assert described["training"]["epochs_completed"] == 0 and described["training"]["best_val_macro_f1"] is None
    assert "secret" not in json.dumps(described)


def test_an_onnx_file_is_served_by_onnxruntime_only(tiny_checkpoint: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from breastus.export import export_model

    onnx_file = export_model(tiny_checkpoint, tmp_path / "model.onnx")
    served = load_served_model(onnx_file, backend="onnxruntime", device="cpu")
    assert served.explainer is None
    assert served.description["version"] == hashlib.sha256(onnx_file.read_bytes()).hexdigest()[:12]
    assert served.description["classes"] == ["benign", "malignant", "normal"]
    with pytest.raises(ConfigError, match="--backend onnxruntime"):
        load_served_model(onnx_file, backend="torch")
    with pytest.raises(ConfigError, match="backend must be one of"):
        load_served_model(tiny_checkpoint, backend="tensorrt")
