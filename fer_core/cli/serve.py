"""``python -m fer_core serve``: the JSON HTTP API (FastAPI + uvicorn), on 127.0.0.1 by default."""

from __future__ import annotations

import argparse

from fer_core.cli.common import add_model_option
from fer_core.errors import UsageError
from fer_core.serve import ServeLimits, serve


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``serve`` sub-command."""
    d = ServeLimits()
    p = subparsers.add_parser("serve", help="serve POST /predict and GET /health over HTTP (JSON)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    add_model_option(p)
    p.add_argument("--workers", type=int, default=d.workers, help=f"inference threads (default {d.workers})")
    p.add_argument(
        "--max-waiting",
        type=int,
        default=d.max_waiting,
        help=f"requests queued for a worker before 503 (default {d.max_waiting})",
    )
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=d.max_upload_bytes / 1e6,
        help="request body cap in MB (default %(default)g)",
    )
    p.add_argument(
        "--max-megapixels", type=float, default=d.max_pixels / 1e6, help="picture size cap in MP (default %(default)g)"
    )
    p.add_argument(
        "--upload-timeout",
        type=float,
        default=d.upload_timeout_s,
        help="seconds a client may take to send its upload before 408 (default %(default)g)",
    )
    p.set_defaults(func=cmd_serve)
    return p


def cmd_serve(args) -> int:
    """Check the arguments, load the model and serve until interrupted. Returns the exit code."""
    if not 0 < args.port < 65536:
        raise UsageError(f"--port must be 1-65535. Received: {args.port}")
    if args.workers < 1 or args.max_waiting < 0 or not (args.max_upload_mb > 0 and args.max_megapixels > 0):
        raise UsageError("--workers must be 1 or more, --max-waiting 0 or more, and the size caps above 0.")
    if not 0 < args.upload_timeout < float("inf"):
        raise UsageError(f"--upload-timeout must be a positive number of seconds. Received: {args.upload_timeout}")
    limits = ServeLimits(
        max_upload_bytes=int(args.max_upload_mb * 1e6),
        max_pixels=int(args.max_megapixels * 1e6),
        workers=args.workers,
        max_waiting=args.max_waiting,
        upload_timeout_s=args.upload_timeout,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: binding {args.host}: the API has no authentication; put it behind a proxy you trust.")
    serve(args.host, args.port, args.model, limits)
    return 0
