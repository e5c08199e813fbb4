"""Leak-aware evaluation (nbs/07a_leaks.ipynb, the engine, fe_eval): planted overlaps between the bundled demo's
training and test lists (a shared class, an image in both the query and the gallery list without ids, a copy of a
training image) each give a LeakWarning and the count of what was left out; fe_eval reports them beside its
metrics, and `Global.leak_check: warn` keeps the images and counts them."""
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import demo_train_arguments

from feature_extraction.cli import fe_eval
from feature_extraction.config import load_config
from feature_extraction.demo import demo_data
from feature_extraction.engine import evaluate_pixels
from feature_extraction.leaks import find_leaks, warn_leaks
from feature_extraction.data import read_label_file
from feature_extraction.metrics import LeakWarning

DEMO = demo_data()
TEST_CLASSES = 20  # of the demo's 150 test classes: enough to evaluate, quick to read


@pytest.fixture
def planted(tmp_path) -> Path:
    "A copy of the demo's lists (the first test classes), with the images where they are, and nothing planted yet."
    for name in ("train_list.txt", "train_classes.txt", "test_classes.txt"):
        shutil.copy(DEMO / name, tmp_path / name)
    lines = [line for line in (DEMO / "test_list.txt").read_text().splitlines() if int(line.split()[1]) < TEST_CLASSES]
    (tmp_path / "test_list.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "images").symlink_to(DEMO / "images")
    return tmp_path


def entries(folder: Path, query: str = "test_list.txt", gallery: str = "test_list.txt") -> tuple:
    "The demo config's (training, query, gallery) DataLoader entries, on the lists of `folder`."
    config = load_config(DEMO.parent / "demo.yaml")
    loaders = config["DataLoader"]
    out = []
    for entry, name in ((loaders["Train"], "train_list.txt"), (loaders["Eval"]["Query"], query),
                        (loaders["Eval"]["Gallery"], gallery)):
        entry["dataset"] |= {"image_root": str(folder), "cls_label_path": str(folder / name)}
        out.append(entry)
    return tuple(out)


def evaluate_with_leaks(folder: Path, query: str = "test_list.txt", gallery: str = "test_list.txt",
                        mode: str = "exclude") -> tuple:
    "(warnings, report, raw-pixel metrics) of the planted lists, the leaks found and left out as the engine does."
    train_entry, query_entry, gallery_entry = entries(folder, query, gallery)
    same = query == gallery
    lists = [read_label_file(folder / name, folder) for name in (query, gallery)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = find_leaks(read_label_file(folder / "train_list.txt", folder, relabel=True), lists[0],
                            None if same else lists[1])
        warn_leaks(report, mode)
        metrics = evaluate_pixels(query_entry, None if same else gallery_entry, size=8, leaks=report, leak_check=mode)
    return [w for w in caught if w.category is LeakWarning], report, metrics


def test_nothing_planted_nothing_found(planted):
    caught, report, metrics = evaluate_with_leaks(planted)
    assert caught == [] and report.counts() == {} and "num_excluded_images" not in metrics


def test_shared_class(planted):
    names = (planted / "test_classes.txt").read_text().splitlines()
    train_name = (planted / "train_classes.txt").read_text().splitlines()[5].split(" ", 1)[1]
    names[3] = f"3 {train_name}"  # test class 3 is now named as a training class
    (planted / "test_classes.txt").write_text("\n".join(names) + "\n")
    in_class = sum(int(line.split()[1]) == 3 for line in (planted / "test_list.txt").read_text().splitlines())
    caught, report, metrics = evaluate_with_leaks(planted)
    assert len(caught) == 1 and f"1 test classes are training classes too ({train_name})" in str(caught[0].message)
    assert report.shared_classes == [train_name]
    assert metrics["num_shared_classes"] == 1 and metrics["num_excluded_images"] == in_class
    clean = evaluate_with_leaks(planted, mode="ignore")[2]
    assert metrics["num_queries"] == clean["num_queries"] - in_class


def test_copy_of_a_training_image(planted):
    train_image = (planted / "train_list.txt").read_text().split()[0]
    copy = planted / "copy_of_a_training_image.jpg"
    shutil.copy(planted / train_image, copy)
    with open(planted / "test_list.txt", "a") as f:
        f.write(f"{copy.name} 0 999999\n")
    caught, report, metrics = evaluate_with_leaks(planted)
    assert len(caught) == 1 and "1 test images are copies of training images: left out" in str(caught[0].message)
    assert metrics["num_excluded_images"] == 1
    kept = evaluate_with_leaks(planted, mode="warn")
    assert "kept" in str(kept[0][0].message) and kept[2]["num_leaked_images"] == 1
    assert kept[2]["num_queries"] == metrics["num_queries"] + 1


def test_image_in_query_and_gallery_without_ids(planted):
    lines = (planted / "test_list.txt").read_text().splitlines()
    two_columns = [" ".join(line.split()[:2]) for line in lines]
    (planted / "query_list.txt").write_text("\n".join(two_columns[::2]) + "\n")
    (planted / "gallery_list.txt").write_text("\n".join(two_columns[1::2] + two_columns[:6:2]) + "\n")  # 3 shared
    caught, report, metrics = evaluate_with_leaks(planted, "query_list.txt", "gallery_list.txt")
    assert len(caught) >= 1
    assert "3 query images are also gallery images, and no unique ids tell them apart" in str(caught[0].message)
    assert metrics["num_shared_images"] == 3 and report.num_shared_images() == 3
    kept = evaluate_with_leaks(planted, "query_list.txt", "gallery_list.txt", mode="warn")[2]
    assert kept["recall1"] > metrics["recall1"]  # kept, the shared images find themselves first
    ids = report.shared_groups
    assert np.flatnonzero(ids[0] >= 0).tolist() == [0, 1, 2]


def test_fe_eval_reports_the_leaks(planted, tmp_path, capsys):
    train_image = (planted / "train_list.txt").read_text().split()[0]
    shutil.copy(planted / train_image, planted / "copy.jpg")
    with open(planted / "test_list.txt", "a") as f:
        f.write("copy.jpg 0 999999\n")
    arguments = demo_train_arguments(tmp_path / "eval", data=planted)
    with pytest.warns(LeakWarning, match="1 test images are copies of training images: left out"):
        assert fe_eval(arguments) == 0
    printed = capsys.readouterr().out
    assert "num_excluded_images: 1" in printed and "recall1:" in printed, printed
    assert "leak check: 1 test images are copies of training images" in (tmp_path / "eval/eval.log").read_text()
