"""Run a study: its batches on Ray actors (or in this process), every finished run a row in the store.

A `Worker` loads each model once and keeps it across its runs; `run_chunk` is the one unit of work
(one `invert` call over a batch of runs with per-element settings). On Ray, each worker is an actor
with `threads` torch threads; locally the workers x threads fill the cores once. A killed worker is
restarted and its batch retried up to `max_tries` times; after that its runs get "failed" rows and
the study goes on. Ctrl-C keeps every finished row; a rerun skips them (Store.done).
"""
from __future__ import annotations

import collections
import io
import logging
import math
import os
import socket
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from converters.errors import UserError, first_line
from inverter.config import InversionConfig
from inverter.studies.spec import RunItem, chunks
from inverter.studies.store import Store, library_versions

log = logging.getLogger(__name__)
OBJECT_STORE_BYTES = 256 * 2**20  # results are a few PNGs: Ray's default (30% of memory) is far too much


@dataclass
class Options:
    """How to run: workers (0: in this process, no Ray), torch threads per worker, Ray cluster, GPUs."""

    workers: int | None = None  # default: the cores (or GPUs) / what one worker takes
    threads: int = 1
    address: str | None = None  # None: a local Ray started here; "auto" or "ray://host:10001": a cluster
    gpus_per_run: float = 0.0
    max_tries: int = 3
    speedups: bool = True
    progress: bool = True
    depth: int = 2  # batches queued per worker, so a worker never waits for the driver


def local_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _rel_flat(result, node: str, b: int) -> float | None:
    """The run's feature error relative to a flat image (issue 19: 1 = no better than flat)."""
    values = result.flat_error.get(node)
    return float(values[b]) if values and len(values) > b else None


def _png(rgb01: torch.Tensor) -> bytes:
    from inverter.io.images import to_pil

    buffer = io.BytesIO()
    to_pil(rgb01).save(buffer, format="PNG")
    return buffer.getvalue()


class Worker:
    """Runs batches; keeps every model it loaded (keyed by content hash) for its later runs."""

    def __init__(self, threads: int = 1, device: str = "cpu", speedups: bool = True):
        if threads:
            torch.set_num_threads(threads)
        self.device, self.speedups, self.networks = device, speedups, {}
        self.versions = library_versions()
        name = torch.cuda.get_device_name(0) if device.startswith("cuda") else f"{torch.get_num_threads()} threads"
        self.where = f"{device} ({name})"
        try:
            import ray

            node = ray.get_runtime_context().get_node_id()[:8] if ray.is_initialized() else "local"
        except ImportError:
            node = "local"
        self.name = f"{socket.gethostname()}:{node}:pid{os.getpid()}"

    def info(self) -> dict:
        return {"worker": self.name, "pid": os.getpid(), "device": self.where, "threads": torch.get_num_threads()}

    def network(self, item: RunItem):
        key = (item.model_sha256, item.size)
        if key not in self.networks:
            from converters import load

            on = self.speedups
            side = (item.size, item.size) if item.size else None
            self.networks[key] = load(item.model, size=side, channels_last=on, fold_batchnorm=on, inplace_relu=on)
        return self.networks[key]

    def run(self, chunk: list[RunItem]) -> list[dict]:
        try:
            return self._run(chunk)
        except (UserError, RuntimeError, ValueError, OSError) as exc:  # one bad batch is rows, not a dead study
            log.warning("batch of %d run(s) at %s failed: %s", len(chunk), chunk[0].node, first_line(exc))
            return [self._row(it, "failed", error=f"{type(exc).__name__}: {first_line(exc)}") for it in chunk]

    def _run(self, chunk: list[RunItem]) -> list[dict]:
        from inverter.io.images import load_image
        from inverter.methods.inversion import invert

        network = self.network(chunk[0])
        size = network.input_spec.size
        images = {p: load_image(p, size) for p in dict.fromkeys(it.image for it in chunk)}
        pixels = torch.cat([images[it.image] for it in chunk])
        configs = [InversionConfig(**{**it.config, "device": self.device}) for it in chunk]
        result = invert(network, pixels, chunk[0].node, configs=configs, progress=False)
        if result.stopped == "diverged" and len(chunk) > 1:  # which ones? the loop stops the whole batch
            return [row for it in chunk for row in self._run([it])]
        rows = []
        for b, it in enumerate(chunk):
            err = result.feature_error[it.node][b]
            status = {"diverged": "diverged", "interrupted": "interrupted"}.get(result.stopped, "ok")
            if status == "ok" and not math.isfinite(err):
                status = "diverged"
            rows.append(self._row(it, status, error=result.extra.get("cause") or None, resolved=result.resolved[0],
                                  feature_error=err, rel_flat=_rel_flat(result, it.node, b), psnr=result.psnr[b],
                                  ssim=result.ssim[b], seconds=result.seconds / len(chunk), batch=len(chunk),
                                  iterations=result.iterations, stopped=result.stopped,
                                  png=_png(result.image[b])))
        return rows

    def _row(self, item: RunItem, status: str, error: str | None = None, resolved: str | None = None,
             **values) -> dict:
        return {"key": item.key, "status": status, "error": error, "model_path": item.model,
                "model_sha256": item.model_sha256, "node": item.node, "resolved_node": resolved,
                "image_path": item.image, "image_sha256": item.image_sha256, "size": item.size,
                "preset": item.preset, "config": {**item.config, "device": self.device},
                "device": self.where, "worker": self.name, "versions": self.versions, **values}


def _record(store: Store, rows: list[dict], study: str) -> None:
    for row in rows:
        png = row.pop("png", None)
        if png is not None:
            path = store.images_dir / f"{row['key']}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(png)
            tmp.replace(path)
            row["reconstruction_path"] = str(path)
        store.write({**row, "study": study})


def run_study(items: list[RunItem], store: Store, options: Options, batch: int = 8, study: str = "study",
              on_event=None) -> dict:
    """Run every item whose row is not in the store yet; returns counts, seconds and runs per hour."""
    todo = [it for it in items if it.key not in store.done([it.key for it in items])]
    summary = {"runs": len(items), "skipped": len(items) - len(todo), "store": str(store.path)}
    start = time.perf_counter()
    bar = tqdm(total=len(todo), desc=study, unit="run", disable=not options.progress, smoothing=0.1)
    counts = collections.Counter()

    def record(rows: list[dict]) -> None:
        _record(store, rows, study)
        counts.update(r["status"] for r in rows)
        bar.update(len(rows))
        for row in rows:
            if on_event:
                on_event("row", row)
        if any(r["status"] == "interrupted" for r in rows):
            raise KeyboardInterrupt

    try:
        if todo and options.workers == 0:
            worker = Worker(options.threads, "cuda" if options.gpus_per_run else "cpu", options.speedups)
            if on_event:
                on_event("workers", [worker.info()])
            for chunk in chunks(todo, batch, 1):
                record(worker.run(chunk))
        elif todo:
            _run_on_ray(todo, batch, options, record, on_event)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    done = sum(counts.values())
    return {**summary, "done": done, **{k: counts[k] for k in ("ok", "failed", "diverged", "interrupted")},
            "seconds": round(seconds, 2), "runs_per_hour": round(done / seconds * 3600, 1) if done else 0.0}


def start_ray(options: Options) -> tuple[bool, int]:
    """Connect to (or start) Ray; returns (started here, number of workers)."""
    import ray

    started = False
    if not ray.is_initialized():
        if options.address:
            ray.init(address=options.address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            cores = local_cores()
            ray.init(num_cpus=cores, num_gpus=torch.cuda.device_count() if options.gpus_per_run else 0,
                     object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False,
                     logging_level=logging.WARNING, log_to_driver=False)
        started = True
    resources = ray.cluster_resources()
    if options.gpus_per_run:
        fit = int(resources.get("GPU", 0) // options.gpus_per_run)
        if fit < 1:
            raise UserError(f"--gpus-per-run {options.gpus_per_run:g}: the Ray cluster has "
                            f"{resources.get('GPU', 0):g} GPU(s); lower it or add GPU nodes")
    else:
        fit = int(resources.get("CPU", 1) // max(options.threads, 1))
    return started, max(1, min(options.workers or fit, fit))


def _run_on_ray(todo: list[RunItem], batch: int, options: Options, record, on_event) -> None:
    import ray
    from ray.exceptions import RayActorError, RayError, RayTaskError

    started, n = start_ray(options)
    retries = max(options.max_tries - 1, 0)
    actor_cls = ray.remote(num_cpus=options.threads, num_gpus=options.gpus_per_run, max_restarts=retries,
                           max_task_retries=retries)(Worker)
    device = "cuda" if options.gpus_per_run else "cpu"

    def new_actor():
        return actor_cls.remote(options.threads, device, options.speedups)

    inflight: dict = {}
    try:
        actors = [new_actor() for _ in range(n)]
        infos = ray.get([a.info.remote() for a in actors])
        log.info("%d Ray worker(s): %s", n, ", ".join(i["worker"] for i in infos))
        if on_event:
            on_event("workers", infos)
        pending = collections.deque(chunks(todo, batch, n))
        dead = [False] * n

        def submit(i: int) -> bool:
            if dead[i]:  # a worker that died for good gets a fresh successor once its queue has drained
                if any(c[1] == i for c in inflight.values()):
                    return False
                actors[i], dead[i] = new_actor(), False
            if not pending or sum(c[1] == i for c in inflight.values()) >= options.depth:
                return False
            chunk = pending.popleft()
            inflight[actors[i].run.remote(chunk)] = (chunk, i)
            return True

        for _ in range(options.depth):  # round-robin: every worker gets its first batch before any its second
            for i in range(n):
                submit(i)
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1)
            chunk, i = inflight.pop(ready[0])
            try:
                rows = ray.get(ready[0])
            except RayActorError as exc:  # the worker died max_tries times running this batch (or queued behind it)
                rows = [_failed(it, f"worker died (tried {options.max_tries} time(s)): {first_line(exc)}")
                        for it in chunk]
                dead[i] = True
            except (RayTaskError, RayError) as exc:  # e.g. Ray's memory monitor killed the task
                rows = [_failed(it, f"{type(exc).__name__}: {first_line(exc)}") for it in chunk]
            record(rows)
            while submit(i):
                pass
    finally:
        for ref in inflight:
            ray.cancel(ref, force=False)
        if started:
            ray.shutdown()


def _failed(item: RunItem, error: str) -> dict:
    return {"key": item.key, "status": "failed", "error": error, "model_path": item.model,
            "model_sha256": item.model_sha256, "node": item.node, "image_path": item.image,
            "image_sha256": item.image_sha256, "size": item.size, "preset": item.preset, "config": item.config,
            "versions": library_versions()}
