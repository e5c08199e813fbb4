"""The threaded batch loader: the evaluation sampler's shares, batches in sampler order and independent of the
number of threads, unreadable files replaced within their label or skipped and logged once, errors that name
their batch, and threads that end when the loop is left (break, exception, garbage collection, Ctrl-C).
The notebook nbs/10_loader.ipynb explains the design."""
import gc
import itertools
import logging
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from feature_extraction.data import ImageNetDataset, VeriWild, load_image
from feature_extraction.loader import Batch, BatchLoader, DistributedBatchSampler
from feature_extraction.sampler import SAMPLERS, PKSampler
from feature_extraction.transforms import Pipeline

# Random geometric ops at a small size, so that tests of the loader's logic are fast and still check that every
# sample's parameters follow its index
SMALL_OPS = [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": [36, 36]}},
             {"RandFlipImage": {"flip_code": 1}}, {"Pad": {"padding": 2}}, {"RandCropImageV2": {"size": [36, 36]}},
             {"ResizeImage": {"size": [32, 32]}}, {"NormalizeImage": {}}]
BAD_NAMES = ["truncated.jpg", "empty.jpg", "text.jpg", "missing.jpg"]


@pytest.fixture(scope="module")
def small_pipeline():
    return Pipeline.from_config(SMALL_OPS)


@pytest.fixture(scope="module")
def icons_train(shared):
    return ImageNetDataset(shared / "datasets/icons", shared / "datasets/icons/train_list.txt")


@pytest.fixture(scope="module")
def mixed(shared, tmp_path_factory):
    """Classes 0..7 of the icons training list with four broken files under labels 0, 0, 1 and 2: a truncated JPEG,
    an empty file, a text file named .jpg and a file that does not exist. Returns (dataset, set of bad paths)."""
    root, tmp = shared / "datasets/icons", tmp_path_factory.mktemp("mixed")
    rows = [line.split() for line in (root / "train_list.txt").read_text().splitlines()]
    rows = [(p, int(c)) for p, c in rows if int(c) < 8]
    good = (root / rows[0][0]).read_bytes()
    (tmp / "truncated.jpg").write_bytes(good[:len(good) // 2])
    (tmp / "empty.jpg").write_bytes(b"")
    (tmp / "text.jpg").write_text("this is not an image\n")
    bad = [str(tmp / n) for n in BAD_NAMES]
    rows = rows[:5] + [(bad[0], 0)] + rows[5:20] + [(bad[1], 0), (bad[2], 1)] + rows[20:] + [(bad[3], 2)]
    (tmp / "list.txt").write_text("".join(f"{p} {c}\n" for p, c in rows))
    return ImageNetDataset(root, tmp / "list.txt", check_files=False), set(bad)


def bad_indices(dataset, bad):
    return [i for i, p in enumerate(dataset.paths) if p in bad]


def loader_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith("BatchLoader")]


# ---- DistributedBatchSampler

@pytest.mark.parametrize("n, world, batch, shuffle",
                         [(10, 3, 4, False), (5031, 4, 64, True), (7, 8, 2, True), (1, 1, 5, False)])
def test_ranks_are_disjoint_and_cover_everything(n, world, batch, shuffle):
    samplers = [DistributedBatchSampler(range(n), batch, shuffle=shuffle, seed=3, rank=r, world_size=world)
                for r in range(world)]
    for s in samplers: s.set_epoch(2)
    shares = [[i for b in s for i in b] for s in samplers]
    assert sorted(sum(shares, [])) == list(range(n))
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    for s, share in zip(samplers, shares):
        batches = list(s)
        assert len(batches) == len(s) and all(len(b) == batch for b in batches[:-1])
        assert all(type(i) is int for b in batches for i in b)
        if not shuffle and share: assert share == list(range(share[0], share[0] + len(share)))  # contiguous


def test_shuffle_is_one_permutation_per_epoch():
    s = DistributedBatchSampler(range(100), 10, shuffle=True, seed=1, rank=0, world_size=1)
    epochs = []
    for e in (0, 1, 0):
        s.set_epoch(e)
        epochs.append(sum(list(s), []))
    assert epochs[0] == epochs[2] != epochs[1]
    assert sorted(epochs[1]) == list(range(100))
    ordered = DistributedBatchSampler(range(100), 10)
    ordered.set_epoch(5)
    assert sum(list(ordered), []) == list(range(100))


def test_drop_last_and_empty_shares():
    dropped = DistributedBatchSampler(range(10), 4, drop_last=True, rank=0, world_size=1)
    assert list(dropped) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert list(DistributedBatchSampler(range(10), 4, rank=0, world_size=1))[-1] == [8, 9]
    s = DistributedBatchSampler(range(2), 4, rank=0, world_size=3)
    assert (len(s), list(s)) == (0, [])


def test_built_from_the_eval_config_with_the_launchers_rank(shared, monkeypatch):
    cfg = yaml.safe_load((shared / "reference/paddleclas/GeneralRecognitionV2_PPLCNetV2_base.yaml").read_text())
    sampler = SAMPLERS.build(cfg["DataLoader"]["Eval"]["Gallery"]["sampler"], labels=np.zeros(1000, np.int64))
    assert isinstance(sampler, DistributedBatchSampler) and len(sampler) == 16
    monkeypatch.setenv("PADDLE_TRAINER_ID", "1")
    monkeypatch.setenv("PADDLE_TRAINERS_NUM", "2")
    assert sum(list(sampler), []) == list(range(500, 1000))  # resolved when iterated, not when built
    assert "rank 1 of 2 takes [500, 1000)" in repr(sampler)


def test_sampler_argument_errors():
    with pytest.raises(ValueError, match="batch_size must be a positive integer"): DistributedBatchSampler(range(4), 0)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"): DistributedBatchSampler(range(4), 2, seed=-1)
    with pytest.raises(ValueError, match="rank must be in 0..world_size - 1 = 1"):
        DistributedBatchSampler(range(4), 2, rank=2, world_size=2)
    with pytest.raises(ValueError, match="world_size must be a positive integer"):
        DistributedBatchSampler(range(4), 2, rank=0, world_size=0)
    with pytest.raises(TypeError, match="labels must have one entry per sample"): DistributedBatchSampler(5, 2)
    with pytest.raises(ValueError, match="epoch must be an integer >= 0"):
        DistributedBatchSampler(range(4), 2).set_epoch(-1)


# ---- batches

def test_batches_follow_the_sampler_and_can_be_rebuilt(icons_train, small_pipeline):
    sampler = PKSampler(icons_train.labels, batch_size=32, sample_per_id=4, seed=5)
    loader = BatchLoader(icons_train, small_pipeline, sampler, num_workers=2, prefetch=1, seed=9)
    loader.set_epoch(3)
    batches = list(itertools.islice(loader, 6))
    assert [b.indices.tolist() for b in batches] == list(itertools.islice(sampler, 6))
    b = batches[4]
    assert isinstance(b, Batch) and b.images.shape == (32, 3, 32, 32) and b.images.dtype == np.float32
    assert b.images.flags.c_contiguous and b.labels.dtype == b.indices.dtype == np.int64
    assert b.unique_ids is None and b.skipped == []
    np.testing.assert_array_equal(b.labels, icons_train.labels[b.indices])
    reduce_to = getattr(small_pipeline, "reduce_to", None)  # the loader decodes JPEGs reduced where the pipeline allows
    rebuilt = small_pipeline([load_image(icons_train.paths[i], reduce_to) for i in b.indices],
                             indices=b.indices.tolist(), seed=9, epoch=3)
    np.testing.assert_array_equal(rebuilt, b.images)


def test_unique_ids_come_along(shared, small_pipeline):
    test_set = VeriWild(shared / "datasets/icons", shared / "datasets/icons/test_list.txt")
    sampler = DistributedBatchSampler(test_set.labels, 50, rank=3, world_size=4)
    batches = list(itertools.islice(BatchLoader(test_set, small_pipeline, sampler, num_workers=2, on_error="skip"), 3))
    start = 3 * len(test_set) // 4
    ids = np.concatenate([b.unique_ids for b in batches])
    np.testing.assert_array_equal(ids, test_set.unique_ids[start:start + 150])
    assert all(b.unique_ids.dtype == np.int64 for b in batches)


@pytest.mark.parametrize("on_error", ["replace", "skip"])
def test_same_batches_whatever_the_number_of_threads(mixed, small_pipeline, on_error):
    dataset, _ = mixed
    def run(num_workers, prefetch):
        sampler = PKSampler(dataset.labels, batch_size=16, sample_per_id=4, seed=2)
        loader = BatchLoader(dataset, small_pipeline, sampler, num_workers=num_workers, prefetch=prefetch,
                             on_error=on_error)
        loader.set_epoch(1)
        return list(loader)
    one, many = run(1, 0), run(3, 5)
    assert len(one) == len(many) > 0
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.images, b.images)
        assert a.skipped == b.skipped


# ---- unreadable files

def test_replacement_keeps_the_label_structure_and_repeats(mixed, small_pipeline):
    dataset, bad = mixed
    bad_idx = set(bad_indices(dataset, bad))
    sampler = PKSampler(dataset.labels, batch_size=16, sample_per_id=4, seed=0)
    def run(epoch):
        loader = BatchLoader(dataset, small_pipeline, sampler, num_workers=2, seed=4)
        loader.set_epoch(epoch)
        return list(sampler), list(loader), loader
    asked, got, loader = run(0)
    replaced = 0
    for want, b in zip(asked, got):
        np.testing.assert_array_equal(b.labels, dataset.labels[want])  # P x K kept
        assert not bad_idx & set(b.indices.tolist())
        for w, i in zip(want, b.indices.tolist()):
            if w in bad_idx:
                replaced += 1
                # an image of the label that the batch did not have, since every class has more than K images
                assert i not in want and dataset.labels[i] == dataset.labels[w]
            else: assert i == w
    assert replaced > 0
    assert set(loader.bad_files) <= bad
    again = run(0)[1]
    for a, b in zip(got, again):
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.images, b.images)


def test_replacement_outside_the_label_when_it_has_no_readable_image(tmp_path, shared, small_pipeline):
    root = shared / "datasets/icons"
    good = [line.split()[0] for line in (root / "train_list.txt").read_text().splitlines()[:3]]
    (tmp_path / "list.txt").write_text(f"{good[0]} 0\n{good[1]} 0\n{tmp_path}/gone1.jpg 1\n{tmp_path}/gone2.jpg 1\n"
                                       f"{good[2]} 2\n")
    dataset = ImageNetDataset(root, tmp_path / "list.txt", check_files=False)
    batch = next(iter(BatchLoader(dataset, small_pipeline, [[2, 3]], num_workers=1)))
    assert set(batch.indices.tolist()) <= {0, 1, 4} and len(batch) == 2


def test_skip_mode_reports_what_it_left_out(mixed, small_pipeline):
    dataset, bad = mixed
    sampler = DistributedBatchSampler(dataset.labels, 10)
    batches = list(BatchLoader(dataset, small_pipeline, sampler, num_workers=2, on_error="skip"))
    assert [sorted(b.indices.tolist() + [s[0] for s in b.skipped]) for b in batches] == list(sampler)
    skipped = [s for b in batches for s in b.skipped]
    assert {s[1] for s in skipped} == bad and [s[0] for s in skipped] == bad_indices(dataset, bad)
    assert all(dataset.paths[i] == p and p in m for i, p, m in skipped)
    assert all(len(b.images) == len(b.indices) == len(b.labels) for b in batches)


def test_a_batch_of_only_bad_files_is_yielded_empty(mixed, small_pipeline):
    dataset, bad = mixed
    only_bad = bad_indices(dataset, bad)
    batches = list(BatchLoader(dataset, small_pipeline, [[0, 1], only_bad, [2]], num_workers=2, on_error="skip"))
    assert [len(b) for b in batches] == [2, 0, 1]
    assert batches[1].images.shape == (0, 3, 32, 32) and batches[1].images.dtype == np.float32
    assert batches[1].labels.shape == (0,) and len(batches[1].skipped) == 4
    no_fixed_size = Pipeline.from_config([{"DecodeImage": {}}, {"NormalizeImage": {}}])
    assert next(iter(BatchLoader(dataset, no_fixed_size, [only_bad], on_error="skip"))).images.shape == (0, 3, 0, 0)


def test_each_bad_file_is_logged_once(mixed, small_pipeline, caplog):
    dataset, bad = mixed
    # every batch holds every bad file, so that several threads meet them at once
    sampler = [bad_indices(dataset, bad) + list(range(4 * k, 4 * k + 4)) for k in range(12)]
    loader = BatchLoader(dataset, small_pipeline, sampler, num_workers=3, on_error="skip")
    with caplog.at_level(logging.WARNING, logger="feature_extraction"):
        for epoch in range(2):
            loader.set_epoch(epoch)
            for _ in loader: pass
    logged = Counter(p for r in caplog.records for p in bad if p in r.getMessage())
    assert logged == Counter({p: 1 for p in bad})
    assert all(r.name == "feature_extraction" and r.levelno == logging.WARNING for r in caplog.records)
    assert set(loader.bad_files) == bad
    messages = {Path(p).name: m for p, m in loader.bad_files.items()}
    assert "truncated JPEG" in messages["truncated.jpg"] and "empty data" in messages["empty.jpg"]
    assert "cannot decode" in messages["text.jpg"] and messages["missing.jpg"].startswith("FileNotFoundError")


def test_replacement_gives_up_when_nothing_is_readable(tmp_path, small_pipeline):
    (tmp_path / "list.txt").write_text("".join(f"gone{i}.jpg {i % 2}\n" for i in range(6)))
    dataset = ImageNetDataset(tmp_path, tmp_path / "list.txt", check_files=False)
    with pytest.raises(RuntimeError, match="batch 0 of epoch 0") as e:
        next(iter(BatchLoader(dataset, small_pipeline, [[0, 1]], num_workers=1)))
    assert "no readable image to replace" in str(e.value.__cause__)
    assert loader_threads() == []


# ---- errors that are not about files

def test_a_pipeline_error_names_its_batch(icons_train, small_pipeline):
    def failing(images, indices=None, **kwargs):
        if 45 in indices: raise ZeroDivisionError("bug in the pipeline")
        return small_pipeline(images, indices=indices, **kwargs)
    loader = BatchLoader(icons_train, failing, DistributedBatchSampler(icons_train.labels, 10), num_workers=2)
    loader.set_epoch(6)
    seen = []
    with pytest.raises(RuntimeError, match="batch 4 of epoch 6 failed: ZeroDivisionError: bug in the pipeline") as e:
        for b in loader: seen.append(b)
    assert isinstance(e.value.__cause__, ZeroDivisionError) and len(seen) == 4
    assert loader_threads() == []


def test_out_of_range_index_is_named_after_the_batches_before_it(icons_train, small_pipeline):
    seen = []
    with pytest.raises(ValueError, match="batch 2 of the sampler holds index 4965, outside 0..4964"):
        for b in BatchLoader(icons_train, small_pipeline, [[0], [1], [2, 4965], [3]], num_workers=2): seen.append(b)
    assert len(seen) == 2 and loader_threads() == []


def test_a_sampler_error_is_raised_in_turn(icons_train, small_pipeline):
    def sampler():
        yield [0, 1]
        yield [2]
        raise KeyError("the sampler broke")
    seen = []
    with pytest.raises(KeyError, match="the sampler broke"):
        for b in BatchLoader(icons_train, small_pipeline, sampler(), num_workers=2): seen.append(b)
    assert [b.indices.tolist() for b in seen] == [[0, 1], [2]]


def test_argument_errors(icons_train, small_pipeline):
    s = [[0]]
    with pytest.raises(ValueError, match="on_error must be 'replace' or 'skip', got 'ignore'"):
        BatchLoader(icons_train, small_pipeline, s, on_error="ignore")
    with pytest.raises(ValueError, match="prefetch must be an integer >= 0, got -1"):
        BatchLoader(icons_train, small_pipeline, s, prefetch=-1)
    with pytest.raises(ValueError, match=r"num_workers \(or None\) must be a positive integer, got 0"):
        BatchLoader(icons_train, small_pipeline, s, num_workers=0)
    with pytest.raises(ValueError, match="num_workers"): BatchLoader(icons_train, small_pipeline, s, num_workers=True)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        BatchLoader(icons_train, small_pipeline, s, seed=-2)
    with pytest.raises(TypeError, match="pipeline must be callable"): BatchLoader(icons_train, "Resize", s)
    with pytest.raises(ValueError, match="epoch must be an integer >= 0"):
        BatchLoader(icons_train, small_pipeline, s).set_epoch(1.5)
    with pytest.raises(ValueError, match="not a list of integer indices"):
        next(iter(BatchLoader(icons_train, small_pipeline, [[0.0, 1.0]])))
    loader = BatchLoader(icons_train, small_pipeline, DistributedBatchSampler(icons_train.labels, 100))
    assert len(loader) == 50 and "4965 images" in repr(loader) and "on_error='replace'" in repr(loader)


# ---- shutdown

@pytest.fixture
def slow_pipeline(small_pipeline):
    "The small pipeline taking 50 ms per call, so that batches are in flight when the loop is left."
    def slow(images, **kwargs):
        time.sleep(0.05)
        return small_pipeline(images, **kwargs)
    return slow


def test_threads_end_after_break(icons_train, slow_pipeline):
    baseline = threading.active_count()
    loader = BatchLoader(icons_train, slow_pipeline, DistributedBatchSampler(icons_train.labels, 4), num_workers=3,
                         prefetch=3)
    for i, _ in enumerate(loader):
        assert loader_threads()  # the pool is running while iterating
        if i == 2: break
    assert threading.active_count() == baseline and loader_threads() == []


def test_threads_end_after_an_exception_in_the_loop(icons_train, slow_pipeline):
    baseline = threading.active_count()
    loader = BatchLoader(icons_train, slow_pipeline, DistributedBatchSampler(icons_train.labels, 4), num_workers=3)
    with pytest.raises(ArithmeticError):
        for _ in loader: raise ArithmeticError("the training step failed")
    assert threading.active_count() == baseline and loader_threads() == []


def test_threads_end_when_the_iterator_is_dropped(icons_train, slow_pipeline):
    baseline = threading.active_count()
    loader = BatchLoader(icons_train, slow_pipeline, DistributedBatchSampler(icons_train.labels, 4), num_workers=2)
    unstarted = iter(loader)
    assert loader_threads() == []  # nothing runs before the first batch is asked for
    it = iter(loader)
    next(it)
    del it, unstarted
    gc.collect()
    assert threading.active_count() == baseline and loader_threads() == []


CTRL_C_CHILD = textwrap.dedent("""
    import faulthandler, signal, sys, threading, time
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # the test asks for every thread's stack if we hang
    # as in a terminal: a background launch (nohup, some CI) ignores it
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import feature_extraction.loader as loader_module
    from feature_extraction.data import ImageNetDataset
    from feature_extraction.transforms import Pipeline

    real_load, started = loader_module.load_image, threading.Event()
    def slow_load(path, reduce_to=None):  # storage at 4 images per second and thread
        if not started.is_set(): started.set(); print("reading", flush=True)
        time.sleep(0.25)
        return real_load(path, reduce_to)
    loader_module.load_image = slow_load

    root = sys.argv[1]
    dataset = ImageNetDataset(root, root + "/train_list.txt")
    pipeline = Pipeline.from_config([{"DecodeImage": {}}, {"ResizeImage": {"size": 32}}, {"NormalizeImage": {}}])
    sampler = loader_module.DistributedBatchSampler(dataset.labels, 40)  # 10 s per batch and thread
    try:
        for batch in loader_module.BatchLoader(dataset, pipeline, sampler, num_workers=2): print("batch", flush=True)
    except KeyboardInterrupt:
        print("interrupted with", threading.active_count(), "thread(s)", flush=True)
        raise
""")


def test_ctrl_c_stops_a_loader_promptly(shared, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(CTRL_C_CHILD)
    child = subprocess.Popen([sys.executable, str(script), str(shared / "datasets/icons")], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "reading", child.stderr.read()
        time.sleep(0.3)  # the main thread now waits for the first batch, which needs 10 s
        sent = time.monotonic()
        child.send_signal(signal.SIGINT)
        try: out, err = child.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGUSR1)
            time.sleep(1)
            child.kill()
            out, err = child.communicate()
            pytest.fail(f"the child did not stop within 20 s of Ctrl-C. Its output:\n{out}\nIts threads:\n{err}")
        elapsed = time.monotonic() - sent
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "interrupted with 1 thread(s)" in out, (out, err)
    assert "batch" not in out and "KeyboardInterrupt" in err and child.returncode != 0
    assert elapsed < 3, f"the process took {elapsed:.1f} s to stop after Ctrl-C"


# ---- batch memory, parts and repeated images

def test_batches_built_in_parts_equal_one_call(icons_train, small_pipeline):
    "A small `decoded_bytes` makes the builder warp a few images at a time; the batch is the same, repeats included."
    indices = [3, 8, 3, 40, 8, 3, 100, 7]
    whole = BatchLoader(icons_train, small_pipeline, [indices], num_workers=1)
    parts = BatchLoader(icons_train, small_pipeline, [indices], num_workers=1)
    parts.builder.decoded_bytes = 1  # every image on its own
    a, b = next(iter(whole)), next(iter(parts))
    np.testing.assert_array_equal(a.images, b.images)
    alone = small_pipeline([load_image(icons_train.paths[3], small_pipeline.reduce_to)], indices=[3])
    np.testing.assert_array_equal(a.images[0], alone[0])  # a first copy is the image alone
    assert not np.array_equal(a.images[0], a.images[2])  # a repeated image is augmented anew, as PaddleClas does


def test_batch_memory_is_reused_only_when_free(icons_train, small_pipeline):
    loader = BatchLoader(icons_train, small_pipeline, DistributedBatchSampler(icons_train.labels[:64], 8),
                         num_workers=1, prefetch=0)
    kept = [b.images for b in loader]  # the caller keeps every batch: none may be overwritten
    assert len({id(k) for k in kept}) == len(kept)
    again = [b.images.copy() for b in loader]
    for k, g in zip(kept, again): np.testing.assert_array_equal(k, g)
    del kept, again
    pool = {id(a) for a in loader.builder.buffers._arrays}
    assert len(pool) == loader.builder.buffers.size
    # the caller drops each batch: every batch is a view of one of the pool's arrays (compared by object, not by
    # the ids of short-lived views, which the allocator may or may not hand out again)
    assert {id(b.images.base) for b in loader} <= pool


def test_skip_batches_resumes_mid_epoch(icons_train, small_pipeline):
    sampler = DistributedBatchSampler(icons_train.labels[:40], 8)
    loader = BatchLoader(icons_train, small_pipeline, sampler, num_workers=2)
    full = [b.indices.tolist() for b in loader]
    loader.skip_batches(3)
    assert [b.indices.tolist() for b in loader] == full[3:]
    assert [b.indices.tolist() for b in loader] == full  # only the next iteration skips
