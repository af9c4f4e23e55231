"""The HTTP routes and the service they share (model, decoding pool, batcher, job store).

    POST   /v1/score                      one image as the body, or multipart fields `files`
    POST   /v1/jobs                       an asynchronous job (202 with its id)
    GET    /v1/jobs/{id}                  its status, progress, error, result files
    GET    /v1/jobs/{id}/files/{name}     one result file
    DELETE /v1/jobs/{id}                  cancel it
    GET    /healthz, /readyz, /metrics    liveness, readiness, Prometheus text
    POST   /predict/image(s)              opennsfw2's routes (compat.py)
    GET    /docs, /openapi.json           the OpenAPI page

Every error is JSON {"error": "..."} with its status code (the compatibility routes add "detail",
as opennsfw2 answers). Nothing a request sends can stop the service: bodies are counted as they
arrive (413 past the limit), images are decoded in worker processes (a crash or a hang costs that
image only), admission is bounded (503 with Retry-After), and every request has a deadline (504).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from jaxnsfw.options import Mode, ScoringOptions
from jaxnsfw.serve import compat
from jaxnsfw.serve.config import ServeConfig
from jaxnsfw.serve.metrics import Metrics

if TYPE_CHECKING:  # the heavy modules (JAX) are imported when the service starts
    from jaxnsfw.classifier import Classifier
    from jaxnsfw.serve.batcher import Batcher
    from jaxnsfw.serve.decoding import Decoder
    from jaxnsfw.serve.jobs.runner import JobRunner
    from jaxnsfw.serve.jobs.store import JobStore

RETRY_AFTER_S = 1
JOB_RETRY_AFTER_S = 30


class ApiError(Exception):
    """Answered as {"error": message} with `status` (and `headers`)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes


def verdict_of(score: float, low: float, high: float) -> str:
    """The bands of `jaxnsfw score --thresholds LOW HIGH`: below LOW sfw, above HIGH nsfw."""
    return "sfw" if score < low else "nsfw" if score > high else "unsure"


_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_file_name(name: str | None, fallback: str) -> str:
    """A client's file name reduced to a plain name that cannot leave its folder."""
    cleaned = _UNSAFE_NAME.sub("_", Path(name or "").name).lstrip(".")
    return cleaned[:120] or fallback


class Service:
    """What the routes share. Started by the app's lifespan: the model loaded and every batch shape
    compiled before uvicorn opens its socket, so the first request never waits on the compiler."""

    # Set by start(), before any request is let in.
    classifier: Classifier
    decoder: Decoder
    batcher: Batcher
    store: JobStore
    runner: JobRunner

    def __init__(self, config: ServeConfig):
        self.config = config
        self.metrics = Metrics()
        self.ready = False
        self.admitted = 0  # images accepted and not yet answered
        self.decoding = 0  # of those, images in the decoding pool (the batcher waits only for these)
        self.body_bytes = 0  # request bodies held in memory (BodyBudget)

    async def start(self) -> None:
        from jaxnsfw.bulk.command import use_one_cpu_device_per_core
        from jaxnsfw.serve.batcher import Batcher
        from jaxnsfw.serve.decoding import Decoder
        from jaxnsfw.serve.jobs.kinds import JobContext
        from jaxnsfw.serve.jobs.runner import JobRunner
        from jaxnsfw.serve.jobs.store import JobStore

        config = self.config
        if config.max_pixels is not None:  # explain jobs decode in this process: the same bomb limit
            from PIL import Image

            Image.MAX_IMAGE_PIXELS = config.max_pixels
        if config.cpu_devices_per_core:
            use_one_cpu_device_per_core()
        import jax

        from jaxnsfw.classifier import Classifier, bulk_batch_size

        max_batch = config.max_batch or bulk_batch_size()
        self.classifier = await asyncio.to_thread(Classifier, config.weights, batch_size=max_batch)
        await asyncio.to_thread(self.classifier.warm_up)
        self.decoder = await asyncio.to_thread(Decoder, config.decode_workers, config.max_pixels,
                                               config.decode_timeout_s)
        self.batcher = Batcher(self.classifier, max_batch, config.max_wait_ms / 1000,
                               self.metrics.observe_batch, lambda: self.decoding,
                               avoid_padding=jax.default_backend() == "cpu")
        self.batcher.start()
        self.store = JobStore(config.state_dir)
        self.store.recover()
        self.runner = JobRunner(self.store, JobContext(self.classifier, config.max_pixels))
        self.runner.start()
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if hasattr(self, "runner"):
            await asyncio.to_thread(self.runner.stop)
        if hasattr(self, "batcher"):
            await self.batcher.stop()
        if hasattr(self, "decoder"):
            self.decoder.close()
        if hasattr(self, "store"):
            self.store.close()

    # -- scoring -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def admitted_images(self, count: int):
        """Admission control: past `max_queue` images in the service, 503 with Retry-After (413 for a
        request that could never fit: retrying would not help)."""
        if count > self.config.max_queue:
            self.metrics.rejected.labels("too_many_images").inc()
            raise ApiError(413, f"{count} images in one request, more than the service queues at once "
                                f"({self.config.max_queue}, --max-queue); send them in smaller requests")
        if self.admitted + count > self.config.max_queue:
            self.metrics.rejected.labels("queue_full").inc()
            raise ApiError(503, f"the service is at capacity ({self.admitted} images queued, limit "
                                f"{self.config.max_queue}); retry after {RETRY_AFTER_S} s",
                           {"Retry-After": str(RETRY_AFTER_S)})
        self.admitted += count
        self.metrics.queue_depth.set(self.admitted)
        try:
            yield
        finally:
            self.admitted -= count
            self.metrics.queue_depth.set(self.admitted)

    async def _score_one(self, upload: Upload, options: ScoringOptions, low: float, high: float) -> dict:
        self.decoding += 1
        try:
            prepared = await self.decoder.decode(upload.name, upload.data, options)
        finally:
            self.decoding -= 1
        if prepared.image is None:
            self.metrics.images.labels("error").inc()
            return {"name": upload.name, "error": prepared.error}
        verdict = await self.batcher.verdict(prepared.image)
        self.metrics.images.labels("scored").inc()
        result: dict[str, object] = {"name": upload.name, "score": verdict.score,
                                     "verdict": verdict_of(verdict.score, low, high)}
        if options.mode is Mode.ROBUST:
            result["frame"], result["view"] = verdict.frame, verdict.rendering
        if prepared.warnings:
            result["warnings"] = list(prepared.warnings)
        return result

    async def score(self, uploads: list[Upload], options: ScoringOptions, low: float, high: float) -> list[dict]:
        """One result per upload, in order; within the request deadline or 504."""
        with self.admitted_images(len(uploads)):
            work = asyncio.gather(*(self._score_one(u, options, low, high) for u in uploads))
            try:
                return await asyncio.wait_for(work, self.config.request_timeout_s)
            except TimeoutError:
                raise ApiError(504, f"the request took longer than {self.config.request_timeout_s:g} s "
                                    f"and was given up") from None


# -- reading requests --------------------------------------------------------------------------


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The whole body, refused (413) as soon as it is known to be over `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the body is {declared} bytes, over the limit of {limit} (--max-body-bytes)")

    async def read() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"the body is over the limit of {limit} bytes (--max-body-bytes)")
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(read(), timeout_s)
    except TimeoutError:
        raise ApiError(408, f"the body did not arrive within {timeout_s:g} s") from None


async def read_form(request: Request, body: bytes, max_files: int):
    """The multipart (or urlencoded) form of a body already read and counted."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return await Request(request.scope, replay).form(max_files=max_files, max_fields=64)


def content_kind(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def is_multipart(request: Request) -> bool:
    return content_kind(request) == "multipart/form-data"


def is_form(request: Request) -> bool:
    return content_kind(request) in ("multipart/form-data", "application/x-www-form-urlencoded")


# -- the app -----------------------------------------------------------------------------------


class BodyBudget:
    """Bodies held in memory, bounded for the whole service (pure ASGI, before any route reads one).

    A declared Content-Length over `--max-body-bytes` is 413 at once, on every route (the
    opennsfw2 routes' JSON included). Each request holds its declared length (a body of unknown
    length: the largest allowed) from arrival until it is answered; past the service's budget of
    `max_inflight_bytes`, 503 with Retry-After, so that many large uploads at once cannot exhaust
    memory before the image queue (counted in images) ever sees them."""

    def __init__(self, app, service: "Service"):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        config, service = self.service.config, self.service
        headers = dict(scope.get("headers") or ())
        declared = headers.get(b"content-length", b"").decode("latin-1").strip()
        chunked = b"chunked" in headers.get(b"transfer-encoding", b"").lower()
        size = int(declared) if declared.isdigit() else (config.max_body_bytes if chunked else 0)
        if size > config.max_body_bytes:
            return await self._refuse(scope, send, 413, f"the body is {size} bytes, over the limit of "
                                                        f"{config.max_body_bytes} (--max-body-bytes)")
        if size and service.body_bytes + size > config.max_inflight_bytes:
            service.metrics.rejected.labels("bodies_full").inc()
            return await self._refuse(scope, send, 503, f"the service holds {service.body_bytes} bytes of "
                                                        f"request bodies (limit {config.max_inflight_bytes}); "
                                                        f"retry after {RETRY_AFTER_S} s",
                                      {"Retry-After": str(RETRY_AFTER_S)})
        service.body_bytes += size
        try:
            await self.app(scope, receive, send)
        finally:
            service.body_bytes -= size

    @staticmethod
    async def _refuse(scope, send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        body = {"error": message}
        if scope.get("path", "").startswith("/predict/"):
            body["detail"] = message
        response = JSONResponse(body, status_code=status, headers=headers)
        await response(scope, _no_body, send)


async def _no_body() -> dict:
    return {"type": "http.disconnect"}


class MetricsMiddleware:
    """Counts every answer by route template and status, and its latency (pure ASGI: no copying)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = {"code": 500}

        async def send_counted(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(name, str(status["code"])).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - started)


_BINARY = {"type": "string", "format": "binary"}
# The routes read their bodies themselves (counted against the limit as they arrive), so FastAPI
# cannot infer these: the OpenAPI page is told what they take.
SCORE_BODY = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": _BINARY},
    "multipart/form-data": {"schema": {"type": "object", "properties": {
        "files": {"type": "array", "items": _BINARY}}}}}}}
JOB_BODY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["kind"], "properties": {
        "kind": {"type": "string", "enum": ["explain", "atlas", "score"]},
        "options": {"type": "string", "description": "a JSON object: the kind's options"},
        "file": {**_BINARY, "description": "explain: the image"},
        "files": {"type": "array", "items": _BINARY, "description": "atlas: the images"},
        "embeddings": {**_BINARY, "description": "atlas: an embeddings file instead of images"},
        "folder": {"type": "string", "description": "score: a folder on the server under a --score-root"}}}}}}}


def error_response(request: Request, status: int, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """{"error": message}; on the opennsfw2 routes also "detail", which is where their clients look."""
    body = {"error": message}
    if request.url.path.startswith("/predict/"):
        body["detail"] = message
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(config: ServeConfig) -> FastAPI:
    service = Service(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="jaxnsfw", version="0.1.0", lifespan=lifespan,
                  description="Yahoo's open_nsfw classifier (JAX port): scores 0..1, dynamic batching, "
                              "asynchronous jobs.")
    app.state.service = service
    app.add_middleware(BodyBudget, service=service)
    app.add_middleware(MetricsMiddleware, metrics=service.metrics)  # outermost: counts the refusals too

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError):
        return error_response(request, err.status, err.message, err.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException):
        return error_response(request, err.status_code, str(err.detail), getattr(err, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in err.errors())
        # opennsfw2 answers a malformed request 400; its clients expect that.
        return error_response(request, 400 if request.url.path.startswith("/predict/") else 422, problems)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception):
        return error_response(request, 500, f"internal error: {type(err).__name__}: {err}")

    # -- scoring -----------------------------------------------------------------------------

    @app.post("/v1/score", summary="Score one image (the body) or many (multipart fields `files`)",
              openapi_extra=SCORE_BODY)
    async def score(request: Request,
                    mode: Literal["reference", "robust"] = Query("reference", description="reference: Yahoo's "
                                                                 "pipeline; robust: the maximum over what the "
                                                                 "file holds and what a viewer is shown"),
                    low: float = Query(0.2, ge=0, le=1, description="below: verdict sfw"),
                    high: float = Query(0.8, ge=0, le=1, description="above: verdict nsfw"),
                    name: str = Query("image", description="the name a single raw image is answered with")):
        if low > high:
            raise ApiError(422, f"low ({low}) must not be above high ({high})")
        body = await read_body(request, config.max_body_bytes, config.request_timeout_s)
        options = ScoringOptions(mode=Mode(mode), max_pixels=config.max_pixels)
        # Only multipart is a set of images: a raw image may come with any Content-Type (curl's
        # --data-binary says application/x-www-form-urlencoded).
        if is_multipart(request):
            form = await read_form(request, body, config.max_files)
            files = [f for f in form.getlist("files") if not isinstance(f, str)]
            if not files:
                raise ApiError(400, "a multipart request sends its images as fields named `files`")
            uploads = [Upload(f.filename or f"files[{i}]", await f.read()) for i, f in enumerate(files)]
            return {"results": await service.score(uploads, options, low, high)}
        if not body:
            raise ApiError(400, "empty body: send the image as the request body, or images as multipart `files`")
        result = (await service.score([Upload(name, body)], options, low, high))[0]
        if "error" in result:
            raise ApiError(422, result["error"])
        return {"results": [result]}

    # -- opennsfw2 compatibility -------------------------------------------------------------

    async def compat_scores(items: list[compat.CompatInput], options: compat.CompatOptions) -> list[dict]:
        try:
            compat.check_options(options)
            uploads = [Upload(f"inputs[{i}]", await compat.input_bytes(item, config)) for i, item in enumerate(items)]
        except compat.CompatError as err:
            raise ApiError(400, str(err)) from None
        results = await service.score(uploads, ScoringOptions(max_pixels=config.max_pixels), 0.2, 0.8)
        for result in results:
            if "error" in result:
                raise ApiError(400, f"{result['name']}: {result['error']}")
        return [compat.image_result(result["score"]) for result in results]

    def compat_answer(started: float, **result) -> dict:
        return {"success": True, **result, "processing_time_ms": (time.perf_counter() - started) * 1000,
                "model_version": "jaxnsfw-0.1.0"}

    @app.post("/predict/image", summary="opennsfw2-compatible: one image (base64, or URL where allowed)")
    async def predict_image(payload: compat.CompatImageRequest):
        started = time.perf_counter()
        return compat_answer(started, result=(await compat_scores([payload.input], payload.options))[0])

    @app.post("/predict/images", summary="opennsfw2-compatible: many images")
    async def predict_images(payload: compat.CompatImagesRequest):
        started = time.perf_counter()
        if len(payload.inputs) > config.max_files:
            raise ApiError(400, f"{len(payload.inputs)} inputs, over the limit of {config.max_files}")
        return compat_answer(started, results=await compat_scores(payload.inputs, payload.options))

    # -- jobs --------------------------------------------------------------------------------

    def job_view(job) -> dict:
        view: dict[str, object] = {"id": job.id, "kind": job.kind, "status": job.status,
                                   "progress": job.progress, "stage": job.stage, "created": job.created,
                                   "started": job.started, "finished": job.finished}
        if job.error:
            view["error"] = job.error
        if job.cancel_requested and job.status == "running":
            view["cancel_requested"] = True
        if job.status == "done":
            view["files"] = [{"name": name, "url": f"/v1/jobs/{job.id}/files/{name}"} for name in job.files]
        return view

    def find_job(job_id: str):
        job = service.store.get(job_id) if re.fullmatch(r"[0-9a-f]{32}", job_id) else None
        if job is None:
            raise ApiError(404, f"no job {job_id}")
        return job

    @app.post("/v1/jobs", status_code=202, summary="Submit a job: explain, atlas or score (multipart form)",
              openapi_extra=JOB_BODY)
    async def submit_job(request: Request):
        from jaxnsfw.serve.jobs.kinds import JobInputError, check_options

        if not is_form(request):
            raise ApiError(415, "submit a job as a form (multipart/form-data): kind, options (JSON), and "
                                "file / files / embeddings / folder")
        pending = service.store.counts()["pending"]
        if pending >= config.max_pending_jobs:
            service.metrics.rejected.labels("jobs_full").inc()
            raise ApiError(503, f"{pending} jobs are waiting to run (limit {config.max_pending_jobs}, "
                                f"--max-pending-jobs); retry later", {"Retry-After": str(JOB_RETRY_AFTER_S)})
        body = await read_body(request, config.max_body_bytes, config.request_timeout_s)
        form = await read_form(request, body, config.max_files)
        kind = str(form.get("kind") or "")
        try:
            options = json.loads(str(form.get("options") or "{}"))
        except json.JSONDecodeError as err:
            raise ApiError(400, f"options is not JSON: {err}") from None
        if not isinstance(options, dict):
            raise ApiError(400, "options must be a JSON object")
        images = [f for field in ("file", "files") for f in form.getlist(field) if not isinstance(f, str)]
        embeddings = [f for f in form.getlist("embeddings") if not isinstance(f, str)]
        folder = form.get("folder")
        try:
            resolved = check_options(kind, options, len(images), bool(embeddings),
                                     folder if isinstance(folder, str) else None, config.score_roots)
        except JobInputError as err:
            raise ApiError(400, str(err)) from None
        store = service.store
        job_id, incoming = store.new_incoming()
        names: list[str] = []
        if kind == "explain":
            names.append(safe_file_name(images[0].filename, "image"))
            (incoming / "input" / names[0]).write_bytes(await images[0].read())
        elif kind == "atlas" and embeddings:
            names.append(safe_file_name(embeddings[0].filename, "embeddings"))
            (incoming / "input" / names[0]).write_bytes(await embeddings[0].read())
            options["_embeddings"] = True
        elif kind == "atlas":
            for i, image in enumerate(images):
                names.append(f"{i:04d}-{safe_file_name(image.filename, 'image')}")
                (incoming / "input" / names[-1]).write_bytes(await image.read())
        else:
            names.append(str(resolved))
        job = await asyncio.to_thread(store.accept, job_id, incoming, kind, options, names)
        service.runner.wake()
        return JSONResponse(job_view(job), status_code=202, headers={"Location": f"/v1/jobs/{job.id}"})

    @app.get("/v1/jobs/{job_id}", summary="A job's status, progress, error and result files")
    async def get_job(job_id: str):
        return job_view(find_job(job_id))

    @app.delete("/v1/jobs/{job_id}", summary="Cancel a job (pending: at once; running: at its next step)")
    async def cancel_job(job_id: str):
        find_job(job_id)
        return job_view(service.store.cancel(job_id))

    @app.get("/v1/jobs/{job_id}/files/{name}", summary="One result file of a finished job")
    async def job_file(job_id: str, name: str):
        job = find_job(job_id)
        if job.status != "done" or name not in job.files:
            raise ApiError(404, f"job {job_id} has no result file {name!r}" +
                           ("" if job.status == "done" else f" (it is {job.status})"))
        return FileResponse(service.store.output_dir(job.id) / name, filename=name)

    # -- operations --------------------------------------------------------------------------

    @app.get("/healthz", summary="Liveness: the process answers")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness: model loaded, batch shapes compiled, workers up")
    async def readyz():
        if not service.ready:
            return JSONResponse({"status": "not ready"}, status_code=503)
        return {"status": "ready", "batch_sizes": list(service.classifier.batch_sizes),
                "decode_workers": config.decode_workers, "queued": service.admitted,
                "max_queue": config.max_queue}

    @app.get("/metrics", summary="Prometheus text: requests, latencies, batch sizes, queue depth, jobs")
    async def metrics():
        if hasattr(service, "store"):
            for status, count in service.store.counts().items():
                service.metrics.jobs.labels(status).set(count)
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    return app
