"""The P x K sampler: batch structure over random label sets, the class distribution of each sample method
(chi-square tests with fixed seeds), distinct and reproducible streams per rank and epoch, the error messages,
and the real icons training list. The notebook nbs/06_sampler.ipynb explains the design."""
import math
import subprocess
import sys
from collections import Counter
from itertools import permutations

import numpy as np
import pytest
import yaml
from hypothesis import given, settings, strategies as st

from feature_extraction.sampler import (SAMPLERS, PKSampler, class_probabilities, distributed_env, sample_classes,
                                        sample_within)


def check_batch(batch, labels, P, K):
    "Assert the P x K structure of `batch` (blocks of K indices, one class each, P distinct classes)."
    assert len(batch) == P * K and all(isinstance(i, int) and 0 <= i < len(labels) for i in batch)
    blocks = [batch[j * K:(j + 1) * K] for j in range(P)]
    classes = [labels[b[0]] for b in blocks]
    assert len(set(classes)) == P
    size = Counter(labels)
    for b, c in zip(blocks, classes):
        assert all(labels[i] == c for i in b)
        # distinct images unless the class is smaller than K; then every image of it is there
        assert len(set(b)) == min(K, size[c])


def chi2_z(observed, expected) -> float:
    "The chi-square statistic in standard deviations above its mean (#categories - 1)."
    observed, expected = np.asarray(observed, float), np.asarray(expected, float)
    stat, df = ((observed - expected) ** 2 / expected).sum(), len(observed) - 1
    return (stat - df) / math.sqrt(2 * df)


def class_counts(sampler, epochs):
    "How many batches of `epochs` epochs hold each class, by position in `label_list`."
    position = np.empty(sampler.num_samples, dtype=np.int64)
    for i, members in enumerate(sampler.label_dict.values()): position[members] = i
    counts = np.zeros(len(sampler.label_list), dtype=np.int64)
    for e in range(epochs):
        sampler.set_epoch(e)
        for b in sampler: counts += np.bincount(position[b[::sampler.sample_per_id]], minlength=len(counts))
    return counts


def read_labels(path):
    return [int(line.split()[1]) for line in path.read_text().splitlines() if line.strip()]


# ---------------------------------------------------------------- structure

@st.composite
def label_sets(draw):
    "Labels (ints or strings, shuffled order) of classes of 1..9 images, and a feasible P x K."
    sizes = draw(st.lists(st.integers(1, 9), min_size=1, max_size=25))
    names = (lambda c: f"class-{c}") if draw(st.booleans()) else (lambda c: 1000 - 7 * c)
    labels = [names(c) for c, n in enumerate(sizes) for _ in range(n)]
    order = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).permutation(len(labels))
    K, P = draw(st.integers(1, 5)), draw(st.integers(1, len(sizes)))
    return [labels[i] for i in order], P, K


@settings(max_examples=150, deadline=None)
@given(label_sets(), st.sampled_from(["id_avg_prob", "sample_avg_prob"]), st.integers(0, 2**32 - 1),
       st.integers(0, 3), st.integers(0, 50), st.booleans())
def test_every_batch_is_p_classes_of_k_images(case, method, seed, rank, epoch, drop_last):
    labels, P, K = case
    world = rank + 1 + seed % 3
    s = PKSampler(labels, P * K, K, method, seed=seed, rank=rank, world_size=world, drop_last=drop_last)
    per_rank = math.ceil(len(labels) / world)
    want = per_rank // (P * K) if drop_last else math.ceil(per_rank / (P * K))
    if want == 0:
        with pytest.raises(ValueError, match="an epoch would have no batch"): len(s)
        return
    s.set_epoch(epoch)
    batches = list(s)
    assert len(batches) == len(s) == want
    for b in batches: check_batch(b, labels, P, K)


def test_small_classes_repeat_only_when_needed():
    labels = [0] * 2 + [1] * 4 + [2] * 9 + [3]
    for b in PKSampler(labels, 16, 4, rank=0, world_size=1, seed=3):
        check_batch(b, labels, 4, 4)


def test_sample_within_is_uniform_over_subsets():
    rng = np.random.default_rng(5)
    pos = np.concatenate([sample_within(rng, np.full(2000, 6), 2) for _ in range(5)])
    subsets = Counter(tuple(sorted(r)) for r in pos.tolist())
    assert len(subsets) == 15 and all(a != b for a, b in subsets)
    assert chi2_z(list(subsets.values()), [len(pos) / 15] * 15) < 5


# ---------------------------------------------------------------- distributions

SIZES = np.array([1, 2, 3, 5, 8, 13, 21, 34, 4, 4, 6, 9, 2, 7, 30, 1, 1, 16, 11, 5])  # 20 unbalanced classes
LABELS = np.repeat(np.arange(len(SIZES)), SIZES)[np.random.default_rng(0).permutation(SIZES.sum())]


def first_appearance_sizes(labels):
    return np.array([n for _, n in Counter(labels.tolist()).items()])  # Counter keeps first-appearance order


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_id_avg_prob_is_uniform_over_classes(seed):
    s = PKSampler(LABELS, 20, 4, "id_avg_prob", seed=seed, rank=0, world_size=1)  # P = 5 of 20 classes
    counts = class_counts(s, 400)
    expected = np.full(20, counts.sum() / 20)
    assert chi2_z(counts, expected) < 5
    assert chi2_z(counts, counts.sum() * s.sizes / s.sizes.sum()) > 50  # the test tells the methods apart


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sample_avg_prob_is_proportional_to_class_size(seed):
    s = PKSampler(LABELS, 4, 4, "sample_avg_prob", seed=seed, rank=0, world_size=1)  # P = 1: share == prob
    np.testing.assert_array_equal(s.sizes, first_appearance_sizes(LABELS))
    counts = class_counts(s, 60)
    assert chi2_z(counts, counts.sum() * s.sizes / s.sizes.sum()) < 5
    assert chi2_z(counts, np.full(20, counts.sum() / 20)) > 50


@pytest.mark.parametrize("seed", [0, 1])
def test_several_classes_per_batch_follow_successive_sampling(seed):
    "P = 3 of 6 weighted classes: the inclusion frequencies equal the exact ones of np.random.choice(replace=False, p)."
    labels = np.repeat(np.arange(6), [12, 10, 8, 4, 4, 2])
    s = PKSampler(labels, 6, 2, "sample_avg_prob", seed=seed, rank=0, world_size=1)
    p = s.prob_list
    incl = np.zeros(6)
    for order in permutations(range(6), 3):
        pr, left = 1.0, 1.0
        for i in order:
            pr *= p[i] / left
            left -= p[i]
        incl[list(order)] += pr
    counts = class_counts(s, 1000)
    assert chi2_z(counts, counts.sum() / 3 * incl) < 5
    assert chi2_z(counts, counts.sum() * p) > 10  # not simply proportional when P is half the classes


@pytest.mark.parametrize("method", ["id_avg_prob", "sample_avg_prob"])
def test_id_list_ratio_up_weights_class_positions(method):
    s = PKSampler(LABELS, 4, 4, method, id_list=[2, 5, 10, 10], ratio=[4, 2.5], seed=7, rank=0, world_size=1)
    weight = np.ones(20) if method == "id_avg_prob" else s.sizes.astype(float)
    weight[2:6] *= 4
    weight[10] *= 2.5
    np.testing.assert_allclose(s.prob_list, weight / weight.sum())
    counts = class_counts(s, 60)
    assert chi2_z(counts, counts.sum() * s.prob_list) < 5
    plain = PKSampler(LABELS, 4, 4, method).prob_list
    assert chi2_z(counts, counts.sum() * plain) > 10


def test_id_list_counts_positions_not_label_values():
    labels = ["z", "z", "a", "m", "a"]  # positions: z -> 0, a -> 1, m -> 2
    s = PKSampler(labels, 1, 1, id_list=[1, 1], ratio=[3])
    assert s.label_list == ["z", "a", "m"]
    np.testing.assert_allclose(s.prob_list, [0.2, 0.6, 0.2])


def test_sample_classes_draws_distinct_classes_in_key_order():
    rng = np.random.default_rng(0)
    p = np.full(10, 0.1)
    for num in (1, 5, 10):
        got = sample_classes(rng, p, num)
        assert len(got) == len(set(got.tolist())) == num


# ---------------------------------------------------------------- ranks and epochs

def stream(labels, epoch=0, **kw):
    s = PKSampler(labels, 64, 4, **kw)
    s.set_epoch(epoch)
    return list(s)


def test_ranks_draw_different_streams():
    labels = np.repeat(np.arange(200), 5)
    r0, r1 = stream(labels, rank=0, world_size=2), stream(labels, rank=1, world_size=2)
    assert len(r0) == len(r1) == math.ceil(500 / 64)
    assert r0 != r1 and all(a != b for a, b in zip(r0, r1))
    assert all(set(a) != set(b) for a, b in zip(r0, r1))


def test_rank_from_launcher_environment(monkeypatch):
    labels = np.repeat(np.arange(200), 5)
    assert distributed_env() == (0, 1)
    monkeypatch.setenv("PADDLE_TRAINER_ID", "1")
    monkeypatch.setenv("PADDLE_TRAINERS_NUM", "4")
    s = PKSampler(labels, 64, 4)  # resolved when iterated, not when built
    assert distributed_env() == (1, 4) and s.ranks() == (1, 4)
    assert list(s) == stream(labels, rank=1, world_size=4)
    monkeypatch.setenv("PADDLE_TRAINER_ID", "4")
    with pytest.raises(ValueError, match="rank must be in 0..world_size - 1 = 3, got 4"): list(s)


def test_set_epoch_is_reproducible_and_changes_the_order():
    labels = [f"id{c}" for c in range(100) for _ in range(c % 6 + 1)]
    assert stream(labels, 0) == stream(labels, 0) and stream(labels, 4) == stream(labels, 4)
    epochs = [stream(labels, e) for e in range(5)]
    assert all(epochs[i] != epochs[j] for i in range(5) for j in range(i))
    s = PKSampler(labels, 64, 4)
    first = list(s)
    assert list(s) == first  # without set_epoch an iteration repeats the epoch
    s.set_epoch(1)
    assert list(s) != first
    s.set_epoch(0)
    assert list(s) == first
    assert stream(labels, 0, seed=1) != first
    assert stream(labels, 3, shuffle=False) == first  # shuffle=False: the same batches every epoch


def test_len_follows_paddle_distributed_batch_sampler():
    labels = np.repeat(np.arange(300), 3)  # N = 900
    assert len(PKSampler(labels, 256, 4)) == 4
    assert len(PKSampler(labels, 256, 4, drop_last=True)) == 3
    assert len(PKSampler(labels, 256, 4, rank=0, world_size=3)) == 2  # ceil(300 / 256)
    assert len(PKSampler(labels, 256, 4, rank=0, world_size=3, drop_last=True)) == 1
    with pytest.raises(ValueError, match="an epoch would have no batch: 225 images per rank"):
        len(PKSampler(labels, 256, 4, rank=0, world_size=4, drop_last=True))


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("kwargs, message", [
    (dict(batch_size=256, sample_per_id=0), "sample_per_id must be a positive integer, got 0"),
    (dict(batch_size=256, sample_per_id=4.0), "sample_per_id must be a positive integer"),
    (dict(batch_size=0, sample_per_id=4), "batch_size must be a positive integer"),
    (dict(batch_size=254, sample_per_id=4),
     "batch_size (254) must be a multiple of sample_per_id (4), since a batch is P classes x 4 images: use 252 or 256"),
    (dict(batch_size=1024, sample_per_id=4),
     "the data has 150 classes; with sample_per_id=4 the largest batch is 600: use batch_size <= 600, a multiple of 4"),
    (dict(batch_size=8, sample_per_id=4, sample_method="random"), "unknown sample_method 'random'; known: id_avg_prob"),
    (dict(batch_size=8, sample_per_id=4, id_list=[0, 3]), "id_list and ratio go together"),
    (dict(batch_size=8, sample_per_id=4, id_list=[0, 3, 5], ratio=[2]), "pairs [start, end, start, end, ...]"),
    (dict(batch_size=8, sample_per_id=4, id_list=[0, 3], ratio=[2, 2]), "1 pair(s) but 2 ratio(s)"),
    (dict(batch_size=8, sample_per_id=4, id_list=[4, 3], ratio=[2]), "start > end"),
    (dict(batch_size=8, sample_per_id=4, id_list=[0, 5, 5, 9], ratio=[2, 2]), "[0, 5] and [5, 9] overlap"),
    (dict(batch_size=8, sample_per_id=4, id_list=[0, 5], ratio=[-1]), "ratio values must be positive"),
    (dict(batch_size=8, sample_per_id=4, seed=-1), "seed must be an integer >= 0"),
    (dict(batch_size=8, sample_per_id=4, rank=2, world_size=2), "rank must be in 0..world_size - 1 = 1, got 2"),
    (dict(batch_size=8, sample_per_id=4, world_size=0), "world_size must be a positive integer"),
])
def test_bad_arguments_are_explained(kwargs, message):
    labels = np.repeat(np.arange(150), 4)
    with pytest.raises(ValueError) as e: PKSampler(labels, **kwargs)
    assert message in str(e.value)


def test_empty_and_unhashable_labels():
    with pytest.raises(ValueError, match="labels is empty"): PKSampler([], 8, 4)
    with pytest.raises(TypeError, match="hashable"): PKSampler([[1], [2]], 1, 1)
    with pytest.raises(ValueError, match="epoch must be an integer >= 0"): PKSampler([1], 1, 1).set_epoch(-2)


def test_class_probabilities_sum_to_one():
    p = class_probabilities(np.arange(1, 101), "sample_avg_prob", id_list=[0, 9, 50, 99], ratio=[3, 0.5])
    assert abs(p.sum() - 1) < 1e-12 and (p > 0).all()


# ---------------------------------------------------------------- real data and configs

def test_icons_train_list_64_by_4(shared):
    labels = read_labels(shared / "datasets/icons/train_list.txt")
    s = PKSampler(labels, batch_size=256, sample_per_id=4, seed=0)
    assert (len(s.label_list), s.num_samples, len(s)) == (837, 4965, 20)
    for epoch in range(3):
        s.set_epoch(epoch)
        for b in s: check_batch(b, labels, 64, 4)


def test_icons_mini_has_classes_smaller_than_k(shared):
    labels = read_labels(shared / "datasets/icons-mini/train_list.txt")
    s = PKSampler(labels, batch_size=128, sample_per_id=4)
    assert (s.sizes < 4).sum() == 56
    for b in s: check_batch(b, labels, 32, 4)
    with pytest.raises(ValueError, match="use batch_size <= 600"): PKSampler(labels, 1024, 4)


def test_built_from_the_paddleclas_config(shared):
    config = yaml.safe_load((shared / "reference/paddleclas/GeneralRecognitionV2_PPLCNetV2_base.yaml").read_text())
    entry = config["DataLoader"]["Train"]["sampler"]
    assert entry["name"] == "PKSampler" and "PKSampler" in SAMPLERS
    labels = np.repeat(np.arange(100_000), 2)
    s = SAMPLERS.build(entry, labels=labels, total_epochs=config["Global"]["epochs"])
    p = s.prob_list
    np.testing.assert_allclose([p[50030] / p[0], p[80700] / p[0], p[80701] / p[0], p[92019] / p[0], p[96016] / p[0]],
                               [4, 4, 1, 4, 1])
    assert (s.batch_size, s.sample_per_id, s.drop_last, s.shuffle, len(s)) == (256, 4, False, True, 782)
    check_batch(next(iter(s)), labels.tolist(), 64, 4)
    icons = read_labels(shared / "datasets/icons/train_list.txt")
    with pytest.warns(UserWarning, match=r"\[50030, 80700\] reaches beyond the class positions 0..836.*ignored"):
        s = SAMPLERS.build(entry, labels=icons)
    np.testing.assert_allclose(s.prob_list, 1 / 837)


@pytest.mark.parametrize("setup", ["", "sys.modules['paddle'] = None; "])  # not imported; not installed
def test_importable_without_paddle(setup):
    code = (f"import sys; {setup}import feature_extraction.sampler as s; assert not sys.modules.get('paddle'); "
            "print(s.distributed_env(), len(s.PKSampler([0, 0, 1, 1], 4, 2)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "(0, 1) 1"


def test_batch_sampler_of_a_paddle_dataloader():
    paddle = pytest.importorskip("paddle")

    class Toy(paddle.io.Dataset):
        labels = np.repeat(np.arange(20), 3)
        def __getitem__(self, i): return np.float32(i), self.labels[i]
        def __len__(self): return len(self.labels)

    loader = paddle.io.DataLoader(Toy(), batch_sampler=PKSampler(Toy.labels, 12, 3), num_workers=0)
    assert len(loader) == 5 and distributed_env() == (0, 1)
    batches = [(x.numpy().astype(int).tolist(), y.numpy()) for x, y in loader]
    assert len(batches) == 5
    for idx, y in batches:
        check_batch(idx, Toy.labels.tolist(), 4, 3)
        np.testing.assert_array_equal(Toy.labels[idx], y)
