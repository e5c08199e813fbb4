"""Sharded extraction (nbs/12b_shards.ipynb, fe_extract --shard/--merge): two processes under
`python -m paddle.distributed.launch` on the CPU, then the merge, write the features and index of a single
process to the bit; a shard killed (SIGKILL) mid-run and resumed gives the same result; shards of two models are
refused at the merge; the embeddings layout (img_emb/*.npy + metadata/*.parquet) loads with pyarrow and its vectors
equal features.npy."""
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from feature_extraction.cli import fe_extract
from feature_extraction.data import demo_data

IMAGES = 120  # of the demo's test list: 8 chunks of 16
COMMON = ["--chunk-size", "16", "--batch-size", "8", "--num-threads", "1"]


def export_tiny(folder: Path, seed: int) -> Path:
    "The demo's network with random weights (seed), exported at 32x32."
    import paddle
    from feature_extraction.config import load_config
    from feature_extraction.export import export_model
    from feature_extraction.inference import preprocess_ops
    from feature_extraction.model import build_model
    paddle.seed(seed)
    model = build_model(load_config(demo_data().parent / "demo.yaml")["Arch"]).eval()
    return export_model(model, folder, preprocess_ops({"Global": {"image_shape": [3, 32, 32]}}))


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    "A tiny exported model, a second one, a list of the demo's test images, and the single-process extraction."
    root = tmp_path_factory.mktemp("shards")
    listed = root / "list.txt"
    lines = (demo_data() / "test_list.txt").read_text().splitlines()[:IMAGES]
    listed.write_text("".join(f"{demo_data() / line.split()[0]} {' '.join(line.split()[1:])}\n" for line in lines))
    model, other = export_tiny(root / "model", 0), export_tiny(root / "other", 1)
    assert fe_extract([str(model), str(listed), "-o", str(root / "single"), *COMMON]) == 0
    return {"root": root, "list": listed, "model": model, "other": other, "single": root / "single"}


def assert_same_as_single(folder: Path, single: Path):
    for name in ("features.npy", "index.tsv", "failed.tsv", "extract.json"):
        assert (folder / name).read_bytes() == (single / name).read_bytes(), name
    assert sorted(p.name for p in folder.iterdir() if p.name != "embeddings") == [
        "extract.json", "failed.tsv", "features.npy", "index.tsv"]


def test_two_processes_under_the_launcher_equal_one(setup, tmp_path):
    out = tmp_path / "sharded"
    script = tmp_path / "extract.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from feature_extraction.cli import fe_extract
        sys.exit(fe_extract([{str(setup['model'])!r}, {str(setup['list'])!r}, "-o", {str(out)!r}, "--shard", "auto",
                             "--merge", "--layout", "embeddings", *{COMMON!r}]))
    """))
    done = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                           "--log_dir", str(tmp_path / "logs"), str(script)], capture_output=True, text=True,
                          timeout=600)
    logs = "".join(p.read_text()[-3000:] for p in (tmp_path / "logs").glob("workerlog.*"))
    assert done.returncode == 0, done.stdout[-3000:] + logs
    assert "merged 2 shards: 120 features of 120 images" in logs, logs
    assert_same_as_single(out, setup["single"])
    import pyarrow.parquet as pq
    parts = sorted((out / "embeddings/img_emb").glob("*.npy"))
    assert [p.name for p in parts] == ["img_emb_00000.npy", "img_emb_00001.npy"]
    np.testing.assert_array_equal(np.concatenate([np.load(p) for p in parts]), np.load(out / "features.npy"))
    tables = [pq.read_table(p) for p in sorted((out / "embeddings/metadata").glob("*.parquet"))]
    paths = [path for t in tables for path in t.column("image_path").to_pylist()]
    assert paths == [line.split("\t")[0] for line in (out / "index.tsv").read_text().splitlines()[1:]]


SLOW_SHARD = """
import sys, time
from feature_extraction import inference
from feature_extraction.cli import fe_extract
save = inference.Extraction.save_chunk
def slow_save(self, k, parts):  # a chunk every half second: time to kill the run half-way
    save(self, k, parts)
    time.sleep(0.5)
inference.Extraction.save_chunk = slow_save
sys.exit(fe_extract(sys.argv[1:]))
"""


def test_a_killed_shard_resumes_to_the_same_result(setup, tmp_path):
    out = tmp_path / "sharded"
    shard1 = [str(setup["model"]), str(setup["list"]), "-o", str(out), "--shard", "1/2", *COMMON]
    run = subprocess.Popen([sys.executable, "-c", SLOW_SHARD, *shard1], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    chunks = out / "shard-00001-of-00002/chunks"
    deadline = time.monotonic() + 300
    while not (chunks.is_dir() and list(chunks.glob("*.npz"))):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    left = sorted(p.name for p in chunks.glob("*.npz"))
    assert 1 <= len(left) < 4, left  # killed half-way: shard 1 is chunks 4..7
    assert fe_extract(shard1) == 1  # the folder holds a run: --resume is needed
    assert fe_extract(shard1 + ["--resume"]) == 0
    shard0 = [str(setup["model"]), str(setup["list"]), "-o", str(out), "--shard", "0/2", *COMMON]
    assert fe_extract(shard0) == 0
    assert fe_extract(shard0 + ["--resume", "--merge"]) == 0  # complete: nothing to resume, but shard 0 merges
    assert_same_as_single(out, setup["single"])


def test_shards_of_two_models_are_refused_at_the_merge(setup, tmp_path, capsys):
    out = tmp_path / "sharded"
    for shard, model in (("0/2", setup["model"]), ("1/2", setup["other"])):
        assert fe_extract([str(model), str(setup["list"]), "-o", str(out), "--shard", shard, *COMMON]) == 0
    capsys.readouterr()
    assert fe_extract(["--merge", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "the shards are not of one run: different models" in err, err
    assert sorted(p.name for p in out.iterdir()) == ["shard-00000-of-00002", "shard-00001-of-00002"]  # untouched


def test_shard_auto_outside_a_launcher_is_a_clear_error(setup, tmp_path, capsys, monkeypatch):
    for name in ("PADDLE_TRAINER_ID", "PADDLE_TRAINERS_NUM", "SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"):
        monkeypatch.delenv(name, raising=False)
    assert fe_extract([str(setup["model"]), str(setup["list"]), "-o", str(tmp_path / "x"), "--shard", "auto"]) == 1
    assert "give the shard as I/N" in capsys.readouterr().err
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    assert fe_extract([str(setup["model"]), str(setup["list"]), "-o", str(tmp_path / "x"), "--shard", "auto",
                       *COMMON]) == 0
    assert (tmp_path / "x/shard-00001-of-00002/features.npy").exists()
    assert os.environ["SLURM_ARRAY_TASK_ID"] == "1"


def test_gallery_from_shards_equals_gallery_from_the_merged_features(setup, tmp_path, capsys):
    from feature_extraction.cli import fe_index
    from feature_extraction.gallery import Gallery
    out = tmp_path / "sharded"
    for shard in ("0/3", "1/3", "2/3"):
        assert fe_extract([str(setup["model"]), str(setup["list"]), "-o", str(out), "--shard", shard, *COMMON]) == 0
    ivf = ["--index-type", "IVF4,Flat"]
    assert fe_index(["build", str(tmp_path / "from_shards"), "--features", str(out), *ivf, "--workers", "2"]) == 0
    assert fe_index(["build", str(tmp_path / "from_single"), "--features", str(setup["single"]), *ivf]) == 0
    sharded, single = Gallery.load(tmp_path / "from_shards"), Gallery.load(tmp_path / "from_single")
    assert len(sharded) == IMAGES and sharded.index_type == "IVF4,Flat"
    np.testing.assert_array_equal(sharded.vectors, single.vectors)
    assert list(sharded.items.items()) == list(single.items.items())
    found, expected = sharded.search(single.vectors[:20], k=5), single.search(single.vectors[:20], k=5)
    np.testing.assert_array_equal(found.ids, expected.ids)
    np.testing.assert_array_equal(found.scores, expected.scores)
    capsys.readouterr()
    (out / "shard-00001-of-00003/chunks").mkdir()  # as if shard 1 were still running
    assert fe_index(["build", str(tmp_path / "early"), "--features", str(out)]) == 1
    assert "not every shard of 3 is finished: missing [], unfinished [1]" in capsys.readouterr().err
    (out / "shard-00001-of-00003/chunks").rmdir()
    features = out / "shard-00002-of-00003/features.npy"
    features.write_bytes(features.read_bytes()[:-4])  # a row cut short
    assert fe_index(["build", str(tmp_path / "cut"), "--features", str(out), *ivf]) == 1
    err = capsys.readouterr().err
    assert f"error: {features} is truncated" in err, err
    assert not (tmp_path / "cut" / "CURRENT").exists()
