"""A JSON HTTP API over the recogniser: ``POST /predict``, ``GET /health``, FastAPI's OpenAPI schema.

``python -m fer_core serve`` runs it with uvicorn on 127.0.0.1:8000. ``POST /predict``
takes one image as the multipart form field ``file`` and answers with the same JSON as
``python -m fer_core predict`` gives for one image::

    {"image": "photo.jpg", "faces": [{"box": [x, y, w, h], "emotion": "happy", "scores": {...}, "landmarks": {...}}]}

Limits, so that one client cannot take the server down:

* request bodies above `ServeLimits.max_upload_bytes` get 413 before the body is read
  (from Content-Length) or as soon as the streamed body passes the cap (chunked uploads);
* a body that takes longer than `ServeLimits.upload_timeout_s` to arrive gets 408 (slow clients
  cannot hold connections open);
* pictures above `ServeLimits.max_pixels` are refused from their header, before decoding;
* decoding and inference run on a pool of `ServeLimits.workers` threads, each with its own
  face detector; at most `ServeLimits.max_waiting` more requests wait for one, and the rest
  get 503 with ``Retry-After``;
* every error is a JSON ``{"detail": "..."}`` with a 4xx status that says what to do; an
  unexpected failure is logged with its traceback and answered with a plain 500 JSON.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from fer_core.images import UPLOAD_MAX_BYTES, UPLOAD_MAX_PIXELS, ImageError, decode_image
from fer_core.inference import Recognizer

log = logging.getLogger("fer_core.serve")


@dataclass(frozen=True)
class ServeLimits:
    """What one request and the whole server may use."""

    # 10 MB holds any phone photo (a 12 MP JPEG is 3-6 MB) and keeps a form upload in memory.
    max_upload_bytes: int = UPLOAD_MAX_BYTES
    # 40 MP covers current phone cameras; a 40 MP RGB decode is ~120 MB per worker.
    max_pixels: int = UPLOAD_MAX_PIXELS
    # Threads that decode and classify; with TensorFlow using all cores for each call, more
    # workers than cores only adds memory.
    workers: int = max(1, min(2, os.cpu_count() or 1))
    # Requests allowed to wait for a worker; beyond this the server answers 503 at once.
    max_waiting: int = 16
    # Seconds a client may take to send a whole request body (10 MB at ~3 Mbit/s); a slower
    # upload gets 408, so slow clients cannot hold connections open indefinitely.
    upload_timeout_s: float = 30.0


class _BodyLimit:
    """ASGI middleware: refuse bodies above `max_bytes` with 413 before or while they arrive,
    and bodies that take longer than `timeout_s` to arrive with 408."""

    def __init__(self, app, max_bytes: int, timeout_s: float | None = None) -> None:
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > self.max_bytes
            except ValueError:
                await _send_json(send, 400, "Content-Length is not a number.")
                return
            if too_big:
                await _send_json(send, 413, self._message())
                return
        seen = 0
        started = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s if self.timeout_s else None

        async def guarded_receive():
            nonlocal seen
            if deadline is None:
                message = await receive()
            else:
                try:
                    message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
                except TimeoutError:
                    raise HTTPException(
                        408,
                        f"the upload took longer than {self.timeout_s:g} s; send a smaller image or retry on a faster link.",
                        headers={"Connection": "close"},
                    ) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # An HTTPException passes through FastAPI's form parsing (other errors become 400).
                    raise HTTPException(413, self._message())
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded_receive, tracking_send)
        except HTTPException as exc:  # raised outside FastAPI's handlers (not expected, but never a 500)
            if started or exc.status_code not in (408, 413):
                raise
            await _send_json(send, exc.status_code, str(exc.detail))

    def _message(self) -> str:
        return f"the request body is larger than {self.max_bytes / 1e6:g} MB; send a smaller or downscaled image."


async def _send_json(send, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status in (408, 413):
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Workers:
    """A fixed pool of threads, each with its own recogniser view (own face detector)."""

    def __init__(self, recognizer, size: int, max_waiting: int) -> None:
        self._slots: queue.SimpleQueue = queue.SimpleQueue()
        for i in range(size):
            # Neither a CascadeClassifier nor a TFLite interpreter is thread-safe: one per worker.
            self._slots.put(recognizer if i == 0 else recognizer.with_detector(recognizer.detector.clone()))
        self._pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="fer-infer")
        self._admitted = threading.BoundedSemaphore(size + max_waiting)

    def try_admit(self) -> bool:
        return self._admitted.acquire(blocking=False)

    def release(self) -> None:
        self._admitted.release()

    async def run(self, fn, *args):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._with_slot, fn, args)

    def _with_slot(self, fn, args):
        rec = self._slots.get()
        try:
            return fn(rec, *args)
        finally:
            self._slots.put(rec)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _predict(rec, data: bytes, name: str, max_pixels: int) -> dict:
    """Decode (with the pixel cap) and classify one upload; the `predict` CLI's JSON for it."""
    rgb = decode_image(data, max_pixels=max_pixels, name=name)
    return {"image": name, "faces": [f.to_json() for f in rec.predict_image(rgb)]}


def _add_error_handlers(app: FastAPI) -> None:
    """Every error answers JSON ``{"detail": ...}`` that says what to send instead; a bug is a logged 500."""

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException):
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError):
        ctype = request.headers.get("content-type", "")
        if request.url.path == "/predict" and not ctype.startswith("multipart/form-data"):
            detail = f'the request is {ctype or "without a content type"}; send the picture as multipart/form-data in the field "file".'
            return JSONResponse({"detail": detail}, status_code=415)
        parts = []
        for err in exc.errors():
            loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}")
        detail = "; ".join(parts) + '; send the picture as multipart/form-data in the field "file".'
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; the server log has the details."}, status_code=500)


def create_app(recognizer=None, *, model_path: str | Path | None = None, limits: ServeLimits | None = None):
    """Build the FastAPI application.

    Args:
        recognizer: a `fer_core.inference.Recognizer`; None builds one from `model_path`.
        model_path: a ``.keras`` model with its card (None: the shipped model).
        limits: request, picture and concurrency limits (default `ServeLimits()`).

    Returns:
        An ASGI application (FastAPI wrapped in the body-size guard); the FastAPI object
        is its ``.fastapi`` attribute.
    """
    limits = limits or ServeLimits()
    if recognizer is None:
        recognizer = Recognizer(model_path)
    card = recognizer.card
    workers = _Workers(recognizer, limits.workers, limits.max_waiting)

    app = FastAPI(
        title="FER workbench API",
        summary="Facial emotion recognition: faces and their emotion scores in an uploaded picture.",
        version=str(card.get("name", "model")),
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.workers = workers
    app.router.on_shutdown.append(workers.shutdown)

    _add_error_handlers(app)

    error_responses = {
        400: {"description": "The upload is not a usable picture (corrupt, empty, too many pixels)."},
        408: {"description": f"The body took longer than {limits.upload_timeout_s:g} s to arrive."},
        413: {"description": f"The request body is larger than {limits.max_upload_bytes} bytes."},
        415: {"description": "The request is not multipart/form-data."},
        422: {"description": 'The form has no "file" field.'},
        503: {"description": "Every worker is busy and the wait queue is full; retry later."},
    }

    @app.get("/health", summary="Model name and version, labels and limits")
    async def health() -> dict:
        return {
            "status": "ok",
            "model": card.get("name"),
            "version": card.get("version") or card.get("created"),
            "card_version": card.get("card_version"),
            "labels": list(recognizer.labels),
            "tta": recognizer.tta,
            "limits": asdict(limits),
        }

    @app.post("/predict", summary="Faces and emotions in one picture", responses=error_responses)
    async def predict(file: UploadFile = File(..., description="the picture (jpg, png, ...)")):
        data = await file.read()
        name = (Path(file.filename or "upload").name or "upload")[:255]
        if not workers.try_admit():
            return JSONResponse(
                {"detail": "the server is busy; retry in a second."}, status_code=503, headers={"Retry-After": "1"}
            )
        try:
            return await workers.run(_predict, data, name, limits.max_pixels)
        except ImageError as exc:
            return JSONResponse({"detail": f"{exc} Send a JPEG or PNG photo."}, status_code=400)
        finally:
            workers.release()

    guarded = _BodyLimit(app, limits.max_upload_bytes, limits.upload_timeout_s)
    guarded.fastapi = app
    return guarded


def serve(
    host: str = "127.0.0.1", port: int = 8000, model_path: str | Path | None = None, limits: ServeLimits | None = None
) -> None:
    """Load the model and serve the API with uvicorn until interrupted."""
    import uvicorn

    app = create_app(model_path=model_path, limits=limits)
    # One process: the model lives once in memory; concurrency is the worker pool's job.
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
