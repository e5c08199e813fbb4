"""The gallery on real features: those of the icons test set (PaddleClas's reference weights, exported at 64x64).
Flat search equals brute force, HNSW32 and IVF reach recall@10 >= 0.95 against it, ids survive add/remove/save/load
round trips in other processes, and a save killed half-way (before or after its version folder is in place) leaves
the previous version current and loadable.
nbs/14_gallery.ipynb explains the design."""
import subprocess
import sys

import numpy as np
import pytest

from feature_extraction.gallery import Gallery, Item
from feature_extraction.metrics import knn


def recall_at_10(got: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(e)) / 10 for g, e in zip(got, exact)]))


def test_flat_equals_brute_force(icons):
    feats, labels, paths = icons
    g = Gallery(512, "Flat", num_threads=2)
    g.add(feats[1000:], [Item(path, str(label)) for path, label in zip(paths[1000:], labels[1000:])])
    g.remove(ids=range(0, 4031, 7))  # ids no longer match positions
    kept = np.setdiff1d(np.arange(4031), np.arange(0, 4031, 7))
    res = g.search(feats[:1000], k=10)
    scores, idx = knn(feats[:1000], feats[1000:][kept], 10)
    np.testing.assert_array_equal(res.ids, kept[idx])
    np.testing.assert_array_equal(res.scores, scores)


@pytest.mark.parametrize("index_type", ["HNSW32", "IVF64,Flat"])
def test_approximate_recall_at_10(icons, index_type):
    feats, labels, paths = icons
    g = Gallery(512, index_type, num_threads=2)
    g.add(feats[1000:], [Item(path, str(label)) for path, label in zip(paths[1000:], labels[1000:])])
    exact = knn(feats[:1000], feats[1000:], 10)[1]
    recall = recall_at_10(g.search(feats[:1000], k=10).ids, exact)
    print(f"{index_type}: recall@10 {recall:.4f}")
    assert recall >= 0.95, recall


def test_ids_stable_across_processes(icons, tmp_path):
    feats, labels, paths = icons
    g = Gallery(512, "HNSW32", num_threads=2)
    g.add(feats[:300], [Item(path, str(label)) for path, label in zip(paths[:300], labels[:300])])
    g.search(feats[:1])
    g.remove(ids=range(0, 300, 3))
    g.save(tmp_path / "g")
    code = f"""
import numpy as np
from feature_extraction.gallery import Gallery, Item
g = Gallery.load({str(tmp_path / 'g')!r})
feats = np.load({str(tmp_path / 'f.npy')!r})
assert g.next_id == 300 and len(g) == 200
new = g.add(feats[:3], [Item("again.png", "x")] * 3)
assert new.tolist() == [300, 301, 302], new
g.remove(ids=[1]); g.save({str(tmp_path / 'g')!r})
"""
    np.save(tmp_path / "f.npy", feats[:3])
    subprocess.run([sys.executable, "-c", code], check=True)
    h = Gallery.load(tmp_path / "g")
    assert sorted(h.items) == sorted(set(range(300)) - set(range(0, 300, 3)) - {1} | {300, 301, 302})
    res = h.search(feats[:300], k=10).ids
    assert not np.isin(res, list(range(0, 300, 3)) + [1]).any()  # removed images never come back


SAVE_AND_DIE = """
import os, signal, sys
import numpy as np
from feature_extraction import gallery
g = gallery.Gallery.load(sys.argv[1])
g.add(np.load(sys.argv[2]), [gallery.Item("new.png", "new")] * 5)
def die(*args):
    os.kill(os.getpid(), signal.SIGKILL)
real_write_meta = gallery._write_meta
def write_meta_then_die(items, path):
    real_write_meta(items, path)
    die()
if sys.argv[3] == "meta":  # killed after the vectors, index and metadata of the new version are written
    gallery._write_meta = write_meta_then_die
else:  # killed once the new version folder is in place, before CURRENT names it
    gallery.write_atomic = die
g.save(sys.argv[1])
"""


def save_and_kill(icons, tmp_path, where: str):
    "A saved gallery of 50 vectors, then a process that adds 5 and is killed in its save (`where`: meta or current)."
    feats, labels, paths = icons
    g = Gallery(512, "Flat")
    g.add(feats[:50], [Item(path, str(label)) for path, label in zip(paths[:50], labels[:50])])
    g.save(tmp_path / "g")
    np.save(tmp_path / "new.npy", feats[50:55])
    done = subprocess.run([sys.executable, "-c", SAVE_AND_DIE, str(tmp_path / "g"), str(tmp_path / "new.npy"), where])
    assert done.returncode == -9
    return tmp_path / "g"


def test_killed_save_leaves_the_previous_version(icons, tmp_path):
    root = save_and_kill(icons, tmp_path, "meta")
    assert any(p.name.endswith(".tmp") for p in root.iterdir())  # the half-written version is there...
    h = Gallery.load(root)  # ...but CURRENT still names the complete one
    assert len(h) == 50 and h.next_id == 50
    h.save(root)  # the next save clears the leftovers
    assert sorted(p.name for p in root.iterdir()) == [".lock", "CURRENT", "v000001", "v000002"]


def test_save_killed_before_current_leaves_the_previous_version(icons, tmp_path):
    root = save_and_kill(icons, tmp_path, "current")
    assert sorted(p.name for p in root.iterdir()) == [".lock", "CURRENT", "v000001", "v000002"]
    assert (root / "CURRENT").read_text() == "v000001"  # the complete new folder is not current yet
    h = Gallery.load(root)
    assert len(h) == 50 and h.next_id == 50
    assert h.save(root).name == "v000003"  # a later save never reuses the orphan's name
    assert sorted(p.name for p in root.iterdir()) == [".lock", "CURRENT", "v000002", "v000003"]
    assert len(Gallery.load(root)) == 50
