"""The command line as a user meets it: outputs written, bad input -> one line, exit 2."""
import json
import subprocess
import sys

import pytest

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
import hostile  # noqa: E402


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "inverter.cli.main", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=600)


def test_invert_writes_outputs_and_json(vgg16_bn_path, photo, tmp_path):
    out = tmp_path / "run"
    r = run_cli(vgg16_bn_path, "--node", "conv2_1", "--image", photo, "--out", out, "--iterations", 5,
                "--quiet", "--json", "--seed", 1)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["iterations"] == 5 and summary["resolved_nodes"] == ["/features/features.9/Relu"]
    for name in ["reconstruction.png", "comparison.png", "loss.png", "metrics.json"]:
        assert (out / name).stat().st_size > 0
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["feature_error"] == summary["feature_error"]
    assert on_disk["config"]["seed"] == 1
    # the folder now holds files: refused without --force
    again = run_cli(vgg16_bn_path, "--node", "conv2_1", "--image", photo, "--out", out, "--iterations", 1)
    assert again.returncode == 2 and "--force" in again.stderr


def test_nodes_lists_aliases_shapes_receptive_fields(vgg16_bn_path):
    r = run_cli("nodes", vgg16_bn_path)
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stdout.splitlines() if l.startswith("/features/features.16/Relu"))
    assert "1x256x16x16" in line and "conv3_1" in line and " 24 " in line
    data = json.loads(run_cli("nodes", vgg16_bn_path, "--json").stdout)
    assert len(data["nodes"]) == 13 * 3 + 5


@pytest.mark.parametrize("case", ["missing_model", "junk_model", "unknown_node", "missing_image",
                                  "bad_image", "negative_iterations", "bad_optimizer", "no_args"])
def test_user_errors_one_line_exit_2(case, vgg16_bn_path, photo, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07garbage" * 50)
    text_file = tmp_path / "not_an_image.jpg"
    text_file.write_text("hello")
    base = ["--out", tmp_path / "out", "--iterations", 1]
    args = {
        "missing_model": [tmp_path / "nope.onnx", "--node", "x", "--image", photo, *base],
        "junk_model": [junk, "--node", "x", "--image", photo, *base],
        "unknown_node": [vgg16_bn_path, "--node", "conv3_9", "--image", photo, *base],
        "missing_image": [vgg16_bn_path, "--node", "conv3_1", "--image", tmp_path / "no.jpg", *base],
        "bad_image": [vgg16_bn_path, "--node", "conv3_1", "--image", text_file, *base],
        "negative_iterations": [vgg16_bn_path, "--node", "conv3_1", "--image", photo, "--out", tmp_path / "o",
                                "--iterations", -3],
        "bad_optimizer": [vgg16_bn_path, "--node", "conv3_1", "--image", photo, "--optimizer", "lbfgs"],
        "no_args": [],
    }[case]
    r = run_cli(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith("invert-onnx: error:")]
    assert len(errors) == 1, r.stderr
    assert "Traceback" not in r.stderr
    if case == "unknown_node":
        assert "conv3_1" in errors[0]  # the closest names are offered


def test_divergence_saves_last_finite_image_and_says_so(vgg16_bn_path, photo, tmp_path):
    out = tmp_path / "div"
    r = run_cli(vgg16_bn_path, "--node", "conv1_1", "--image", photo, "--out", out, "--optimizer", "sgd",
                "--lr", "1e30", "--momentum", "0", "--iterations", 30, "--quiet")
    assert r.returncode == 1
    assert "diverged" in r.stderr and "Traceback" not in r.stderr
    import json as _json

    metrics = _json.loads((out / "metrics.json").read_text())
    assert metrics["stopped"] == "diverged"
    assert (out / "reconstruction.png").stat().st_size > 0


def test_ctrl_c_keeps_best_image_and_metrics(vgg16_bn_path, photo, tmp_path):
    import signal

    out = tmp_path / "int"
    proc, chunks = hostile.optimising_cli(vgg16_bn_path, "--node", "conv2_1", "--image", photo, "--out", out,
                                          "--iterations", 1000000)
    import time

    time.sleep(2)  # some iterations
    proc.send_signal(signal.SIGINT)
    assert proc.wait(120) == 130
    import json as _json

    metrics = _json.loads((out / "metrics.json").read_text())
    assert metrics["stopped"] == "interrupted" and metrics["iterations"] > 0
    assert (out / "reconstruction.png").stat().st_size > 0
    assert b"Traceback" not in b"".join(chunks)


def test_several_images_run_as_one_batch(vgg16_bn_path, photo, tmp_path):
    from PIL import Image

    other = tmp_path / "mirrored.png"
    Image.open(photo).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(other)
    out = tmp_path / "batch"
    r = run_cli(vgg16_bn_path, "--node", "conv1_2", "--image", photo, "--image", other, "--out", out,
                "--iterations", 4, "--quiet", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert len(summary["psnr_db"]) == 2 and summary["psnr_db"][0] != summary["psnr_db"][1]
    assert (out / "reconstruction_0.png").is_file() and (out / "reconstruction_1.png").is_file()
