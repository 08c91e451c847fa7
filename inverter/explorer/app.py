"""The explorer's web app (FastAPI): the page, the graphs, photos, runs, their progress as server-sent
events, and Netron on the annotated model. Every refusal is a JSON body {"detail": ...} with a 4xx
status; an internal error is a 500 with one line, never a traceback page."""
from __future__ import annotations

import asyncio
import importlib.util
import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException

from converters.errors import NodeError, UserError, first_line
from converters.network.safe_names import printable
from inverter.explorer.page import model_view, presets, render
from inverter.explorer.runs import MAX_UPLOAD, Explorer, ExplorerError

log = logging.getLogger(__name__)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


def _view(job) -> dict:
    return {"key": job.key, "state": job.state, "model": job.model.id, "node": job.node, "result": job.result,
            "error": job.error, "events": f"/api/runs/{job.key}/events"}


class Netron:
    """Netron's own server on the annotated ONNX (`graph --format onnx`), one per model, started on demand."""

    def __init__(self, explorer: Explorer, host: str):
        self.explorer, self.host, self.started = explorer, host, {}

    def url(self, model_id: str) -> str:
        model = self.explorer.model(model_id)
        if importlib.util.find_spec("netron") is None:
            raise ExplorerError("Netron is not installed here: `pip install netron`, then start the explorer again",
                                501)
        if model_id not in self.started:
            import netron

            from converters.network.graph_export import export_graph

            path = self.explorer.cache / f"{model.digest[:24]}.annotated.onnx"
            if not path.is_file():
                path.write_bytes(export_graph(model.network, "onnx"))
            self.started[model_id] = netron.start(str(path), (self.host, 0), browse=False)
        host, port = self.started[model_id]
        return f"http://{host}:{port}/"

    def stop(self) -> None:
        if self.started:
            import netron

            for address in self.started.values():
                netron.stop(address)
            self.started.clear()


def create_app(explorer: Explorer, host: str = "127.0.0.1") -> FastAPI:
    """The app over one Explorer; graphs are laid out now, so a missing Graphviz stops the start."""
    app = FastAPI(title="invert-onnx explorer", docs_url=None, redoc_url=None, openapi_url=None)
    views = {m.id: model_view(m.id, m.network, m.path.name) for m in explorer.models.values()}
    netron_server = Netron(explorer, host)
    app.state.explorer, app.state.netron = explorer, netron_server

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError):
        status = getattr(exc, "status", 404 if isinstance(exc, NodeError) else 400)
        return _error(status, printable(first_line(exc)))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        where = "; ".join(f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}" for e in exc.errors()[:3])
        return _error(422, f"bad request: {where}")

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        log.exception("internal error on %s", request.url.path)
        return _error(500, f"internal error: {type(exc).__name__}: {printable(first_line(exc))}")

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return render({"mode": "server", "models": list(views.values()), "photos": explorer.photo_list(),
                       "presets": presets(), "max_upload": MAX_UPLOAD,
                       "netron": importlib.util.find_spec("netron") is not None})

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/api/models")
    def models() -> list:
        return [{"id": m.id, "name": m.path.name, "digest": m.digest, "nodes": len(views[m.id]["nodes"])}
                for m in explorer.models.values()]

    @app.get("/api/models/{model_id}/graph")
    def graph(model_id: str) -> dict:
        explorer.model(model_id)
        return views[model_id]

    @app.get("/api/models/{model_id}/resolve")
    def resolve(model_id: str, name: str) -> dict:
        info = explorer.model(model_id).network.resolve(name)
        ids = {n["name"]: n["id"] for n in views[model_id]["nodes"]}
        if info.name not in ids:
            raise ExplorerError(f"{name!r} is {info.name!r}, a shape computation the graph does not draw", 404)
        return {"name": info.name, "id": ids[info.name], "op": info.op_type}

    @app.get("/api/models/{model_id}/netron")
    def netron(model_id: str) -> dict:
        return {"url": netron_server.url(model_id)}

    @app.get("/api/photos")
    def photos() -> list:
        return explorer.photo_list()

    @app.get("/api/photos/{photo_id}.png")
    def thumbnail(photo_id: str) -> Response:
        return Response(explorer.thumbnail(photo_id), media_type="image/png")

    @app.post("/api/photos")
    async def upload(request: Request, name: str = "upload") -> dict:
        """The photo's bytes as the request body (any format Pillow reads), at most MAX_UPLOAD bytes."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_UPLOAD:
            raise ExplorerError(f"the photo is {int(declared) / 2**20:.1f} MB; the limit is {MAX_UPLOAD // 2**20} MB",
                                413)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_UPLOAD:
                raise ExplorerError(f"the photo is over the {MAX_UPLOAD // 2**20} MB limit", 413)
        photo = await asyncio.to_thread(explorer.add_upload, bytes(body), name)
        return {"id": photo.id, "name": photo.name}

    @app.post("/api/runs")
    async def start(request: Request) -> dict:
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            raise ExplorerError("the body must be JSON: {\"model\", \"node\", \"photo\", \"preset\", \"iterations\", "
                                "\"lambda_tv\", \"lambda_alpha\", \"seed\"}") from None
        if not isinstance(body, dict):
            raise ExplorerError("the body must be a JSON object with model and node")
        return _view(explorer.submit(body))

    @app.get("/api/runs/{key}")
    def run(key: str) -> dict:
        return _view(explorer.job(key))

    @app.get("/api/runs/{key}/events")
    def events(key: str) -> StreamingResponse:
        job = explorer.job(key)

        async def stream():
            seen = 0
            while True:
                while seen < len(job.events):
                    event = job.events[seen]
                    seen += 1
                    yield f"event: {event['event']}\ndata: {json.dumps(event)}\n\n"
                    if event["event"] in ("done", "error"):
                        return
                if explorer.closing.is_set():
                    return
                await asyncio.sleep(0.1)

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/api/runs/{key}/{name}")
    def run_file(key: str, name: str) -> FileResponse:
        return FileResponse(explorer.run_file(key, name), media_type="image/png")

    return app
