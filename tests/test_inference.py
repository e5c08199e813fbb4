"""Export and extraction end to end, with PaddleClas's reference weights on a slice of the icons test set: fe_eval
through the exported model gives the dygraph path's metrics, fe_export + fe_extract + the metrics engine give
fe_eval's, an extraction killed while writing a chunk resumes to the features of an uninterrupted run, and the
engine falls back to dygraph (with a warning) when the export fails. nbs/12_inference.ipynb explains the design."""
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import yaml

from feature_extraction import engine as engine_module
from feature_extraction.cli import fe_eval, fe_export, fe_extract
from feature_extraction.engine import Engine
from feature_extraction.inference import preprocess_ops, read_tsv
from feature_extraction.export import export_model, load_for_export
from feature_extraction.metrics import retrieval_metrics
from test_engine import set_eval_data, slice_list

SIZE = 96  # the size the full-set comparison uses


@pytest.fixture(scope="module")
def setup(shared, tmp_path_factory):
    "A config of the reference model (its weights) evaluated on the first 40 test classes of the icons at 96x96."
    tmp, icons = tmp_path_factory.mktemp("inference"), shared / "datasets/icons"
    test_list = slice_list(icons / "test_list.txt", tmp / "test.txt", 40)
    c = yaml.safe_load(open(shared / "reference/paddleclas/GeneralRecognitionV2_PPLCNetV2_base.yaml"))
    c["Global"].update({"device": "cpu", "output_dir": str(tmp / "out"), "save_inference_dir": str(tmp / "model"),
                        "pretrained_model": str(shared / "reference/paddleclas/recmodel"),
                        "image_shape": [3, SIZE, SIZE]})
    c["Arch"]["Backbone"]["pretrained"] = False
    c["Arch"]["Head"]["class_num"] = 100
    set_eval_data(c, icons, test_list, SIZE, batch_size=64, workers=2)
    cfg = tmp / "config.yaml"
    yaml.safe_dump(c, open(cfg, "w"))
    return {"tmp": tmp, "icons": icons, "list": test_list, "cfg": cfg, "config": c}


def fe_eval_json(setup, name, *extra) -> dict:
    out = setup["tmp"] / f"{name}.json"
    assert fe_eval(["-c", str(setup["cfg"]), "--json", str(out), *extra]) == 0
    return json.loads(out.read_text())


def test_exported_evaluation_equals_dygraph(setup):
    exported, dygraph = fe_eval_json(setup, "exported"), fe_eval_json(setup, "dygraph", "--dygraph")
    # random but trained-looking weights: far from zero, so the comparison means something
    assert exported["recall1"] > 0.1
    for key in ("recall1", "recall5", "mAP"):
        assert abs(exported[key] - dygraph[key]) <= 1e-4, (key, exported, dygraph)


def test_fe_extract_then_metrics_equals_fe_eval(setup, capsys):
    assert fe_export(["-c", str(setup["cfg"])]) == 0
    out = setup["tmp"] / "extracted"
    assert fe_extract([str(setup["tmp"] / "model"), str(setup["list"]), "--image-root", str(setup["icons"]),
                       "-o", str(out), "--num-threads", "2"]) == 0
    feats, rows = np.load(out / "features.npy"), read_tsv(out / "index.tsv")
    assert len(feats) == len(rows) == len(setup["list"].read_text().splitlines())
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1, atol=1e-5)
    labels, ids = np.array([int(r[1]) for r in rows]), np.array([int(r[2]) for r in rows])
    ours = retrieval_metrics(feats, feats, labels, labels, ids, ids, topk=(1, 5))
    evaluated = fe_eval_json(setup, "for_extract")
    for key in ("recall1", "recall5", "mAP"):
        assert abs(ours[key] - evaluated[key]) <= 1e-4, (key, ours, evaluated)


# `Extraction` writes its chunks with `core.write_atomic` under the name `inference` imported it as, so the
# stand-in replaces that name
KILLER = """
import os, signal, sys
from feature_extraction import inference
from feature_extraction.cli import fe_extract
real = inference.write_atomic
def write_atomic(path, content):
    if path.name == "000002.npz":  # die in the middle of writing the third chunk
        with open(path.with_name(".000002.npz.partial.tmp"), "wb") as f: f.write(b"half a chunk")
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path, content)
inference.write_atomic = write_atomic
sys.exit(fe_extract(sys.argv[1:]))
"""


def test_killed_extraction_resumes(setup, tmp_path, capsys):
    model = load_for_export(setup["config"])
    model_dir = export_model(model, tmp_path / "model32", preprocess_ops({"Global": {"image_shape": [3, 32, 32]}}))
    args = [str(model_dir), str(setup["list"]), "--image-root", str(setup["icons"]), "--batch-size", "8",
            "--chunk-size", "16", "--num-threads", "2"]
    killed = subprocess.run([sys.executable, "-c", KILLER, *args, "-o", str(tmp_path / "a")],
                            capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    chunks = tmp_path / "a/chunks"
    assert sorted(p.name for p in chunks.glob("*.npz")) == ["000000.npz", "000001.npz"]
    assert not (tmp_path / "a/features.npy").exists()
    assert fe_extract(args + ["-o", str(tmp_path / "a")]) == 1  # without --resume the folder is refused
    assert fe_extract(args + ["-o", str(tmp_path / "a"), "--resume"]) == 0
    capsys.readouterr()
    assert fe_extract(args + ["-o", str(tmp_path / "b")]) == 0
    # the progress bar (`core.progress`): off a terminal, plain lines on stderr, the last one at 100%
    bar = [line for line in capsys.readouterr().err.splitlines() if line.startswith("features:")]
    images = len(setup["list"].read_text().splitlines())
    assert bar and "100%" in bar[-1] and f"{images}/{images}" in bar[-1], bar
    assert "100%|###" in bar[-1], bar  # drawn in ASCII, as `core.progress` draws off a terminal
    np.testing.assert_array_equal(np.load(tmp_path / "a/features.npy"), np.load(tmp_path / "b/features.npy"))
    assert (tmp_path / "a/index.tsv").read_text() == (tmp_path / "b/index.tsv").read_text()
    assert sorted(os.listdir(tmp_path / "a")) == ["extract.json", "failed.tsv", "features.npy", "index.tsv"]


def test_engine_falls_back_to_dygraph_when_export_fails(setup, monkeypatch):
    def broken(*args, **kwargs): raise RuntimeError("no exporter today")
    monkeypatch.setattr(engine_module, "exported_predictor", broken)
    config = dict(setup["config"], Global=dict(setup["config"]["Global"], output_dir=str(setup["tmp"] / "fallback")))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = Engine(config, "eval").evaluate()
    assert any("dygraph forward" in str(w.message) and "no exporter today" in str(w.message) for w in caught)
    assert abs(metrics["recall1"] - fe_eval_json(setup, "reference_metrics")["recall1"]) <= 1e-4
