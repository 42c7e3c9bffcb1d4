"""Run a real breastus service on 127.0.0.1 for tests and benchmarks: in a thread, or as a `breastus serve` process."""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def png_bytes(width: int = 48, height: int = 40, seed: int = 0) -> bytes:
    """A small grayscale PNG with a bright blob."""
    rng = np.random.default_rng(seed)
    array = rng.integers(0, 80, size=(height, width), dtype=np.uint8)
    array[height // 3 : height // 2, width // 3 : width // 2] = 220
    buffer = io.BytesIO()
    Image.fromarray(array, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def free_socket() -> socket.socket:
    """A TCP socket bound to a free port on 127.0.0.1 (handed to uvicorn, so no port race)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def free_port() -> int:
    with contextlib.closing(free_socket()) as sock:
        port: int = sock.getsockname()[1]
    return port


@contextlib.contextmanager
def serve_in_thread(app: Any, timeout: float = 60.0) -> Iterator[str]:
    """Run ``app`` with uvicorn in a daemon thread; yields the base URL and stops the server afterwards."""
    import uvicorn

    sock = free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def _stderr_tail(process: subprocess.Popen[bytes]) -> str:
    log = getattr(process, "log_file", None)
    if log is None:
        return ""
    log.flush()
    log.seek(0)
    return str(log.read().decode(errors="replace"))[-2000:]


def wait_healthy(url: str, timeout: float = 120.0, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll ``url/healthz`` until it answers 200 (or fail, with the process's stderr if it died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"breastus serve exited with {process.returncode}: {_stderr_tail(process)}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become healthy within {timeout} s")


def start_serve_process(checkpoint: Path, port: int, extra: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """``python -m breastus.cli serve CHECKPOINT --port PORT`` with this checkout's sources first on the path.

    Its stderr (the JSON request log) goes to a temporary file, ``process.log_file``, so a
    long run never blocks on a full pipe.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop_process
    process = subprocess.Popen(
        [sys.executable, "-m", "breastus.cli", "serve", str(checkpoint), "--port", str(port), *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    process.log_file = log  # type: ignore[attr-defined]
    return process


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Kill a serve process (if still running) and close its log."""
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)
    log = getattr(process, "log_file", None)
    if log is not None:
        log.close()


@contextlib.contextmanager
def serve_process(checkpoint: Path, extra: Sequence[str] = (), timeout: float = 120.0) -> Iterator[tuple[str, Any]]:
    """A real ``breastus serve`` process on a free port; yields (URL, process) and kills it afterwards."""
    port = free_port()
    process = start_serve_process(checkpoint, port, extra)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, timeout, process)
        yield url, process
    finally:
        stop_process(process)
