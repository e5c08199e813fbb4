"""RecModel with every head PaddleClas offers: built from a config, trained one step, gradients everywhere
they belong (the notebooks check the FC head against PaddleClas's reference outputs)."""
import numpy as np
import paddle
import pytest

from feature_extraction.model import build_model, load_weights, save_weights

HEADS = {
    "FC": {},
    "ArcMargin": {"margin": 0.5, "scale": 80.0},
    "CosMargin": {"margin": 0.35, "scale": 64.0},
    "CircleMargin": {"margin": 0.25, "scale": 256.0},
}


def arch(head: str) -> dict:
    return {"name": "RecModel",
            "Backbone": {"name": "PPLCNetV2_base_ShiTu", "pretrained": False, "class_expand": 512},
            "BackboneStopLayer": {"name": "flatten"},
            "Neck": {"name": "BNNeck", "num_features": 512},
            "Head": {"name": head, "embedding_size": 512, "class_num": 10, **HEADS[head]}}


@pytest.mark.parametrize("head", HEADS)
def test_every_head_trains(head):
    paddle.seed(0)
    model = build_model(arch(head))
    model.train()
    x = paddle.to_tensor(np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32))
    label = paddle.to_tensor(np.array([[1], [2], [1], [3]], np.int64))
    out = model(x, label)
    assert out["logits"].shape == [4, 10] and out["features"].shape == [4, 512]
    paddle.nn.functional.cross_entropy(out["logits"], label).backward()
    missing = [n for n, p in model.named_parameters() if not p.stop_gradient and p.grad is None]
    assert missing == []
    frozen = [n for n, p in model.named_parameters() if p.stop_gradient
              and not n.endswith(("_mean", "_variance", ".dw_conv.weight", ".dw_conv.bias"))]
    assert frozen == ["neck.feat_bn.bias"]
    model.eval()
    with paddle.no_grad():
        cos = model(x)["logits"].numpy()  # eval: plain output (cosine for margin heads), no label needed
    if head != "FC": assert np.all(np.abs(cos) <= 1 + 1e-5)


def test_save_load_round_trip(tmp_path):
    model = build_model(arch("ArcMargin")).eval()
    path = save_weights(model, tmp_path / "model")
    other = build_model(arch("ArcMargin")).eval()
    report = load_weights(other, path)
    assert not report["missing"] and not report["unexpected"] and not report["mismatched"]
    x = paddle.ones([1, 3, 32, 32])
    with paddle.no_grad():
        np.testing.assert_array_equal(model(x)["features"].numpy(), other(x)["features"].numpy())


def test_wrong_file_is_refused(tmp_path):
    paddle.save({"unrelated": paddle.zeros([2])}, str(tmp_path / "x.pdparams"))
    with pytest.raises(ValueError, match="no tensor that fits"):
        load_weights(build_model(arch("FC")), tmp_path / "x.pdparams")
    with pytest.raises(FileNotFoundError, match="weights not found"):
        load_weights(build_model(arch("FC")), tmp_path / "missing.pdparams")
