"""The explorer's work: the models fixed at start, the photos, and the inversions.

One worker thread runs the inversions from a bounded queue, one run per node at a time; each run
reports its progress as events (loss and current image) that the server streams; a finished run
is cached on disk, keyed by the model file's hash, the node, the photo's hash and the settings, so
asking again is instant.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import queue
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from converters.errors import UserError, first_line
from converters.input_spec import destandardise
from converters.network.network import Network
from inverter.config import ConfigError
from inverter.io.images import demo_image, load_image, to_pil

log = logging.getLogger(__name__)

MAX_UPLOAD = 8 * 2**20  # bytes an uploaded photo may have
MAX_UPLOADS = 100  # photos kept from uploads, per server
MAX_ITERATIONS = 5000
FRAMES = 25  # current images streamed per run
KEEP_FINISHED = 32  # finished runs kept in memory with their frames (the disk cache keeps the rest)
KEY = re.compile(r"[0-9a-f]{24}")
SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "camera.png", "motorcycle_left.png")


class ExplorerError(UserError):
    """A request the explorer refuses; `status` is its HTTP status."""

    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            h.update(block)
    return h.hexdigest()


def png_bytes(rgb01: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    to_pil(rgb01).save(buf, format="PNG")
    return buf.getvalue()


def data_url(rgb01: torch.Tensor) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(rgb01)).decode()


@dataclass
class Model:
    id: str
    path: Path
    network: Network
    digest: str


@dataclass
class Photo:
    id: str
    name: str
    path: Path
    digest: str


def builtin_photos() -> list[Photo]:
    """Grace Hopper (matplotlib) and a few of scikit-image's photos, when it is installed: all offline."""
    paths = [demo_image()]
    try:
        import skimage

        folder = Path(skimage.__file__).parent / "data"
        paths += [folder / name for name in SKIMAGE_PHOTOS if (folder / name).is_file()]
    except ImportError:
        pass
    return [Photo(f"b{i}", p.stem, p, file_digest(p)) for i, p in enumerate(paths)]


@dataclass
class Job:
    key: str
    model: Model
    node: str
    photo: Photo
    settings: dict
    config: object
    state: str = "queued"  # queued, running, done, failed, interrupted
    events: list[dict] = field(default_factory=list)
    result: dict | None = None
    error: str | None = None

    def emit(self, kind: str, **data) -> None:
        self.events.append({"event": kind, **data})  # list.append is atomic; readers only index

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


def _number(name: str, value, kind: type):
    """A setting from a request: a JSON number or its text; a whole number where `kind` is int."""
    what = "a whole number" if kind is int else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{name} must be {what}, not {value!r}")
    try:
        number = float(value)
        if kind is int and number != int(number):
            raise ValueError
        return kind(number)
    except (ValueError, OverflowError):
        raise ConfigError(f"{name} must be {what}, not {value!r}") from None


def _first(value):
    """The first image's number from a per-node dict and/or per-image list (or a number)."""
    while isinstance(value, (dict, list, tuple)):
        value = next(iter(value.values())) if isinstance(value, dict) else value[0]
    return float(value)


def run_metrics(network: Network, node: str, result) -> dict:
    """What the page shows of a finished inversion (the flat-relative error is the result's own)."""
    flat = _first(result.flat_error)
    total = result.history.get("total")
    loss = [] if total is None else [float(v) for v in total.reshape(len(total), -1)[:, 0]]
    step = max(1, len(loss) // 500)
    return {"feature_error": _first(result.feature_error), "rel_flat": flat, "ssim": result.ssim[0],
            "psnr": result.psnr[0], "iterations": result.iterations, "seconds": round(result.seconds, 3),
            "stopped": result.stopped, "loss": loss[::step], "loss_every": step}


class Explorer:
    """The models, photos and runs one server holds."""

    def __init__(self, models: list[tuple[Path, Network]], cache: Path, max_queue: int = 8, device: str = "cpu"):
        self.device = device
        self.models = {f"m{i}": Model(f"m{i}", Path(p), net, file_digest(Path(p))) for i, (p, net) in enumerate(models)}
        self.cache = Path(cache)
        self.cache.mkdir(parents=True, exist_ok=True)
        self.photos = {p.id: p for p in builtin_photos()}
        self.uploads = Path(tempfile.mkdtemp(prefix="invert-onnx-uploads-"))
        self.jobs: dict[str, Job] = {}
        self.queue: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self.worker = threading.Thread(target=self._work, name="explorer-worker", daemon=True)
        self.worker.start()

    # ---- lookups -------------------------------------------------------------------------------
    def model(self, model_id: str) -> Model:
        if model_id not in self.models:
            raise ExplorerError(f"no model {model_id!r}; this server has {', '.join(self.models)}", 404)
        return self.models[model_id]

    def photo(self, photo_id: str) -> Photo:
        if photo_id not in self.photos:
            raise ExplorerError(f"no photo {photo_id!r}; pick a built-in one or upload one", 404)
        return self.photos[photo_id]

    def job(self, key: str) -> Job:
        if not KEY.fullmatch(key or ""):
            raise ExplorerError("a run key is 24 hex digits", 404)
        with self.lock:
            job = self.jobs.get(key)
        if job is None:
            job = self._cached(key)
        if job is None:
            raise ExplorerError(f"no run {key}", 404)
        return job

    def run_file(self, key: str, name: str) -> Path:
        job = self.job(key)
        path = self.cache / key / name
        if job.state != "done" or name not in ("reconstruction.png", "original.png") or not path.is_file():
            raise ExplorerError(f"run {key} has no {name} (yet)", 404)
        return path

    # ---- photos --------------------------------------------------------------------------------
    def add_upload(self, data: bytes, name: str = "upload") -> Photo:
        """An uploaded photo, checked by the CLI's own loader before it is kept."""
        if len(data) > MAX_UPLOAD:
            raise ExplorerError(f"the photo is {len(data) / 2**20:.1f} MB; the limit is {MAX_UPLOAD // 2**20} MB", 413)
        if not data:
            raise ExplorerError("the upload is empty; send the image file's bytes")
        key = digest(data)
        photo_id = "u" + key[:16]
        if photo_id in self.photos:
            return self.photos[photo_id]
        if sum(p.id.startswith("u") for p in self.photos.values()) >= MAX_UPLOADS:
            raise ExplorerError(f"this server keeps at most {MAX_UPLOADS} uploaded photos; restart it", 429)
        path = self.uploads / photo_id
        path.write_bytes(data)
        try:
            load_image(path, (64, 64))  # the CLI's loader: format, size and aspect-ratio limits
        except UserError as exc:
            path.unlink()
            raise ExplorerError(str(exc).replace(str(path), "the upload")) from None
        stem = re.sub(r"[^\w.-]", "_", Path(name).stem)[:40] or "upload"
        photo = Photo(photo_id, stem, path, key)
        with self.lock:
            self.photos[photo_id] = photo
        return photo

    def photo_list(self) -> list[dict]:
        with self.lock:
            return [{"id": p.id, "name": p.name} for p in self.photos.values()]

    def thumbnail(self, photo_id: str, side: int = 160) -> bytes:
        return png_bytes(load_image(self.photo(photo_id).path, (side, side)))

    # ---- runs ----------------------------------------------------------------------------------
    def submit(self, request: dict) -> Job:
        """A run for {model, node, photo, preset, iterations, lambda_tv, lambda_alpha, seed}: the cached
        one, the same run already under way, or a new one in the queue."""
        from inverter.presets import preset

        model = self.model(str(request.get("model", "")))
        node = model.network.resolve(str(request.get("node", ""))).name
        photo = self.photo(str(request.get("photo", "b0")))
        base = preset(str(request.get("preset") or "default"))[0]
        settings = {"preset": str(request.get("preset") or "default")}
        typed = {name: getattr(base, name) if request.get(name) in (None, "") else _number(name, request[name], kind)
                 for name, kind in (("iterations", int), ("lambda_tv", float), ("lambda_alpha", float), ("seed", int))}
        if not 1 <= typed["iterations"] <= MAX_ITERATIONS:
            raise ConfigError(f"iterations must be 1..{MAX_ITERATIONS}")
        config = base.replace(**typed, device=self.device)  # replace() validates: finite, in range
        settings.update(typed)
        key = digest(json.dumps([model.digest, node, photo.digest, settings], sort_keys=True).encode())[:24]
        with self.lock:
            job = self.jobs.get(key)
            if job is not None and (job.active or job.state == "done"):
                return job
            cached = self._cached(key)
            if cached is not None:
                self.jobs[key] = cached
                return cached
            busy = [j for j in self.jobs.values() if j.active and j.model is model and j.node == node]
            if busy:
                raise ExplorerError(f"a run at this node is already under way (run {busy[0].key}); wait for it", 409)
            job = Job(key, model, node, photo, settings, config)
            try:
                self.queue.put_nowait(job)
            except queue.Full:
                raise ExplorerError(f"{self.queue.maxsize} runs are waiting already; try again when one is done",
                                    429) from None
            self.jobs[key] = job
            job.emit("state", state="queued")
        return job

    def _cached(self, key: str) -> Job | None:
        folder = self.cache / key
        try:
            stored = json.loads((folder / "result.json").read_text())
        except (OSError, ValueError):
            return None
        model = next((m for m in self.models.values() if m.digest == stored.get("model_digest")), None)
        if model is None or not (folder / "reconstruction.png").is_file():
            return None
        photo = next((p for p in self.photos.values() if p.digest == stored.get("photo_digest")),
                     Photo("", stored.get("photo", ""), Path(), stored.get("photo_digest", "")))
        job = Job(key, model, stored["node"], photo, stored["settings"], None, state="done", result=stored["view"])
        job.emit("done", result=job.result)
        return job

    def _work(self) -> None:
        while not self.closing.is_set():
            job = self.queue.get()
            if job is None:
                return
            try:
                self._run(job)
            except Exception as exc:  # never let the worker die: the run fails, the server goes on
                log.exception("run %s failed", job.key)
                job.error = f"internal error: {type(exc).__name__}: {first_line(exc)}"
                job.state = "failed"
                job.emit("error", message=job.error)
            with self.lock:  # memory stays bounded: old finished runs are read back from the cache
                finished = [k for k, j in self.jobs.items() if not j.active]
                for key in finished[:-KEEP_FINISHED]:
                    del self.jobs[key]

    def _run(self, job: Job) -> None:
        from inverter.methods.inversion import invert

        job.state = "running"
        job.emit("state", state="running")
        network = job.model.network
        every = max(1, job.config.iterations // FRAMES)

        def observe(iteration: int, total: torch.Tensor, images: torch.Tensor) -> None:
            if self.closing.is_set():
                raise KeyboardInterrupt  # the loop keeps its best image and returns at once
            frame = {}
            if iteration == 1 or iteration % every == 0:
                frame["image"] = data_url(destandardise(images[:1].float().cpu()).clamp(0, 1))
            job.emit("progress", iteration=iteration, loss=float(total.float().mean()), **frame)

        try:
            original = load_image(job.photo.path, network.input_spec.size)
            result = invert(network, original, [job.node], job.config, progress=False, observe=observe)
        except UserError as exc:
            job.error, job.state = first_line(exc), "failed"
            job.emit("error", message=job.error)
            return
        if result.stopped == "interrupted":
            job.state, job.error = "interrupted", "the server is shutting down"
            job.emit("error", message=job.error)
            return
        view = {"key": job.key, "model": job.model.id, "model_name": job.model.path.name, "node": job.node,
                "photo": job.photo.name, "settings": job.settings, **run_metrics(network, job.node, result)}
        self._store(job, view, result)
        job.result, job.state = view, "done"
        job.emit("done", result=view)

    def _store(self, job: Job, view: dict, result) -> None:
        """The run's folder, written whole under a temporary name and renamed (never half a run)."""
        tmp = Path(tempfile.mkdtemp(dir=self.cache, prefix=f".{job.key}."))
        try:
            to_pil(result.image[:1]).save(tmp / "reconstruction.png")
            to_pil(result.original[:1]).save(tmp / "original.png")
            (tmp / "result.json").write_text(json.dumps(
                {"model_digest": job.model.digest, "node": job.node, "photo": job.photo.name,
                 "photo_digest": job.photo.digest, "settings": job.settings, "view": view,
                 "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=1))
            final = self.cache / job.key
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the run under way (its loop returns at the next iteration), drop the queue, end the worker."""
        self.closing.set()
        while True:
            try:
                job = self.queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.state, job.error = "interrupted", "the server is shutting down"
                job.emit("error", message=job.error)
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass
        self.worker.join(timeout)
        shutil.rmtree(self.uploads, ignore_errors=True)
