"""Shared fixtures: where the shared reference data is (`../shared` beside the repository, or $FE_SHARED_DIR)."""
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared() -> Path:
    path = Path(os.environ.get("FE_SHARED_DIR", REPO.parent / "shared"))
    if not (path / "reference").is_dir():
        pytest.fail(f"shared reference data not found at {path}: clone the repository beside `shared/`, "
                    "or set FE_SHARED_DIR")
    return path


@pytest.fixture(scope="session")
def chromium(tmp_path_factory):
    "Run headless Chromium with some arguments; returns its stdout. Skips (fails under CI) without it."
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        msg = "Chromium not found: install Debian's chromium (`apt-get install chromium`) for the browser tests"
        if os.environ.get("CI"): pytest.fail(msg)
        pytest.skip(msg)
    profile = tmp_path_factory.mktemp("chromium-profile")

    def run(*args, timeout=120) -> str:
        r = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                            f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=timeout)
        assert r.returncode == 0, f"chromium failed ({r.returncode}):\n{r.stderr[-3000:]}"
        return r.stdout
    return run


def grey_png(side: int) -> bytes:
    "A valid PNG of `side` x `side` black pixels, a few hundred bytes per 1000 x 1000 (a pixel bomb when large)."
    import zlib
    def chunk(kind, body):
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
    header = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])  # 8-bit grey
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(side + 1) * side))
            + chunk(b"IEND", b""))


def compare_network_gradients(layer_class, paddle_forward, min_layers: int) -> dict:
    """Gradients of every parameter of `PPLCNetV2_small` computed with the compiled `layer_class`, after checking
    that it has at least `min_layers` of them and that the gradients equal those with `paddle_forward` (Paddle's
    own convolution) as the layers' forward. Paddle is imported here, not by every test session."""
    import numpy as np
    import paddle
    from feature_extraction.backbone import PPLCNetV2_small
    paddle.seed(0)
    model = PPLCNetV2_small(class_num=4)
    model.eval()  # no dropout, so both passes compute the same function
    assert sum(isinstance(layer, layer_class) for layer in model.sublayers()) >= min_layers
    x = paddle.rand([2, 3, 32, 32])
    model(x).mean().backward()
    ours = {n: p.grad.numpy().copy() for n, p in model.named_parameters() if p.grad is not None}
    model.clear_gradients()
    original = layer_class.forward
    layer_class.forward = paddle_forward
    try:
        model(x).mean().backward()
    finally:
        layer_class.forward = original
    theirs = {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None}
    assert ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=2e-3, atol=2e-4, err_msg=name)
    return ours


@pytest.fixture(scope="session")
def icons(shared, tmp_path_factory):
    "(features [5031, 512], labels, paths) of the icons test set: PaddleClas's reference weights, exported at 64x64."
    from feature_extraction.export import export_model
    from feature_extraction.inference import FeatureExtractor, collect_inputs, preprocess_ops
    from feature_extraction.model import build_model, load_weights
    arch = {"name": "RecModel", "Backbone": {"name": "PPLCNetV2_base_ShiTu"}, "BackboneStopLayer": {"name": "flatten"},
            "Neck": {"name": "BNNeck", "num_features": 512}}
    model = build_model(arch)
    load_weights(model, shared / "reference/paddleclas/recmodel.pdparams")
    model_dir = export_model(model.eval(), tmp_path_factory.mktemp("icons") / "model",
                             preprocess_ops({"Global": {"image_shape": [3, 64, 64]}}))
    images = collect_inputs([shared / "datasets/icons/test_list.txt"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return FeatureExtractor(model_dir, "cpu", 2, 64)(images.paths), images.labels, images.paths


def demo_train_arguments(output_dir, *overrides, data: Path = None) -> list:
    "`fe_train` (or `fe_eval`) arguments for the demo config on the lists in `data` (the bundled demo data)."
    from feature_extraction.data import demo_data
    config, data = demo_data().parent / "demo.yaml", demo_data() if data is None else data
    arguments = ["-c", str(config), "-o", f"Global.output_dir={output_dir}",
                 f"DataLoader.Train.dataset.image_root={data}",
                 f"DataLoader.Train.dataset.cls_label_path={data / 'train_list.txt'}"]
    for part in ("Query", "Gallery"):
        arguments += [f"DataLoader.Eval.{part}.dataset.image_root={data}",
                      f"DataLoader.Eval.{part}.dataset.cls_label_path={data / 'test_list.txt'}"]
    return arguments + list(overrides)
