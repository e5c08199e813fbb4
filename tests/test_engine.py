"""The training engine on a small slice of the icons data at 32x32: the reference config builds everything, training
and evaluation run and write their files, a resume in the middle of an epoch gives the weights of an uninterrupted
run, a crash during a checkpoint save leaves the previous checkpoint loadable, a non-finite loss stops the run
before the weights change, and the command-line tools. nbs/13_engine.ipynb explains the design."""
import copy
import json
import shutil
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import paddle
import pytest
import yaml

from feature_extraction import engine as engine_module
from feature_extraction.cli import fe_eval, fe_train
from feature_extraction.engine import Engine, load_checkpoint

SIZE = 32


@pytest.fixture(scope="module")
def reference(shared):
    return yaml.safe_load(open(shared / "reference/paddleclas/GeneralRecognitionV2_PPLCNetV2_base.yaml"))


def slice_list(src, dst, classes: int, per_class: int = None):
    "The lines of label file `src` whose label is below `classes`, at most `per_class` of each, written to `dst`."
    seen, out = {}, []
    for line in src.read_text().splitlines():
        label = int(line.split()[1])
        if label < classes and seen.get(label, 0) < (per_class or 10**9):
            seen[label] = seen.get(label, 0) + 1
            out.append(line)
    dst.write_text("\n".join(out) + "\n")
    return dst


@pytest.fixture(scope="module")
def lists(shared, tmp_path_factory):
    tmp, icons = tmp_path_factory.mktemp("lists"), shared / "datasets/icons"
    return (icons, slice_list(icons / "train_list.txt", tmp / "train.txt", 12, 4),
            slice_list(icons / "test_list.txt", tmp / "test.txt", 6))


def small_config(reference, lists, out_dir, **global_overrides) -> dict:
    "The reference config cut down: a 64-wide ShiTu backbone at 32x32, 12 classes, batches of 16, 2 epochs."
    icons, train, test = lists
    c = copy.deepcopy(reference)
    c["Global"].update({"device": "cpu", "output_dir": str(out_dir), "epochs": 2, "print_batch_step": 1, "seed": 1,
                        "image_shape": [3, SIZE, SIZE]} | global_overrides)
    c["Arch"]["Backbone"].update({"pretrained": False, "class_expand": 64})
    c["Arch"]["Neck"]["num_features"] = 64
    c["Arch"]["Head"].update({"embedding_size": 64, "class_num": 12})
    c["Optimizer"]["lr"].update({"learning_rate": 0.01, "warmup_epoch": 1})
    tr = c["DataLoader"]["Train"]
    tr["dataset"].update({"image_root": str(icons), "cls_label_path": str(train)})
    for op in tr["dataset"]["transform_ops"]:
        (name, args), = op.items()
        if name in ("ResizeImage", "RandCropImageV2"): args["size"] = [SIZE, SIZE]
        if name == "Pad": args["padding"] = 2
    tr["sampler"].update({"batch_size": 16, "id_list": None, "ratio": None})
    tr["loader"]["num_workers"] = 1
    set_eval_data(c, icons, test, SIZE, batch_size=32, workers=1)
    return c


def set_eval_data(c: dict, image_root, label_file, size: int, batch_size: int, workers: int):
    "Point the query and gallery sets of config `c` at `label_file`, resized to `size` x `size`."
    for part in ("Query", "Gallery"):
        ev = c["DataLoader"]["Eval"][part]
        ev["dataset"].update({"image_root": str(image_root), "cls_label_path": str(label_file)})
        ev["dataset"]["transform_ops"][1]["ResizeImage"]["size"] = [size, size]
        ev["sampler"]["batch_size"] = batch_size
        ev["loader"]["num_workers"] = workers


def weights(engine) -> dict:
    return {k: v.numpy().copy() for k, v in engine.model.state_dict().items()}


def test_reference_config_builds_everything(reference, lists, tmp_path):
    "The PaddleClas YAML itself, with only the data paths and the pretrained flag changed, builds every part."
    icons, train, test = lists
    c = copy.deepcopy(reference)
    c["Global"].update({"device": "cpu", "output_dir": str(tmp_path)})
    c["Arch"]["Backbone"]["pretrained"] = False  # ImageNet weights cannot be downloaded here
    c["DataLoader"]["Train"]["dataset"].update({"image_root": str(icons), "cls_label_path": str(train)})
    c["DataLoader"]["Train"]["sampler"]["batch_size"] = 48  # 12 classes x 4: the largest P x K batch of the slice
    for part in ("Query", "Gallery"):
        c["DataLoader"]["Eval"][part]["dataset"].update({"image_root": str(icons), "cls_label_path": str(test)})
    with pytest.warns(UserWarning):  # id_list reaches beyond the 12 classes of the slice
        e = Engine(c, "train")
    assert e.model.head.fc.weight.shape == [512, 192612]
    assert isinstance(e.optimizer, paddle.optimizer.Momentum) and e.iters_per_epoch == 1
    assert e.query_loader is not None and e.gallery_loader is None  # one list, extracted once
    assert type(e.scheduler).__name__ == "LinearWarmup"


def test_train_evaluate_and_files(reference, lists, tmp_path):
    e = Engine(small_config(reference, lists, tmp_path), "train")
    best = e.train()
    assert 0 <= best["recall1"] <= 1 and best["epoch"] in (1, 2)
    names = {p.name for p in tmp_path.iterdir()}
    for prefix in ("latest", "best_model", "epoch_1", "epoch_2"):
        assert {f"{prefix}.pdparams", f"{prefix}.pdopt", f"{prefix}.pdstates"} <= names
    history = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert {h["kind"] for h in history} == {"train", "eval", "baseline"} and "recall1" in history[-1]
    assert [h["name"] for h in history if h["kind"] == "baseline"] == ["raw pixels"]  # computed once, kept
    log = (tmp_path / "train.log").read_text()
    assert "[Train][Epoch 2/2]" in log
    assert [line for line in log.splitlines() if "[Eval]" in line and "; raw pixels recall1 " in line]
    saved = yaml.safe_load(open(tmp_path / "config.yaml"))  # the effective config, defaults filled in
    assert saved["Global"]["epochs"] == 2 and saved["Global"]["sim_block_size"] == 64
    metrics = Engine(small_config(reference, lists, tmp_path / "eval", pretrained_model=str(tmp_path / "best_model")),
                     "eval").evaluate()
    assert metrics["recall1"] == pytest.approx(best["recall1"], abs=1e-6)


def test_resume_mid_epoch_equals_one_run(reference, lists, tmp_path):
    "N iterations in one run, and N/2 + N/2 with a resume in between, give the same weights."
    one = Engine(small_config(reference, lists, tmp_path / "one", eval_during_train=False), "train")
    n = one.epochs * one.iters_per_epoch
    one.train()
    first = Engine(small_config(reference, lists, tmp_path / "two", eval_during_train=False, max_iterations=n // 2 + 1),
                   "train")
    first.train()
    assert (first.epoch, first.iteration) != (one.epoch, one.iteration)
    second = Engine(small_config(reference, lists, tmp_path / "two", eval_during_train=False,
                                 checkpoints=str(tmp_path / "two/latest")), "train")
    second.train()
    a, b = weights(one), weights(second)
    assert a.keys() == b.keys()
    for k in a: np.testing.assert_allclose(a[k], b[k], atol=1e-5, err_msg=k)


def test_crash_during_save_keeps_the_previous_checkpoint(reference, lists, tmp_path, monkeypatch):
    "A failure while `latest` is serialised or written leaves the previous `latest`; a mixed set is refused."
    e = Engine(small_config(reference, lists, tmp_path, eval_during_train=False, epochs=2), "train")
    real_checkpoint, real_write_files, saving = engine_module.save_checkpoint, engine_module.write_atomic_files, []
    real_save = paddle.save

    def noting_checkpoint(prefix, *args, **kwargs):
        saving.append(Path(prefix).name)
        return real_checkpoint(prefix, *args, **kwargs)

    def crashing_save(obj, path, *args, **kwargs):  # fails on the optimizer's state (keys `name@slot`) of `latest`
        if e.epoch == 2 and saving and saving[-1] == "latest" and any("@" in str(k) for k in obj):
            raise OSError("power cut")
        return real_save(obj, path, *args, **kwargs)

    def half_then_power_cut(data):
        def write(f):
            f.write(data[:len(data) // 2])
            raise OSError("power cut")
        return write

    def cut_write(contents):  # the power goes half-way through writing `latest.pdopt`
        if e.epoch == 2 and any(str(path).endswith("latest.pdopt") for path in contents):
            contents = {path: half_then_power_cut(data) if str(path).endswith("latest.pdopt") else data
                        for path, data in contents.items()}
        return real_write_files(contents)

    monkeypatch.setattr(engine_module, "save_checkpoint", noting_checkpoint)
    monkeypatch.setattr(engine_module.paddle, "save", crashing_save)
    with pytest.raises(OSError, match="power cut"):
        e.train()
    assert saving[-2:] == ["epoch_2", "latest"]
    monkeypatch.setattr(engine_module.paddle, "save", real_save)
    fresh = Engine(small_config(reference, lists, tmp_path / "x", eval_during_train=False), "train")
    states = load_checkpoint(tmp_path / "latest", fresh.model, fresh.optimizer)
    assert states["epoch"] == 1 and not list(tmp_path.glob(".*.tmp"))
    monkeypatch.setattr(engine_module, "write_atomic_files", cut_write)
    with pytest.raises(OSError, match="power cut"):
        e.end_epoch()  # epoch 2's saves again; all three files of `latest` are written before any is renamed
    assert load_checkpoint(tmp_path / "latest", fresh.model, fresh.optimizer)["epoch"] == 1
    assert load_checkpoint(tmp_path / "epoch_2", fresh.model, fresh.optimizer)["epoch"] == 2
    assert not list(tmp_path.glob(".*.tmp"))
    shutil.copy(tmp_path / "epoch_2.pdparams", tmp_path / "latest.pdparams")  # parts of two saves
    with pytest.raises(ValueError, match="inconsistent"):
        load_checkpoint(tmp_path / "latest", fresh.model, fresh.optimizer)


def test_non_finite_loss_stops_before_the_update(reference, lists, tmp_path):
    e = Engine(small_config(reference, lists, tmp_path, eval_during_train=False), "train")
    # trainable parameters: Paddle keeps batch-norm statistics as parameters too, and a forward pass updates them
    def params():
        return {n: p.numpy().copy() for n, p in e.model.named_parameters() if not p.stop_gradient}
    before = params()
    e.train_loss.weights[0] = float("nan")
    with pytest.raises(FloatingPointError, match="not finite at epoch 1, iteration 1"):
        e.train()
    for k, v in params().items():
        np.testing.assert_array_equal(v, before[k])
    assert not (tmp_path / "latest.pdparams").exists()  # nothing written after a bad step


def test_command_line(reference, lists, tmp_path, capsys):
    cfg = tmp_path / "small.yaml"
    yaml.safe_dump(small_config(reference, lists, tmp_path / "out", epochs=1), open(cfg, "w"))
    assert fe_train(["-c", str(cfg), "-o", "Global.eval_during_train=False"]) == 0
    assert (tmp_path / "out/config.yaml").exists() and (tmp_path / "out/latest.pdparams").exists()
    assert fe_eval(["-c", str(cfg), "-o", f"Global.pretrained_model={tmp_path / 'out/latest'}",
                    f"Global.output_dir={tmp_path / 'ev'}", "--json", str(tmp_path / "m.json"), "--baselines"]) == 0
    printed = capsys.readouterr().out
    assert "recall1:" in printed and "mAP:" in printed
    rows = printed.splitlines()[-3:]
    assert [row.split(":")[0] for row in rows] == ["raw pixels", "untrained network", "trained network"], printed
    for row in rows:
        assert re.fullmatch(r"[a-z ]+: +recall1 \d\.\d{3}  recall5 \d\.\d{3}  mAP \d\.\d{3}", row), row
    assert fe_train(["-c", str(cfg), "-o", "Global.epochs=0", "Optimizer.momentum=2"]) == 1  # one report, both problems
    err = capsys.readouterr().err
    assert "Global.epochs" in err and "Optimizer.momentum" in err
    assert fe_eval(["-c", str(tmp_path / "missing.yaml")]) == 1 and "missing.yaml" in capsys.readouterr().err
    written = json.loads((tmp_path / "m.json").read_text())
    assert set(written) >= {"recall1", "recall5", "mAP", "baselines"}
    assert list(written["baselines"]) == ["raw pixels", "untrained network"]


def test_validation_split(reference, lists, tmp_path, capsys):
    "Global.validation_split: the engine evaluates on held-out training classes; too large a split is a ConfigError."
    icons, train, _ = lists
    e = Engine(small_config(reference, lists, tmp_path, validation_split=0.25), "eval")
    held = (tmp_path / "split/val_list.txt").read_text().splitlines()
    kept = (tmp_path / "split/train_list.txt").read_text().splitlines()
    assert len({line.split()[1] for line in held}) == 3
    assert sorted(held + kept) == sorted(train.read_text().splitlines())  # the original lines
    assert e.evaluate()["num_queries"] == len(held) == 12  # 3 of the 12 classes, 4 images each
    cfg = tmp_path / "split.yaml"
    yaml.safe_dump(small_config(reference, lists, tmp_path / "bad", validation_split=0.95), open(cfg, "w"))
    assert fe_train(["-c", str(cfg)]) == 1 and "Global.validation_split" in capsys.readouterr().err


def test_data_parallel_two_processes(reference, lists, tmp_path):
    "Two CPU processes under paddle.distributed.launch (gloo) train one epoch; evaluation gathers both shares."
    cfg = tmp_path / "small.yaml"
    yaml.safe_dump(small_config(reference, lists, tmp_path / "out", epochs=1), open(cfg, "w"))
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        from feature_extraction.cli import fe_train
        sys.exit(fe_train(["-c", {str(cfg)!r}]))
    """))
    r = subprocess.run([sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
                        "--log_dir", str(tmp_path / "logs"), str(script)], capture_output=True, text=True, timeout=600)
    logs = {p.name: p.read_text() for p in (tmp_path / "logs").glob("workerlog.*")}
    assert r.returncode == 0, r.stdout[-3000:] + "".join(v[-3000:] for v in logs.values())
    log = (tmp_path / "out/train.log").read_text()
    assert "[Train][Epoch 1/1][Iter 2/2]" in log  # 48 images / 2 ranks / 16 per batch
    test_images = sum(1 for _ in open(lists[2]))
    assert f"num_queries {test_images}" in log  # every rank's share of the query set was gathered
    assert "; raw pixels recall1 " in log  # so was the pixel baseline's, computed by both ranks together
    assert (tmp_path / "out/latest.pdparams").exists() and not list((tmp_path / "out").glob("*.tmp"))


def test_ctrl_c_saves_latest_and_exits(reference, lists, tmp_path):
    "SIGINT during training: the step finishes, `latest` is saved with the position, fe_train exits with 130."
    cfg = tmp_path / "small.yaml"
    yaml.safe_dump(small_config(reference, lists, tmp_path / "out", epochs=50, eval_during_train=False), open(cfg, "w"))
    script = f"import sys; from feature_extraction.cli import fe_train; sys.exit(fe_train(['-c', {str(cfg)!r}]))"
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "out/train.log"
    deadline = time.time() + 240
    while time.time() < deadline and not (log.exists() and "[Train]" in log.read_text()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "resume with -o Global.checkpoints=" in err
    e = Engine(small_config(reference, lists, tmp_path / "again", epochs=50, eval_during_train=False,
                            checkpoints=str(tmp_path / "out/latest")), "train")
    assert e.global_step >= 1 and (e.epoch, e.iteration) != (1, 0)


def test_icons_cpu_documented_run_matches_bench_readme():
    "bench/README.md's curve of the icons_cpu run is its history file's, which ends at the config's last epoch."
    repo = Path(__file__).resolve().parents[1]
    run = [json.loads(line) for line in (repo / "bench/results/icons_cpu_history.jsonl").read_text().splitlines()]
    evals = [h for h in run if h["kind"] == "eval"]
    assert evals[-1]["epoch"] == yaml.safe_load(open(repo / "configs/icons_cpu.yaml"))["Global"]["epochs"]
    section = (repo / "bench/README.md").read_text().split("## icons_cpu.yaml")[1].split("\n## ")[0]
    rows = re.findall(r"^\| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", section, re.MULTILINE)
    expected = [(str(h["epoch"]), f"{(h['time'] - run[0]['time']) / 60:.1f}", f"{h['recall1']:.3f}",
                 f"{h['recall5']:.3f}", f"{h['mAP']:.3f}") for h in evals]
    assert rows == expected
