"""Issue 18: each failure found by probing the library as a demanding user, reproduced, and now handled."""
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import demo_train_arguments, grey_png
from feature_extraction.backbone import read_weights
from feature_extraction.cli import fe_eval, fe_export, fe_extract, fe_index, fe_search, fe_train
from feature_extraction.core import file_digest
from feature_extraction.engine import load_checkpoint
from feature_extraction.data import demo_data
from feature_extraction.gallery import Gallery, gallery_lock
from feature_extraction.inference import FeatureExtractor


def test_class_num_smaller_than_the_labels_is_one_clear_error(tmp_path, capsys):
    # 5: before, the first batch crashed inside Paddle's one-hot kernel ("Illegal index value")
    status = fe_train(demo_train_arguments(tmp_path / "run", "Arch.Head.class_num=10"))
    err = capsys.readouterr().err
    assert status == 1
    assert "Arch.Head.class_num: 10, but the labels of" in err and "set it to at least 150" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "latest.pdparams").exists()


def test_training_into_a_used_output_folder_is_refused(tmp_path, capsys):
    # 4: fe_train into an existing output_dir silently overwrote that run's latest.* and config and appended to its
    # history
    run = tmp_path / "run"
    quick = ("Global.epochs=1", "Global.eval_during_train=False")
    assert fe_train(demo_train_arguments(run, *quick)) == 0
    history = (run / "history.jsonl").read_text()
    assert fe_train(demo_train_arguments(run, *quick)) == 1
    err = capsys.readouterr().err
    assert f"error: {run} is not empty" in err and "--overwrite" in err and "Traceback" not in err
    assert (run / "history.jsonl").read_text() == history  # untouched
    assert fe_train(demo_train_arguments(run, *quick, "Global.epochs=2", f"Global.checkpoints={run / 'latest'}")) == 0
    assert fe_train(demo_train_arguments(run, *quick) + ["--overwrite"]) == 0
    assert len((run / "history.jsonl").read_text().splitlines()) < len(history.splitlines()) * 2  # started over


def write_label_file(path, lines: list, encoding: str = "utf-8"):
    "A label file of demo images plus `lines`, in `encoding`."
    demo_lines = (demo_data() / "train_list.txt").read_text(encoding="utf-8").splitlines()[:50]
    path.write_bytes("\n".join(demo_lines + lines).encode(encoding) + b"\n")
    return path


def test_label_file_errors_are_one_report_without_a_traceback(tmp_path, capsys):
    # 6: a bad line and a Latin-1 file came out under a 30-line traceback (a bare UnicodeDecodeError for Latin-1)
    data = demo_data()
    for name, lines, encoding, expected in [
            ("bad_line.txt", ["onlyonefield"], "utf-8", "line 51: 1 columns, expected 2"),
            ("latin1.txt", ["café.png 3"], "latin-1", "line 51: not UTF-8 text (byte 0xe9)")]:
        label_file = write_label_file(tmp_path / name, lines, encoding)
        overrides = [f"DataLoader.Train.dataset.cls_label_path={label_file}",
                     f"DataLoader.Train.dataset.image_root={data}"]
        status = fe_train(demo_train_arguments(tmp_path / "run", *overrides))
        err = capsys.readouterr().err
        assert status == 1, name
        assert expected in err and str(label_file) in err, err
        assert "Traceback" not in err, err


# ---- galleries: concurrent writers, paths, duplicates, bad input (1, 7, 8 and the low items) ----

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    "The demo's small network, untrained, exported at 32x32: quick to extract with."
    import paddle
    from feature_extraction.config import load_config
    from feature_extraction.inference import preprocess_ops
    from feature_extraction.export import export_model
    from feature_extraction.model import build_model
    paddle.seed(0)
    arch = load_config(demo_data().parent / "demo.yaml")["Arch"]
    model = build_model(arch)
    return export_model(model.eval(), tmp_path_factory.mktemp("tiny") / "model",
                        preprocess_ops({"Global": {"image_shape": [3, 32, 32]}}))


def demo_images(count: int) -> list:
    "The absolute paths of the first `count` images of the demo's training list."
    data = demo_data()
    lines = (data / "train_list.txt").read_text(encoding="utf-8").splitlines()[:count]
    return [str(data / line.split()[0]) for line in lines]


# a slow disk: each save of a gallery version takes a second, so that writers that do not take turns overlap
SLOW_SAVES = """import time
from feature_extraction.gallery import Gallery
write_version = Gallery._write_version
def slow(self, folder):
    time.sleep(1)
    write_version(self, folder)
Gallery._write_version = slow
"""


def run_cli(command: str, *argv, slow_saves: bool = False, **popen) -> subprocess.Popen:
    "Start `command` (`fe_index`, ...) in another Python process with `argv` (`slow_saves`: as on a slow disk)."
    code = (SLOW_SAVES if slow_saves else "") + \
        f"import sys\nfrom feature_extraction.cli import {command}\nsys.exit({command}(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


def finished(process: subprocess.Popen, timeout: float = 600) -> tuple:
    "(exit status, stdout, stderr) of `process` once it ends."
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def write_list(path: Path, images: list) -> Path:
    "A gallery list of `images`, each labelled by its folder's name."
    path.write_text("".join(f"{image}\t{Path(image).parent.name}\n" for image in images), encoding="utf-8")
    return path


def test_four_concurrent_writers_lose_nothing(tiny_model, tmp_path):
    # 1: two concurrent `add`s both printed "added 100", yet one's vectors were lost and both handed out ids 300-399;
    # a third writer's prune deleted another's temporary version
    images = demo_images(160)
    index = tmp_path / "index"
    assert finished(run_cli("fe_index", "build", index, write_list(tmp_path / "base.tsv", images[:30]),
                            "--model", tiny_model, "--num-threads", 1))[0] == 0
    for name, part in (("c", images[90:130]), ("d", images[120:160])):  # fe_extract's outputs, made beforehand
        assert finished(run_cli("fe_extract", tiny_model, *part, "-o", tmp_path / name, "--num-threads", 1))[0] == 0
    sources = [[write_list(tmp_path / "a.tsv", images[30:70]), "--model", tiny_model, "--num-threads", 1],
               ["--features", tmp_path / "c"],
               [write_list(tmp_path / "b.tsv", images[60:100]), "--model", tiny_model, "--num-threads", 1],
               ["--features", tmp_path / "d"]]
    writers = [run_cli("fe_index", "add", index, *source, slow_saves=True) for source in sources]
    results = [finished(writer) for writer in writers]
    assert [status for status, _, _ in results] == [0] * 4, results
    gallery = Gallery.load(index)
    paths = [item.path for item in gallery.items.values()]
    assert sorted(paths) == sorted(images) and len(gallery) == 160  # every image once, the overlaps too
    assert len(set(gallery.ids.tolist())) == 160 and sorted(gallery.items) == sorted(gallery.ids.tolist())
    leftovers = [p.name for p in index.iterdir() if p.name not in (".lock", "CURRENT") and not p.name.startswith("v")]
    assert not leftovers


def test_a_writer_waits_for_the_lock_and_says_so(tiny_model, tmp_path):
    index = tmp_path / "index"
    images = demo_images(12)
    Gallery(FeatureExtractor(tiny_model).feature_size).save(index)
    with gallery_lock(index):
        writer = run_cli("fe_index", "add", index, write_list(tmp_path / "list.tsv", images), "--model", tiny_model)
        waited = writer.stderr.readline()
        assert waited == f"waiting for another writer of {index} to finish ...\n"
        assert writer.poll() is None  # still waiting
    status, out, err = finished(writer)
    assert status == 0
    assert out.startswith("added 12, replaced 0 changed, 0 already indexed, 0 unreadable; saved v000002"), out


def test_paths_are_absolute_and_additions_are_not_repeated(tiny_model, tmp_path, monkeypatch, capsys):
    # 7: one image by a relative and an absolute path was indexed twice; `add --features` twice doubled every vector;
    # `--features` without extract.json skipped the fingerprint check
    image = Path(demo_images(1)[0])
    monkeypatch.chdir(image.parent)
    index = tmp_path / "index"
    assert fe_index(["build", str(index), image.name, "--model", str(tiny_model)]) == 0
    assert fe_index(["add", str(index), str(image), "--model", str(tiny_model)]) == 0
    assert "added 0, replaced 0 changed, 1 already indexed" in capsys.readouterr().out
    assert [item.path for item in Gallery.load(index).items.values()] == [str(image)]
    assert fe_extract([str(tiny_model), str(image.parent), "-o", str(tmp_path / "features")]) == 0
    siblings = len(list(image.parent.glob("*.jpg")))
    for expected in (f"added {siblings - 1}, replaced 0 changed, 1 already indexed",
                     f"added 0, replaced 0 changed, {siblings} already indexed"):
        assert fe_index(["add", str(index), "--features", str(tmp_path / "features")]) == 0
        assert expected in capsys.readouterr().out
    assert len(Gallery.load(index)) == siblings
    (tmp_path / "features" / "extract.json").unlink()
    assert fe_index(["add", str(index), "--features", str(tmp_path / "features")]) == 1
    assert "has no extract.json" in capsys.readouterr().err


def test_search_json_answers_every_query_in_order(tiny_model, tmp_path, capsys):
    # 8: an unreadable query was left out of `fe_search --json`, which exited 0
    images = demo_images(5)
    index = tmp_path / "index"
    assert fe_index(["build", str(index), *images, "--model", str(tiny_model)]) == 0
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    capsys.readouterr()
    assert fe_search([str(tiny_model), str(index), images[0], str(broken), images[1], "--json"]) == 1
    out, err = capsys.readouterr()
    found = json.loads(out)
    assert [query["query"] for query in found] == [images[0], str(broken), images[1]]
    assert "error" in found[1] and found[0]["answers"][0]["path"] == images[0]
    assert f"unreadable, not searched: {broken}" in err


def test_removing_nothing_is_an_error_and_saves_nothing(tiny_model, tmp_path, capsys):
    # low: `fe_index remove` of what matches nothing exited 0 and wrote a new version (pruning a real one)
    index = tmp_path / "index"
    assert fe_index(["build", str(index), *demo_images(3), "--model", str(tiny_model)]) == 0
    for selector in (["--id", "99"], ["--path", "nowhere.jpg"], ["--label", "no such label"]):
        assert fe_index(["remove", str(index), *selector]) == 1
        assert "nothing to remove: no vector matches" in capsys.readouterr().err
    assert (index / "CURRENT").read_text() == "v000001" and (index / "v000001").is_dir()


def test_counts_add_up_with_unreadable_and_changed_images(tiny_model, tmp_path, capsys):
    # low: counts such as "-3 already indexed" and "added -1": unreadable images were counted twice
    folder = tmp_path / "images"
    folder.mkdir()
    sources = demo_images(4)
    for i, source in enumerate(sources): shutil.copy(source, folder / f"{i}.jpg")
    index = tmp_path / "index"
    assert fe_index(["build", str(index), str(folder), "--model", str(tiny_model)]) == 0
    (folder / "0.jpg").write_bytes(b"changed, and no image any more")  # changed and unreadable: keeps its vector
    shutil.copy(sources[0], folder / "1.jpg")  # changed and readable: replaced
    for i in (4, 5, 6): (folder / f"{i}.jpg").write_bytes(b"broken")  # new and unreadable
    capsys.readouterr()
    assert fe_index(["add", str(index), str(folder), str(folder / "2.jpg"), "--model", str(tiny_model)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("added 0, replaced 1 changed, 2 already indexed, 1 listed twice, 4 unreadable"), out
    assert len(Gallery.load(index)) == 4


def test_read_only_gallery_fails_before_extracting(tiny_model, tmp_path, monkeypatch, capsys):
    # low: a read-only gallery failed with a traceback after the whole extraction
    index = tmp_path / "index"
    assert fe_index(["build", str(index), *demo_images(2), "--model", str(tiny_model)]) == 0
    real_open = os.open
    def read_only(path, flags, *args):
        if str(path).endswith(".lock") and flags & os.O_RDWR: raise PermissionError(13, "Permission denied", path)
        return real_open(path, flags, *args)
    monkeypatch.setattr(os, "open", read_only)
    monkeypatch.setattr(FeatureExtractor, "extract", lambda *a, **k: pytest.fail("extracted before the lock"))
    capsys.readouterr()
    assert fe_index(["add", str(index), *demo_images(4), "--model", str(tiny_model)]) == 1
    err = capsys.readouterr().err
    assert "the gallery folder cannot be written (Permission denied)" in err and "Traceback" not in err


def test_a_path_that_starts_with_a_hash_is_listed(tiny_model, tmp_path, capsys):
    # low: a path starting with `#` was silently taken as a comment
    shutil.copy(demo_images(1)[0], tmp_path / "#1.jpg")
    listing = tmp_path / "list.tsv"
    listing.write_text("# the gallery\n#1.jpg\thash\n", encoding="utf-8")
    assert fe_index(["build", str(tmp_path / "index"), str(listing), "--model", str(tiny_model)]) == 0
    assert [item.path for item in Gallery.load(tmp_path / "index").items.values()] == [str(tmp_path / "#1.jpg")]


# ---- weights and checkpoints are read without running code (2) ----

class WritesAFile:
    "Unpickling this object opens `path` for writing: what a crafted weights file could do instead."
    def __init__(self, path): self.path = str(path)
    def __reduce__(self): return (open, (self.path, "w"))


def craft(path: Path, content) -> Path:
    "A pickle of `content` at `path`, as a crafted download would be."
    path.write_bytes(pickle.dumps(content, protocol=4))
    return path


def crafted_checkpoint(folder: Path, name: str, evil_part: str, marker: Path, digests: bool = True) -> Path:
    "A checkpoint of harmless parts but `evil_part`, with a matching `.sha256` (`digests`), as an attacker writes."
    prefix = folder / name
    plain = {"pdparams": {"w": np.zeros(2)}, "pdopt": {"LR_Scheduler": {}}, "pdstates": {"epoch": 0}}
    for ext, content in plain.items():
        craft(Path(f"{prefix}.{ext}"), {"w": WritesAFile(marker)} if ext == evil_part else content)
    if digests:
        Path(f"{prefix}.sha256").write_text("".join(f"{file_digest(f'{prefix}.{ext}')}  {name}.{ext}\n"
                                                    for ext in ("pdparams", "pdopt", "pdstates")))
    return prefix


def test_crafted_weights_and_checkpoints_are_refused_and_run_nothing(tmp_path, capsys):
    # 2: paddle.load unpickled Global.pretrained_model, Arch.Backbone.pretrained, fe_export's weights and every part of
    # Global.checkpoints: a crafted file ran code; .pdstates was unpickled before its digests were checked
    marker = tmp_path / "pwned"
    evil = craft(tmp_path / "evil.pdparams", {"backbone.stem.0.conv.weight": WritesAFile(marker)})
    runs = {"fe_export": (fe_export, [f"Global.pretrained_model={evil}"]),
            "fe_train pretrained_model": (fe_train, [f"Global.pretrained_model={evil}"]),
            "fe_train backbone": (fe_train, [f"Arch.Backbone.pretrained={evil}"]),
            "fe_eval": (fe_eval, [f"Global.pretrained_model={evil}"])}
    for ext in ("pdparams", "pdopt", "pdstates"):
        prefix = crafted_checkpoint(tmp_path, ext, ext, marker)
        runs[f"fe_train checkpoints .{ext}"] = (fe_train, [f"Global.checkpoints={prefix}"])
    runs["fe_train old checkpoint"] = (fe_train, [
        f"Global.checkpoints={crafted_checkpoint(tmp_path, 'old', 'pdstates', marker, digests=False)}"])
    for what, (command, overrides) in runs.items():
        status = command(demo_train_arguments(tmp_path / what.replace(" ", "_"), *overrides))
        err = capsys.readouterr().err
        assert status == 1, (what, err)
        assert "refused, and nothing in it was run: it names io.open" in err, (what, err)
        assert "trained with?" not in err, (what, err)
        assert "Traceback" not in err and not marker.exists(), what


def test_a_checkpoint_whose_parts_do_not_match_its_digests_is_not_read(tmp_path):
    prefix = crafted_checkpoint(tmp_path, "latest", "pdparams", tmp_path / "pwned")
    Path(f"{prefix}.pdparams").write_bytes(pickle.dumps({"w": np.ones(2)}))  # changed after the digests were written
    model = paddle_linear()
    with pytest.raises(ValueError, match="inconsistent: pdparams do not match the digests"):
        load_checkpoint(prefix, model)


def paddle_linear():
    import paddle
    return paddle.nn.Linear(2, 2)


def test_reference_weights_and_own_checkpoints_still_load(shared, tmp_path, capsys):
    import paddle
    reference = shared / "reference/paddleclas/recmodel.pdparams"
    state, _ = read_weights(reference)
    expected = paddle.load(str(reference))
    assert state.keys() == expected.keys()
    assert all(np.array_equal(state[k], expected[k].numpy()) for k in state)
    run = tmp_path / "run"
    assert fe_train(demo_train_arguments(run, "Global.epochs=1", "Global.eval_during_train=False")) == 0
    assert (run / "latest.sha256").is_file()
    resumed = demo_train_arguments(tmp_path / "resumed", "Global.epochs=2", "Global.eval_during_train=False",
                                   f"Global.checkpoints={run / 'latest'}")
    assert fe_train(resumed) == 0
    assert "resumed from" in capsys.readouterr().out + (tmp_path / "resumed" / "train.log").read_text()


# ---- ONNX export installs nothing at run time (3) ----

EXPORT_WATCHED = """import sys, warnings
warnings.simplefilter("ignore")
import paddle, feature_extraction.cli, feature_extraction.export  # importing is not exporting
if "--hide-graphsurgeon" in sys.argv:  # as if the onnx extra were installed without it
    sys.argv.remove("--hide-graphsurgeon")
    sys.modules["onnx_graphsurgeon"] = None
spawned = []
def record(event, args):
    if event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty"):
        spawned.append(f"{event} {args}")
sys.addaudithook(record)
status = feature_extraction.cli.fe_export(sys.argv[1:])
print("spawned:", spawned)
sys.exit(status)
"""


def test_onnx_export_spawns_nothing_and_folds_constants(tmp_path):
    # 3: paddle2onnx forced POLYGRAPHY_AUTOINSTALL_DEPS=1, so Polygraphy ran `pip install onnx_graphsurgeon` at run
    # time; offline it stalled and silently wrote an unfolded model
    import onnx
    import paddle
    import paddle2onnx
    from polygraphy.backend.onnx import fold_constants
    from feature_extraction.config import load_config
    from feature_extraction.model import build_model, save_weights
    paddle.seed(0)
    weights = save_weights(build_model(load_config(demo_data().parent / "demo.yaml")["Arch"]), tmp_path / "weights")
    offline = os.environ | {"PATH": str(tmp_path / "no-such-folder"), "PIP_NO_INDEX": "1"}
    offline.pop("POLYGRAPHY_AUTOINSTALL_DEPS", None)
    def export(out, *extra):
        arguments = ["-c", demo_data().parent / "demo.yaml", "-o", f"Global.pretrained_model={weights}",
                     f"Global.save_inference_dir={out}", "--format", "onnx", *extra]
        done = subprocess.run([sys.executable, "-c", EXPORT_WATCHED, *map(str, arguments)], env=offline,
                              capture_output=True, text=True, timeout=600)
        return done.returncode, done.stdout, done.stderr
    status, out, err = export(tmp_path / "model")
    assert status == 0, err
    assert "spawned: []" in out, out
    nodes = len(onnx.load(str(tmp_path / "model/inference.onnx")).graph.node)
    folded_again = fold_constants(onnx.load(str(tmp_path / "model/inference.onnx")))
    assert len(folded_again.graph.node) == nodes  # nothing left to fold
    model_dir = tmp_path / "model"
    paddle2onnx.export(str(model_dir / "inference.json"), str(model_dir / "inference.pdiparams"),
                       str(tmp_path / "raw.onnx"), opset_version=11, optimize_tool=None)
    raw = len(onnx.load(str(tmp_path / "raw.onnx")).graph.node)
    assert nodes < raw, (nodes, raw)
    print(f"ONNX nodes: {raw} converted, {nodes} folded")
    status, out, err = export(tmp_path / "unfolded", "--hide-graphsurgeon")
    assert status == 1 and "spawned: []" in out, (out, err)
    assert "error: ONNX export needs onnx_graphsurgeon: pip install 'feature_extraction[onnx]'" in err, err
    assert not (tmp_path / "unfolded").exists()


# ---- Paddle only where it is needed (9) ----

WITHOUT_PADDLE = """import sys
sys.modules["paddle"] = None  # as if PaddlePaddle were not installed: `import paddle` fails, find_spec finds nothing
from feature_extraction.cli import {command}
try: status = {command}(sys.argv[1:])
except SystemExit as e: status = e.code  # argparse, after --help
print("paddle imported:", any(name == "paddle" or name.startswith("paddle.") for name, module in sys.modules.items()
                              if module is not None))
sys.exit(status)
"""


def without_paddle(command: str, *argv) -> tuple:
    "(exit status, stdout, stderr) of `command` run where PaddlePaddle cannot be imported."
    done = subprocess.run([sys.executable, "-c", WITHOUT_PADDLE.format(command=command), *map(str, argv)],
                          capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout, done.stderr


def test_galleries_and_onnx_models_work_without_paddle(tiny_model, tmp_path):
    # 9: feature_extraction.gallery could not be imported without PaddlePaddle, and every command, --help included,
    # imported it (about 2 s and 420 MB)
    from feature_extraction.export import to_onnx
    onnx_model = tmp_path / "onnx_model"
    shutil.copytree(tiny_model, onnx_model)
    to_onnx(onnx_model)
    for name in ("inference.json", "inference.pdiparams"): (onnx_model / name).unlink()
    done = subprocess.run([sys.executable, "-c", "import sys\nsys.modules['paddle'] = None\n"
                           "import feature_extraction.gallery, feature_extraction.inference, feature_extraction.cli"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    images = demo_images(6)
    status, out, err = without_paddle("fe_index", "build", tmp_path / "index", *images[:5], "--model", onnx_model)
    assert status == 0 and out.startswith("added 5, ") and "paddle imported: False" in out, (out, err)
    status, out, err = without_paddle("fe_search", onnx_model, tmp_path / "index", images[0], "--json")
    assert status == 0 and "paddle imported: False" in out, err
    assert json.loads(out[:out.rindex("]") + 1])[0]["answers"][0]["path"] == images[0]
    for command in ("fe_search", "fe_index", "fe_extract", "fe_train", "fe_export"):
        status, out, err = without_paddle(command, "--help")
        assert status == 0 and "usage:" in out and "paddle imported: False" in out, (command, out, err)
    for command in ("fe_export", "fe_train", "fe_eval"):
        status, out, err = without_paddle(command, "-c", demo_data().parent / "demo.yaml")
        assert status == 1 and "needs PaddlePaddle (pip install 'feature_extraction[cpu]'" in err, err


def test_an_image_of_too_many_pixels_is_refused_before_decoding(tiny_model, tmp_path, capsys):
    # low: the library had no pixel limit of its own; a 10000x10000 PNG took 1 GB to decode
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(grey_png(10000))
    assert fe_index(["build", str(tmp_path / "index"), *demo_images(2), str(bomb), "--model", str(tiny_model)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("added 2, replaced 0 changed, 0 already indexed, 1 unreadable"), out
    assert f"unreadable, not added: {bomb}" in err and "10000 x 10000 pixels is more than" in err, err


def test_an_output_folder_that_cannot_be_made_is_one_error_line(tiny_model, tmp_path, capsys):
    # every fe_* error of bad input is one report and status 1: here an output path under a file (an OSError)
    (tmp_path / "a file").write_text("")
    runs = [(fe_train, demo_train_arguments(tmp_path / "a file" / "run")),
            (fe_extract, [str(tiny_model), demo_images(1)[0], "-o", str(tmp_path / "a file" / "features")])]
    for command, arguments in runs:
        assert command(arguments) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
