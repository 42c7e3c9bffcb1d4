"""``breastus serve``: the HTTP service and web page for a checkpoint (needs ``breastus[serve]``)."""

from __future__ import annotations

import argparse
import logging

from breastus._errors import ConfigError
from breastus.service._limits import DEFAULT_MAX_UPLOAD_BYTES
from breastus.service._load import SERVE_BACKENDS

NAME = "serve"
HELP = (
    "Serve a checkpoint over HTTP: POST /v1/predict, GET /v1/model, GET /healthz and a web page at / "
    "(binds 127.0.0.1 unless told otherwise; not a medical device)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` options."""
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="best.pt / last.pt, a run folder, or an .onnx file")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 exposes it to the network)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port")
    parser.add_argument("--backend", choices=SERVE_BACKENDS, default="torch", help="how the model runs")
    parser.add_argument(
        "--token-file", metavar="FILE", default=None, help="require `Authorization: Bearer <token in FILE>` on /v1/*"
    )
    parser.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_BYTES / 2**20,
        help="largest upload in MiB (413 beyond)",
    )
    parser.add_argument("--max-concurrency", type=int, default=32, help="requests processed at once")
    parser.add_argument("--max-queue", type=int, default=64, help="requests waiting beyond that (503 beyond)")
    parser.add_argument("--batch-size", type=int, default=16, help="largest dynamic batch of concurrent requests")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")


def run(args: argparse.Namespace) -> int:
    """Load the model and serve it until interrupted."""
    try:
        import uvicorn
    except ImportError as exc:
        raise ConfigError("breastus serve needs uvicorn and FastAPI: `pip install 'breastus[serve]'`.") from exc
    from breastus.service._app import create_app
    from breastus.service._load import load_served_model
    from breastus.service._logging import configure_json_logging
    from breastus.service._security import load_token

    if not args.max_upload_mb > 0:
        raise ConfigError(f"--max-upload-mb must be > 0. Got {args.max_upload_mb} instead.")
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must be in 1..65535. Got {args.port} instead.")
    token = load_token(args.token_file) if args.token_file else None
    served = load_served_model(args.checkpoint, args.backend, args.device, args.batch_size)
    app = create_app(
        served.predictor,
        token=token,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_concurrency=args.max_concurrency,
        max_queue=args.max_queue,
        max_batch=args.batch_size,
        explainer=served.explainer,
        description=served.description,
    )
    configure_json_logging(logging.INFO)
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning")
    return 0
