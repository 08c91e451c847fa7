"""The explorer's server (issue 23) through FastAPI's TestClient: a run streams its progress and its
numbers match the images it wrote; finished runs come back from the disk cache; every bad request is
a clear 4xx JSON answer; one run per node, a bounded queue, a clean stop."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
if not shutil.which("dot"):
    if os.environ.get("CI") == "true":  # scripts/setup.sh installs Graphviz on CI
        pytest.fail("the explorer needs Graphviz's dot (apt-get install graphviz)", pytrace=False)
    pytest.skip("the explorer lays graphs out with Graphviz's dot (apt-get install graphviz)", allow_module_level=True)

from fastapi.testclient import TestClient  # noqa: E402

from converters.input_spec import standardise  # noqa: E402
from inverter.explorer.app import create_app  # noqa: E402
from inverter.explorer.runs import MAX_UPLOAD, Explorer  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(vgg16_bn, vgg16_bn_path, tmp_path):
    explorer = Explorer([(vgg16_bn_path, vgg16_bn)], tmp_path / "cache", max_queue=2)
    yield explorer, TestClient(create_app(explorer))
    explorer.close()


def events(client, key) -> list[dict]:
    out = []
    with client.stream("GET", f"/api/runs/{key}/events") as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                out.append(json.loads(line[6:]))
    return out


def png(client, url) -> torch.Tensor:
    r = client.get(url)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    array = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"), dtype=np.float32) / 255
    return torch.from_numpy(array).permute(2, 0, 1)[None]


def test_a_run_streams_progress_and_its_numbers_match_its_images(served, vgg16_bn):
    from skimage.metrics import structural_similarity

    explorer, client = served
    r = client.post("/api/runs", json={"model": "m0", "node": "conv2_1", "iterations": 12, "seed": 3})
    assert r.status_code == 200, r.text
    key = r.json()["key"]
    stream = events(client, key)
    progress = [e for e in stream if e["event"] == "progress"]
    assert [e["iteration"] for e in progress] == list(range(1, 13))
    assert progress[0]["image"].startswith("data:image/png;base64,")
    result = stream[-1]["result"]
    assert stream[-1]["event"] == "done" and result["iterations"] == 12
    assert result["loss"] == pytest.approx([e["loss"] for e in progress], rel=1e-6)
    # independent references on the PNGs the run serves (8-bit: a little slack)
    rec, orig = png(client, f"/api/runs/{key}/reconstruction.png"), png(client, f"/api/runs/{key}/original.png")
    reference = structural_similarity(rec[0].permute(1, 2, 0).numpy(), orig[0].permute(1, 2, 0).numpy(),
                                      channel_axis=2, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, data_range=1.0)
    assert result["ssim"] == pytest.approx(reference, abs=0.02)
    node = vgg16_bn.resolve("conv2_1").name

    def feats(x):
        with torch.no_grad():
            return vgg16_bn.from_standardised(standardise(x), [node])[0].double().numpy()

    target = feats(orig)
    # x̄: the better of the photo's mean colour and the ImageNet mean grey (the engine's zero)
    flats = [orig.mean(dim=(2, 3), keepdim=True).expand_as(orig),
             torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1).expand_as(orig)]
    error = ((feats(rec) - target) ** 2).sum() / (target**2).sum()
    flat_error = ((feats(rec) - target) ** 2).sum() / min(((feats(f) - target) ** 2).sum() for f in flats)
    assert result["feature_error"] == pytest.approx(error, rel=0.05)
    assert result["rel_flat"] == pytest.approx(flat_error, rel=0.05)
    assert 0 < result["rel_flat"] < 1  # 12 iterations already beat a flat picture at conv2_1

    # asked again: the finished run at once, from this server and from a new one over the same cache
    again = client.post("/api/runs", json={"model": "m0", "node": "conv2_1", "iterations": 12, "seed": 3}).json()
    assert again["state"] == "done" and again["key"] == key and again["result"] == result
    fresh = Explorer([(explorer.models["m0"].path, vgg16_bn)], explorer.cache)
    try:
        job = fresh.submit({"model": "m0", "node": "conv2_1", "iterations": 12, "seed": 3})
        assert job.state == "done" and job.result == result
        other = fresh.submit({"model": "m0", "node": "conv2_1", "iterations": 12, "seed": 4})
        assert other.key != key  # another seed is another run
    finally:
        fresh.close()


def test_bad_requests_get_clear_4xx_json(served):
    explorer, client = served
    ok = {"model": "m0", "node": "conv1_1", "iterations": 2}
    cases = [
        ("post", "/api/runs", {"json": {**ok, "model": "m7"}}, 404, "no model 'm7'"),
        ("post", "/api/runs", {"json": {**ok, "node": "conv9_9"}}, 404, "closest names"),
        ("post", "/api/runs", {"json": {**ok, "photo": "../../etc/passwd"}}, 404, "no photo"),
        ("post", "/api/runs", {"json": {**ok, "preset": "fast"}}, 400, "unknown preset"),
        ("post", "/api/runs", {"json": {**ok, "iterations": "many"}}, 400, "iterations must be a whole number"),
        ("post", "/api/runs", {"json": {**ok, "iterations": 0}}, 400, "iterations must be 1.."),
        ("post", "/api/runs", {"json": {**ok, "lambda_tv": "nan"}}, 400, "finite"),
        ("post", "/api/runs", {"json": {**ok, "seed": [1]}}, 400, "seed must be a whole number"),
        ("post", "/api/runs", {"content": b"{not json"}, 400, "must be JSON"),
        ("post", "/api/runs", {"json": [1, 2]}, 400, "JSON object"),
        ("get", "/api/runs/nothex", {}, 404, "24 hex digits"),
        ("get", "/api/runs/" + "0" * 24, {}, 404, "no run"),
        ("get", "/api/runs/" + "0" * 24 + "/reconstruction.png", {}, 404, "no run"),
        ("get", "/api/models/m0/resolve?name=nope", {}, 404, "no node named"),
        ("get", "/api/models/m0/resolve", {}, 422, "bad request"),
        ("get", "/api/photos/zz.png", {}, 404, "no photo"),
        ("post", "/api/photos", {"content": b"GIF89a not really"}, 400, "cannot read image"),
        ("post", "/api/photos", {"content": b""}, 400, "empty"),
        ("post", "/api/photos", {"content": b"\0" * (MAX_UPLOAD + 1)}, 413, "limit"),
        ("get", "/no/such/page", {}, 404, "Not Found"),
    ]
    for method, url, kwargs, status, words in cases:
        r = getattr(client, method)(url, **kwargs)
        assert r.status_code == status, (url, kwargs, r.status_code, r.text)
        assert r.headers["content-type"] == "application/json", (url, r.text)
        assert words in r.json()["detail"], (url, r.json())
        assert "Traceback" not in r.text and "\n" not in r.json()["detail"]
    # a picture too elongated for the CLI's loader is refused the same way
    buf = io.BytesIO()
    Image.new("RGB", (420, 20)).save(buf, format="PNG")
    r = client.post("/api/photos", content=buf.getvalue())
    assert r.status_code == 400 and "aspect ratio" in r.json()["detail"]
    assert len(explorer.photos) == len([p for p in explorer.photos if p.startswith("b")])  # nothing kept


def test_an_uploaded_photo_is_used_by_a_run(served):
    explorer, client = served
    buf = io.BytesIO()
    red = np.zeros((60, 80, 3), np.uint8)
    red[..., 0] = 160 + (np.indices((60, 80)).sum(0) % 12) * 8  # red with stripes: a flat photo would be refused
    red[..., 1:] = 30  # (issue 19: a flat image already matches it at every node)
    Image.fromarray(red).save(buf, format="PNG")
    r = client.post("/api/photos?name=red%20square.jpg", content=buf.getvalue())
    assert r.status_code == 200, r.text
    photo = r.json()
    assert photo["name"] == "red_square" and client.get(f"/api/photos/{photo['id']}.png").status_code == 200
    key = client.post("/api/runs", json={"model": "m0", "node": "conv1_1", "iterations": 2,
                                         "photo": photo["id"]}).json()["key"]
    assert events(client, key)[-1]["event"] == "done"
    orig = png(client, f"/api/runs/{key}/original.png")
    assert orig[0, 0].mean() > 0.7 and orig[0, 1].mean() < 0.25  # the red photo, not Grace Hopper


def test_one_run_per_node_a_bounded_queue_and_a_clean_stop(vgg16_bn, vgg16_bn_path, tmp_path):
    explorer = Explorer([(vgg16_bn_path, vgg16_bn)], tmp_path / "cache", max_queue=1)
    client = TestClient(create_app(explorer))
    long = client.post("/api/runs", json={"model": "m0", "node": "conv1_1", "iterations": 5000}).json()
    deadline = time.time() + 30
    while explorer.jobs[long["key"]].state != "running" and time.time() < deadline:
        time.sleep(0.05)
    same_node = client.post("/api/runs", json={"model": "m0", "node": "conv1_1", "iterations": 4999})
    assert same_node.status_code == 409 and "already under way" in same_node.json()["detail"]
    same_run = client.post("/api/runs", json={"model": "m0", "node": "conv1_1", "iterations": 5000})
    assert same_run.status_code == 200 and same_run.json()["key"] == long["key"]
    waiting = client.post("/api/runs", json={"model": "m0", "node": "conv1_2", "iterations": 3})
    assert waiting.status_code == 200 and waiting.json()["state"] == "queued"
    full = client.post("/api/runs", json={"model": "m0", "node": "conv2_1", "iterations": 3})
    assert full.status_code == 429 and "waiting" in full.json()["detail"]
    start = time.perf_counter()
    explorer.close()
    assert time.perf_counter() - start < 10 and not explorer.worker.is_alive()
    assert explorer.jobs[long["key"]].state == "interrupted"
    assert explorer.jobs[waiting.json()["key"]].state == "interrupted"
    assert not list((tmp_path / "cache").glob("*/result.json"))  # nothing half-done is cached


def test_netron_link(served, monkeypatch):
    import importlib.util

    explorer, client = served
    if importlib.util.find_spec("netron") is not None:
        r = client.get("/api/models/m0/netron")
        assert r.status_code == 200, r.text
        url = r.json()["url"]
        try:
            import urllib.request

            with urllib.request.urlopen(url, timeout=10) as page:
                assert page.status == 200
        finally:
            client.app.state.netron.stop()
        annotated = list(explorer.cache.glob("*.annotated.onnx"))
        import onnx

        docs = [n.doc_string for n in onnx.load(annotated[0]).graph.node]
        assert any("conv3_1" in d and "receptive field" in d for d in docs)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "netron" else real(name, *a))
    client.app.state.netron.started.clear()
    r = client.get("/api/models/m0/netron")
    assert r.status_code == 501 and "pip install netron" in r.json()["detail"]


class Branchy(torch.nn.Module):
    """Two branches joined by an Add: a graph that is not a chain."""

    def __init__(self):
        super().__init__()
        self.stem, self.a, self.b, self.head = (torch.nn.Conv2d(c, 4, 3, padding=1) for c in (3, 4, 4, 4))

    def forward(self, x):
        x = torch.relu(self.stem(x))
        return torch.relu(self.head(torch.relu(self.a(x)) + self.b(x)))


def test_graph_layout_is_layered(tmp_path):
    """dot's layout: every edge goes down the page, and two branches sit side by side (not one column)."""
    from converters import load, to_onnx
    from converters.network.graph_export import graph_data
    from inverter.explorer.layout import NODE_W, layout

    torch.manual_seed(0)
    data = graph_data(load(to_onnx(Branchy().eval(), tmp_path / "branchy.onnx", size=(32, 32))))
    placed = layout(data)
    boxes = placed["nodes"]
    assert set(boxes) == {n["id"] for n in data["nodes"]}
    for e in data["edges"]:
        assert boxes[e["to"]][1] > boxes[e["from"]][1]
    assert len(placed["edges"]) == len(data["edges"]) + 1  # and one from the input
    rows: dict[float, list[float]] = {}
    for x, y, w, h in boxes.values():
        rows.setdefault(y, []).append(x)
    assert max(len(xs) for xs in rows.values()) == 2  # the two branches side by side, not one column
    for xs in rows.values():
        assert all(abs(u - v) >= NODE_W * 72 for i, u in enumerate(xs) for v in xs[i + 1:])  # never overlapping


def test_serve_prints_its_url_and_stops_on_ctrl_c(vgg16_bn_path, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "inverter.cli.main", "serve", str(vgg16_bn_path), "--port", "0",
                             "--cache", str(tmp_path / "cache")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
        url = line.split()[3]
        import urllib.request

        with urllib.request.urlopen(url, timeout=30) as page:
            assert b'id="boot"' in page.read()
        body = json.dumps({"model": "m0", "node": "conv1_1", "iterations": 5000}).encode()
        request = urllib.request.Request(url + "api/runs", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            key = json.loads(answer.read())["key"]
        stream = urllib.request.urlopen(f"{url}api/runs/{key}/events", timeout=30)  # a run under way, a stream open
        assert stream.readline().startswith(b"event:")
        start = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert time.perf_counter() - start < 10, "Ctrl-C took too long"
        stream.close()
        assert proc.returncode == 0, err
        assert not list((tmp_path / "cache").glob("*/result.json"))  # the interrupted run is not cached
        assert "stopped" in out and "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_graph_html_is_the_explorer_page(vgg16_bn, vgg16_bn_path, tmp_path):
    from inverter.cli.main import main

    out = tmp_path / "g.html"
    assert main(["graph", str(vgg16_bn_path), "--node", "pool2", "-o", str(out)]) == 0
    page = out.read_text()
    boot = json.loads(page.split('<script id="boot" type="application/json">', 1)[1].split("</script>", 1)[0])
    view = boot["models"][0]
    assert boot["mode"] == "static" and len(view["nodes"]) == 44 == len(view["layout"]["nodes"])
    assert [n["name"] for n in view["nodes"] if n["highlight"]] == [vgg16_bn.resolve("pool2").name]
    assert str(tmp_path) not in page  # no local paths in a page
    assert not re.search(r"""(src|href|url)\(?=?["']?(https?:)?//""", page)  # fetches nothing
