"""``dbgan serve``: a local web page to deblur photos in the browser (optional extra ``dbgan[serve]``).

A small Starlette app (served by uvicorn) and one static page (``dbgan/web/``: HTML,
CSS and JavaScript, no CDN, works offline): drop images, pick a bundled model or a
checkpoint given on the command line, watch the tile progress of large images,
compare before and after with a slider, download the result (same format, bit
depth, EXIF and ICC profile as the upload, via :mod:`dbgan.imagefile`). A "blur width"
choice runs the model coarse to fine (``coarse_levels`` 1 or 2, :mod:`dbgan.infer.pyramid`)
for blur wider than it handles at full size; a "camera shake" box first estimates and deconvolves
one motion kernel of up to :data:`SHAKE_PX` px (``blind``, :mod:`dbgan.blind`).

Safety:

* binds to ``127.0.0.1`` unless told otherwise (a warning is logged for other hosts);
* uploads over ``max_upload_mb``, with an unknown extension, undecodable, or over
  ``max_pixels`` are refused with a one-line message (HTTP 413 / 415 / 400);
* the browser can only choose among the models the server was started with (no
  paths from the client);
* every file it writes is inside its own temporary folder (``dbgan-serve-*``), under
  server-made names (the upload's name only gives the extension and the download
  name); old jobs are deleted as new ones come (``keep_jobs``), and the folder is
  removed when the server stops.

HTTP API (what the page uses): ``GET /api/models``; ``POST /api/jobs?model=ID&filename=NAME``
(and optionally ``&coarse_levels=N``, ``&blind=31``) with the image bytes as the body -> ``{"id"}``; ``GET /api/jobs/ID`` ->
``{"state": queued|running|done|error, "progress": 0..1, "tiles_done", "tiles_total",
"pages", "error"}``; ``GET /api/jobs/ID/before.png``, ``/after.png`` (8-bit previews of
the first page), ``/result`` (the download).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import tempfile
import threading
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, AsyncIterator, Optional, Union

log = logging.getLogger(__name__)

__all__ = ["ServeError", "DeblurService", "build_app", "model_choices", "serve"]

PathLike = Union[str, Path]

#: An upload over the limit is read (and dropped) up to this many more bytes before the answer.
MAX_DRAIN_BYTES = 1 << 30

#: Static files of the page (the only ones served).
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css"}


class ServeError(ValueError):
    """Bad settings for ``dbgan serve`` (no model, missing extra)."""


def _require_extra() -> None:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ServeError(
            f"dbgan serve needs the optional web packages ({exc.name} is missing): pip install 'dbgan[serve]'"
        ) from None


@dataclass
class Job:
    """One upload and its deblurring."""

    id: str
    name: str
    ext: str
    model: str
    folder: Path
    coarse_levels: int = 0
    blind: int = 0
    state: str = "queued"
    pages: int = 1
    page: int = 0
    tiles_done: int = 0
    tiles_total: int = 0
    error: Optional[str] = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def status(self) -> dict[str, Any]:
        with self.lock:
            frac = 0.0
            if self.state == "done":
                frac = 1.0
            elif self.tiles_total:
                frac = (self.page + self.tiles_done / self.tiles_total) / max(1, self.pages)
            return {
                "id": self.id, "name": self.name, "state": self.state, "progress": round(frac, 4),
                "tiles_done": self.tiles_done, "tiles_total": self.tiles_total, "pages": self.pages,
                "page": self.page, "coarse_levels": self.coarse_levels, "blind": self.blind, "error": self.error,
            }

    @property
    def download_name(self) -> str:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(self.name).stem).strip("._") or "image"
        return f"{stem[:80]}_deblurred{self.ext}"


def model_choices(models: Optional[list[str]] = None) -> "OrderedDict[str, Path]":
    """``{id: checkpoint}``: the bundled models by name, then each ``models`` entry (name or path).

    Raises:
        ServeError: no model at all.
        dbgan.models.ModelNotFoundError / dbgan.checkpoint.CheckpointError: a bad entry.
    """
    from dbgan.api import resolve_model
    from dbgan.models import available_models, bundled_model_path

    choices: "OrderedDict[str, Path]" = OrderedDict()
    for name in models or []:
        choices[str(name)] = resolve_model(name)  # the id the page sends back; never a path from the client
    for name in available_models():
        if name not in choices:
            choices[name] = bundled_model_path(name)
    if not choices:
        raise ServeError(
            "no model to serve: this installation ships no bundled model; start it with "
            "--model CHECKPOINT (a .safetensors file or a run folder)"
        )
    return choices


class DeblurService:
    """The work behind the page: jobs in a private temporary folder, one worker thread.

    Args:
        models: ``{id: checkpoint path}`` (see :func:`model_choices`); the first is the default.
        device, dtype, tile, memory_budget_mb: inference settings (see :class:`dbgan.infer.Deblurrer`).
        max_upload_mb: largest accepted upload.
        max_pixels: largest accepted image (per page).
        keep_jobs: finished jobs kept (older ones and their files are deleted).
        workdir: parent of the private temporary folder (None: the system's temp dir).
    """

    def __init__(
        self,
        models: "OrderedDict[str, Path]",
        *,
        device: str = "auto",
        dtype: str = "fp32",
        tile: Optional[int] = None,
        memory_budget_mb: Optional[float] = None,
        max_upload_mb: float = 100.0,
        max_pixels: int = 60_000_000,
        keep_jobs: int = 20,
        workdir: Optional[PathLike] = None,
    ):
        if not models:
            raise ServeError("no model to serve")
        self.models = models
        self.settings = dict(device=device, dtype=dtype, tile=tile, memory_budget_mb=memory_budget_mb)
        self.max_upload_bytes = int(max_upload_mb * 2**20)
        self.max_pixels = int(max_pixels)
        self.keep_jobs = max(1, int(keep_jobs))
        if workdir is not None:
            Path(workdir).mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="dbgan-serve-", dir=workdir))
        self.jobs: "OrderedDict[str, Job]" = OrderedDict()
        self._deblurrers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dbgan-serve")
        log.info("dbgan serve: working folder %s", self.folder)

    # ------------------------------------------------------------------ jobs

    def deblurrer(self, model: str, coarse_levels: int = 0, blind: int = 0) -> Any:
        from dbgan.api import Deblurrer

        key = (model, coarse_levels, blind)
        with self._lock:
            if key not in self._deblurrers:
                self._deblurrers[key] = Deblurrer(self.models[model], coarse_levels=coarse_levels, blind=blind,
                                                  **self.settings)
            return self._deblurrers[key]

    def create(self, data: bytes, filename: str, model: Optional[str], coarse_levels: Union[int, str, None] = 0,
               blind: Union[int, str, None] = 0) -> Job:
        """Check an upload, store it, and queue its deblurring.

        Raises:
            ValueError: with an HTTP status attached as ``status`` (400, 413, 415).
        """
        from dbgan.imagefile import read_pages
        from dbgan.io import IMAGE_EXTENSIONS, ImageReadError

        model = model or next(iter(self.models))
        if model not in self.models:
            raise _http(400, f"unknown model {model!r}; choose one of: {', '.join(self.models)}")
        levels = _coarse_levels(coarse_levels)
        shake = _blind(blind)
        ext = Path(filename or "").suffix.lower()
        if ext not in IMAGE_EXTENSIONS:
            raise _http(415, f"{filename or 'the upload'}: not an image file this server reads; accepted: "
                             f"{', '.join(e.lstrip('.') for e in IMAGE_EXTENSIONS)}")
        if len(data) > self.max_upload_bytes:
            raise _http(413, _too_big(filename, len(data), self.max_upload_bytes))
        if not data:
            raise _http(400, f"{filename}: the upload is empty")
        job_id = uuid.uuid4().hex
        job = Job(id=job_id, name=Path(filename).name, ext=".jpg" if ext == ".jpeg" else ext, model=model,
                  folder=self.folder / job_id, coarse_levels=levels, blind=shake)
        job.folder.mkdir()
        src = job.folder / f"input{ext}"
        src.write_bytes(data)
        try:
            pages, info, meta = read_pages(src, max_pixels=self.max_pixels)
        except ImageReadError as exc:
            shutil.rmtree(job.folder, ignore_errors=True)
            reason = str(exc).replace(str(src), filename)
            status = 413 if "decompression-bomb" in reason else 400
            raise _http(status, reason.split(" raise the limit")[0].rstrip("; ")) from None
        job.pages = len(pages)
        with self._lock:
            self.jobs[job.id] = job
            self._evict()
        self._executor.submit(self._run, job, pages, info, meta)
        return job

    def _evict(self) -> None:
        while len(self.jobs) > self.keep_jobs:
            old_id = next(iter(self.jobs))
            old = self.jobs[old_id]
            if old.state in ("queued", "running"):
                break
            del self.jobs[old_id]
            shutil.rmtree(old.folder, ignore_errors=True)

    def _run(self, job: Job, pages: list, info: Any, meta: Any) -> None:
        from dbgan.imagefile import output_bit_depth, write_pages

        try:
            with job.lock:
                job.state = "running"
            deblur = self.deblurrer(job.model, job.coarse_levels, job.blind)

            def progress(done: int, total: int) -> None:
                with job.lock:
                    job.tiles_done, job.tiles_total = done, total

            outs = []
            for k, page in enumerate(pages):
                with job.lock:
                    job.page, job.tiles_done, job.tiles_total = k, 0, 0
                outs.append(deblur(page, progress=progress))
            write_pages(job.folder / f"result{job.ext}", outs, bit_depth=output_bit_depth(info.bit_depth, job.folder / f"r{job.ext}"),
                        meta=meta)
            write_pages(job.folder / "before.png", [pages[0]])
            write_pages(job.folder / "after.png", [outs[0]])
            with job.lock:
                job.state, job.page = "done", len(pages) - 1
            log.info("job %s (%s) done", job.id, job.name)
        except Exception as exc:  # noqa: BLE001 - reported to the page, logged here
            log.exception("job %s failed", job.id)
            with job.lock:
                job.state, job.error = "error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"

    def get(self, job_id: str) -> Optional[Job]:
        with self._lock:
            return self.jobs.get(job_id)

    def close(self) -> None:
        """Stop the worker and delete the working folder."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self.folder, ignore_errors=True)


#: the page's "blur width" choices: coarse_levels -> label (dbgan.infer.pyramid; the model card's figures)
BLUR_WIDTHS = {0: "normal", 1: "wide (25-50 px)", 2: "very wide (over 50 px)"}


def _coarse_levels(value: Union[int, str, None]) -> int:
    """The job's ``coarse_levels`` from the query (absent: 0); one of :data:`BLUR_WIDTHS`, else HTTP 400."""
    if value in (None, ""):
        return 0
    try:
        levels = int(value)
    except (TypeError, ValueError):
        levels = -1
    if levels not in BLUR_WIDTHS:
        raise _http(400, f"coarse_levels must be one of {', '.join(map(str, BLUR_WIDTHS))}, got {value!r}")
    return levels


#: the page's "camera shake" box: the largest shake estimated (dbgan.blind; the model card's figures)
SHAKE_PX = 31


def _blind(value: Union[int, str, None]) -> int:
    """The job's ``blind`` from the query (absent: 0): 0 or :data:`SHAKE_PX`, else HTTP 400."""
    if value in (None, "", "0", 0):
        return 0
    if str(value) != str(SHAKE_PX):
        raise _http(400, f"blind must be 0 or {SHAKE_PX} (camera shake up to {SHAKE_PX} px), got {value!r}")
    return SHAKE_PX


def _too_big(name: str, size: int, limit: int) -> str:
    return f"{name}: {size / 2**20:.1f} MiB is over this server's upload limit of {limit / 2**20:.0f} MiB (--max-upload-mb)"


def _http(status: int, message: str) -> ValueError:
    exc = ValueError(message)
    exc.status = status  # type: ignore[attr-defined]
    return exc


# --------------------------------------------------------------------------- web app


def _web_file(name: str) -> bytes:
    return (resources.files("dbgan") / "web" / name).read_bytes()


def build_app(service: DeblurService) -> Any:
    """The Starlette app for ``service``."""
    _require_extra()
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def index(request: Request) -> Response:
        return HTMLResponse(_web_file("index.html").decode())

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return error(404, "not found")
        return Response(_web_file(name), media_type=STATIC_FILES[name])

    async def models(request: Request) -> Response:
        return JSONResponse({
            "models": [{"id": k, "label": k} for k in service.models],
            "default": next(iter(service.models)),
            "max_upload_mb": service.max_upload_bytes / 2**20,
            "blur_widths": [{"coarse_levels": k, "label": v} for k, v in BLUR_WIDTHS.items()],
            "shake_px": SHAKE_PX,
        })

    async def create(request: Request) -> Response:
        filename = request.query_params.get("filename", "")
        # the body is read to its end even when it is too large (kept only up to the limit), so
        # that the client reads the 413 and its message instead of a connection reset
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size <= service.max_upload_bytes:
                chunks.append(chunk)
            elif size > service.max_upload_bytes + MAX_DRAIN_BYTES:
                break
        if size > service.max_upload_bytes:
            return error(413, _too_big(filename or "the upload", size, service.max_upload_bytes))
        try:
            job = await run_in_threadpool(service.create, b"".join(chunks), filename, request.query_params.get("model"),
                                          request.query_params.get("coarse_levels"), request.query_params.get("blind"))
        except ValueError as exc:
            return error(getattr(exc, "status", 400), str(exc))
        return JSONResponse(job.status(), status_code=201)

    def _job(request: Request) -> Optional[Job]:
        return service.get(request.path_params["job_id"])

    async def status(request: Request) -> Response:
        job = _job(request)
        return JSONResponse(job.status()) if job else error(404, "no such job (it may have been cleared)")

    async def file(request: Request) -> Response:
        job = _job(request)
        what = request.path_params["what"]
        if job is None:
            return error(404, "no such job (it may have been cleared)")
        if job.state != "done":
            return error(409, f"job is {job.state}")
        if what == "result":
            return FileResponse(job.folder / f"result{job.ext}", filename=job.download_name)
        if what in ("before.png", "after.png"):
            return FileResponse(job.folder / what, media_type="image/png")
        return error(404, "not found")

    routes = [
        Route("/", index),
        Route("/static/{name}", static),
        Route("/api/models", models),
        Route("/api/jobs", create, methods=["POST"]),
        Route("/api/jobs/{job_id}", status),
        Route("/api/jobs/{job_id}/{what}", file),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        # uvicorn re-raises SIGINT/SIGTERM once it has stopped, so code after uvicorn.run may
        # never run: the working folder is removed here, as the server shuts down
        service.close()

    return Starlette(routes=routes, lifespan=lifespan)


def serve(
    models: Optional[list[str]] = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    device: str = "auto",
    dtype: str = "fp32",
    tile: Optional[int] = None,
    max_upload_mb: float = 100.0,
    max_pixels: int = 60_000_000,
) -> None:
    """Run the web app until Ctrl-C (``dbgan serve``)."""
    _require_extra()
    import uvicorn

    service = DeblurService(model_choices(models), device=device, dtype=dtype, tile=tile,
                            max_upload_mb=max_upload_mb, max_pixels=max_pixels)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serving on %s: anyone who can reach this machine can use it", host)
    log.info("open http://%s:%d/ in a browser", host if ":" not in host else f"[{host}]", port)
    try:
        uvicorn.run(build_app(service), host=host, port=port, log_level="warning")
    finally:
        service.close()
