"""DICOM input benchmark: decoding time against PNG, and the memory of streaming a cine loop.

Builds, in a temporary folder, the same 8-bit grayscale ultrasound-sized frame
(default 640x480) as a PNG, as an uncompressed DICOM file and as a JPEG-baseline
DICOM file (Pillow-made JPEG, encapsulated), plus an N-frame uncompressed cine
loop. Then it measures, in this process:

* ``load_image`` milliseconds per file for each form (median of ``--repeats``),
  and each DICOM form's ratio to the PNG baseline of the same run; and
  pydicom's own JPEG decoding time with each installed plugin (breastus asks
  for Pillow on baseline JPEG, the fastest);
* streaming the cine with ``iter_dicom_frames`` (frames per second, and the
  peak of Python-level allocations, ``tracemalloc``, numpy arrays included),
  against decoding the whole loop at once with ``pydicom.pixels.pixel_array``:
  the streaming peak should stay near one frame, the other grows with N.

Run (the numbers in docs/benchmarks/dicom.rst)::

    nice -n 10 python benchmarks/dicom_io.py --json benchmarks/results/dicom_io.json

Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import pixel_array
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, UltrasoundMultiFrameImageStorage, generate_uid

from breastus import cpu_features
from breastus.data import iter_dicom_frames, load_image


def _dataset(syntax: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UltrasoundMultiFrameImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = UltrasoundMultiFrameImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    return ds


def speckle(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A speckle-like frame (Rayleigh noise), so PNG and JPEG compress as they would on ultrasound."""
    return np.clip(rng.rayleigh(40, (height, width)), 0, 255).astype(np.uint8)


def write_files(folder: Path, height: int, width: int, n_frames: int) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    frame = speckle(rng, height, width)
    paths = {"png": folder / "frame.png", "dicom": folder / "frame.dcm", "dicom_jpeg": folder / "frame_jpeg.dcm"}
    Image.fromarray(frame).save(paths["png"])
    ds = _dataset(ExplicitVRLittleEndian)
    ds.set_pixel_data(frame, "MONOCHROME2", 8)
    ds.save_as(paths["dicom"], enforce_file_format=True)
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, "JPEG", quality=90)
    ds = _dataset(JPEGBaseline8Bit)
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = height, width, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(paths["dicom_jpeg"], enforce_file_format=True)
    cine = _dataset(ExplicitVRLittleEndian)
    cine.set_pixel_data(np.stack([speckle(rng, height, width) for _ in range(n_frames)]), "MONOCHROME2", 8)
    paths["cine"] = folder / "cine.dcm"
    cine.save_as(paths["cine"], enforce_file_format=True)
    return paths


def median_ms(function: Callable[[], object], repeats: int) -> float:
    function()  # warm-up (imports, plugin discovery)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def peak_mib(function: Callable[[], object]) -> tuple[float, float]:
    """Peak traced allocation (MiB) and wall time (s) of one call."""
    tracemalloc.start()
    start = time.perf_counter()
    function()
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20, elapsed




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--frames", type=int, default=200, help="frames in the cine loop")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_files(Path(tmp), args.height, args.width, args.frames)
        decode = {
            name: median_ms(lambda p=paths[name]: load_image(p), args.repeats)
            for name in ("png", "dicom", "dicom_jpeg")
        }
        plugins = get_decoder(JPEGBaseline8Bit).available_plugins
        jpeg_plugins = {
            plugin: median_ms(
                lambda plugin=plugin: pixel_array(paths["dicom_jpeg"], decoding_plugin=plugin), args.repeats
            )
            for plugin in plugins
        }
        frame_mib = args.height * args.width / 2**20

        def stream() -> None:
            for frame in iter_dicom_frames(paths["cine"]):
                frame.image.load()

        stream()  # warm-up
        stream_peak, stream_s = peak_mib(stream)
        whole_peak, whole_s = peak_mib(lambda: pixel_array(paths["cine"]))
        reference = pixel_array(paths["dicom_jpeg"], decoding_plugin="pillow" if "pillow" in plugins else "")
        jpeg_equal = bool(np.array_equal(np.asarray(load_image(paths["dicom_jpeg"])), reference))

    result: dict[str, Any] = {
        "cpu": cpu_features()["model"],
        "pydicom": pydicom.__version__,
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "frame": [args.width, args.height],
        "load_image_ms": {k: round(v, 3) for k, v in decode.items()},
        "ratio_to_png": {k: round(decode[k] / decode["png"], 3) for k in ("dicom", "dicom_jpeg")},
        "jpeg_matches_pydicom": jpeg_equal,
        "pydicom_jpeg_decode_ms_by_plugin": {k: round(v, 3) for k, v in jpeg_plugins.items()},
        "cine": {
            "frames": args.frames,
            "frame_mib": round(frame_mib, 3),
            "stream_peak_mib": round(stream_peak, 2),
            "stream_frames_per_s": round(args.frames / stream_s, 1),
            "whole_loop_peak_mib": round(whole_peak, 2),
            "whole_loop_frames_per_s": round(args.frames / whole_s, 1),
            "peak_ratio_whole_to_stream": round(whole_peak / max(stream_peak, 1e-9), 1),
        },
    }
    print(
        f"CPU: {result['cpu']}; pydicom {result['pydicom']}; frame {args.width}x{args.height}; "
        f"load average {result['load_average_1min']}"
    )
    for name, ms in decode.items():
        ratio = "" if name == "png" else f"  ({decode[name] / decode['png']:.2f}x PNG)"
        print(f"load_image {name:<11} {ms:7.2f} ms{ratio}")
    for plugin, ms in jpeg_plugins.items():
        print(f"pydicom JPEG decode with {plugin:<9} {ms:7.2f} ms")
    cine = result["cine"]
    print(
        f"cine {args.frames} frames: streamed peak {cine['stream_peak_mib']} MiB "
        f"({cine['stream_frames_per_s']} frames/s) vs whole loop {cine['whole_loop_peak_mib']} MiB "
        f"({cine['whole_loop_frames_per_s']} frames/s); one frame is {cine['frame_mib']} MiB"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
