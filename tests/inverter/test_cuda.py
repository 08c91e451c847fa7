"""The CUDA path: skipped where torch sees no GPU (CI); run on a GPU machine with `pytest tests/inverter/test_cuda.py`.

Optimisation is chaotic across devices (cuDNN picks other kernels, TF32 rounds convolutions to ~1e-3), so
these compare one step, where rounding has nothing to grow from, and what a user relies on after a run."""
import pytest
import torch

from converters.input_spec import standardise
from inverter import InversionConfig, invert
from inverter.methods.inversion import inversion_objective
from inverter.loop import optimize
from inverter.methods.saliency import saliency
from inverter.presets import PRESETS, preset

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture()
def photo64(photo):
    from inverter.io.images import load_image

    return load_image(photo, (64, 64))


@pytest.fixture()
def no_tf32():
    """cuDNN and cuBLAS round convolutions to TF32 (10-bit mantissa) by default; off, CUDA and CPU agree in float32."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.mark.parametrize("name", list(PRESETS))
def test_gradient_and_sgd_step_match_cpu(vgg16_bn, photo64, name, no_tf32):
    """Every preset's objective has the same gradient on both devices at the same image, and an SGD preset's
    first step (lr times the gradient; Adam's first step is lr * sign(g), which rounding can flip where g ~ 0)
    moves the image the same way."""
    grads, steps = {}, {}
    init = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * preset(name)[0].init_scale
    for device in ("cpu", "cuda"):
        config = preset(name)[0].replace(iterations=1, device=device)
        vgg16_bn.to(device)
        with torch.no_grad():
            (target,) = vgg16_bn.from_standardised(standardise(photo64).to(device), ["conv3_1"])
        objective = inversion_objective({"conv3_1": target}, config, image_side=64)
        x = init.detach().clone().to(device).requires_grad_(True)
        feats = dict(zip(objective.nodes, vgg16_bn.from_standardised(x, objective.nodes)))
        sum(objective.evaluate(x, feats).values()).sum().backward()
        grads[device] = x.grad.cpu().flatten()
        run = optimize(vgg16_bn, objective, config, init.clone(), progress=False)
        steps[device] = (run.images.cpu() - init).flatten()
    vgg16_bn.to("cpu")
    cos = torch.nn.functional.cosine_similarity
    assert float(cos(grads["cpu"], grads["cuda"], dim=0)) > 0.9999
    assert float(grads["cuda"].norm() / grads["cpu"].norm()) == pytest.approx(1, rel=1e-3)
    if preset(name)[0].optimizer == "sgd":
        assert float(cos(steps["cpu"], steps["cuda"], dim=0)) > 0.9999


def test_inversion_on_cuda_reconstructs(vgg16_bn, photo64):
    result = invert(vgg16_bn, photo64, "conv2_1", InversionConfig(device="cuda", iterations=100), progress=False)
    vgg16_bn.to("cpu")
    assert result.image.device.type == "cpu" and result.stopped == "done"
    assert result.feature_error["conv2_1"][0] < 0.1  # 0.0x on CPU (tests/inverter/test_methods.py)


def test_saliency_on_cuda_matches_cpu(vgg16_bn, photo64):
    maps = {}
    for device in ("cpu", "cuda"):
        vgg16_bn.to(device)
        maps[device], index = saliency(vgg16_bn, photo64.to(device), index=3, node="conv5_3")
    vgg16_bn.to("cpu")
    a, b = maps["cpu"].flatten(), maps["cuda"].cpu().flatten()
    assert float(torch.nn.functional.cosine_similarity(a, b, dim=0)) > 0.99
