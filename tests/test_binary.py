"""Binary codes (nbs/01b_binary.ipynb, nbs/14_gallery.ipynb): the compiled Hamming similarity equals NumPy's
popcount, the Hamming evaluation equals the float evaluation of the same +/-1 codes (hypothesis over sizes, labels
and ties), the binary gallery indexes equal an exhaustive NumPy popcount search, and the icons test set's metrics by
cosine and by sign codes are printed (and recorded in the notebook)."""
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_extraction.binary import (Binarized, HammingCodes, binarize, code_similarity, feature_bits,
                                       hamming_reference, pack_codes)
from feature_extraction.gallery import Gallery, Item
from feature_extraction.metrics import knn, l2_normalize, retrieval_metrics
from feature_extraction.rerank import KReciprocal

REPO = Path(__file__).resolve().parents[1]


@settings(max_examples=40, deadline=None)
@given(n_query=st.integers(1, 40), n_gallery=st.integers(1, 60), n_bits=st.integers(1, 200),
       threads=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_kernel_equals_numpy_popcount(n_query, n_gallery, n_bits, threads, seed):
    rng = np.random.default_rng(seed)
    query, gallery = pack_codes(rng.random((n_query, n_bits)) < 0.5), pack_codes(rng.random((n_gallery, n_bits)) < 0.5)
    sims = code_similarity(query, gallery, n_bits, num_threads=threads, block_size=7)
    np.testing.assert_array_equal(sims, n_bits - 2 * hamming_reference(query, gallery))


@settings(max_examples=30, deadline=None)
@given(n=st.integers(4, 120), dim=st.integers(1, 80), n_classes=st.integers(1, 8), split=st.booleans(),
       levels=st.integers(2, 5), seed=st.integers(0, 2**32 - 1))
def test_hamming_evaluation_equals_float_evaluation_of_the_codes(n, dim, n_classes, split, levels, seed):
    rng = np.random.default_rng(seed)
    # few distinct values per dimension: many codes are equal, so ties are tested too
    features = rng.integers(-levels, levels, size=(n, dim)).astype(np.float32) + 0.5
    labels = rng.integers(0, n_classes, n)
    metrics = ("recall", "mAP", "mAP@R", "r_precision", "mINP")
    if split:  # query and gallery sets apart
        query, gallery, query_labels, gallery_labels, ids = features[::2], features[1::2], labels[::2], labels[1::2], {}
    else:  # query set == gallery set, each item left out of its own results
        query, gallery, query_labels, gallery_labels = features, features, labels, labels
        ids = {"query_ids": np.arange(n), "gallery_ids": np.arange(n)}
    if not np.isin(query_labels, gallery_labels).any() or (not split and np.bincount(labels).max() < 2):
        return  # no query has a positive: both raise the same error, tested in 01_metrics
    topk = (1, min(5, len(gallery)))
    # equal codes are not leaks here (the features differ): the comparison is of the scoring alone
    by_hamming = retrieval_metrics(query, gallery, query_labels, gallery_labels, topk=topk, metrics=metrics,
                                   scorer=HammingCodes(), block_size=16, num_threads=2, leaks="ignore", **ids)
    by_float = retrieval_metrics(binarize(query), binarize(gallery), query_labels, gallery_labels, topk=topk,
                                 metrics=metrics, normalize=False, leaks="ignore", **ids)
    assert by_hamming == by_float


def test_binarized_reranking_is_reranking_of_the_codes():
    rng = np.random.default_rng(3)
    features, labels = rng.normal(size=(200, 64)).astype(np.float32), np.repeat(np.arange(20), 10)
    ids = np.arange(200)
    unit = binarize(features) / np.sqrt(64)
    ours = retrieval_metrics(features, features, labels, labels, ids, ids, scorer=Binarized(KReciprocal()))
    assert ours == retrieval_metrics(unit, unit, labels, labels, ids, ids, scorer=KReciprocal())


def test_config_key_picks_the_scorer():
    "`Global.feature_binarize` (its bad values: tests/test_config.py) makes the engine evaluate by Hamming codes."
    from feature_extraction.engine import Engine
    engine = object.__new__(Engine)
    engine.config = {"Global": {"re_ranking": False, "feature_binarize": "sign"}}
    assert engine.scorer == HammingCodes("sign")
    engine.config["Global"]["re_ranking"] = True
    assert engine.scorer == Binarized(KReciprocal(), "sign")


def test_icons_metrics_of_sign_codes(icons, shared):
    "Beside the raw-pixel baseline (16 x 16, cosine) on the same images, as the engine measures it."
    from feature_extraction.config import load_config
    from feature_extraction.engine import evaluate_pixels
    query = load_config(REPO / "configs/icons_cpu.yaml")["DataLoader"]["Eval"]["Query"]
    query["dataset"] |= {"image_root": str(shared / "datasets/icons"),
                         "cls_label_path": str(shared / "datasets/icons/test_list.txt")}
    pixels = evaluate_pixels(query)
    print(f"| raw pixels, 16 x 16 (cosine) | {pixels['recall1']:.4f} | {pixels['recall5']:.4f} | {pixels['mAP']:.4f} |")
    feats, labels, _ = icons
    ids = np.arange(len(labels))
    runs = {"float32 (cosine)": None, "512-bit sign codes (Hamming)": HammingCodes()}
    found = {name: retrieval_metrics(feats, feats, labels, labels, ids, ids, topk=(1, 5), scorer=scorer)
             for name, scorer in runs.items()}
    for name, metrics in found.items():
        print(f"| {name} | {metrics['recall1']:.4f} | {metrics['recall5']:.4f} | {metrics['mAP']:.4f} |")
    codes = binarize(feats)
    assert found["512-bit sign codes (Hamming)"] == retrieval_metrics(codes, codes, labels, labels, ids, ids,
                                                                      topk=(1, 5), normalize=False)
    assert feature_bits(feats).mean() > 0.2  # the codes are not degenerate


def exhaustive_hamming(queries: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    "Hamming distances of the sign bits, by NumPy over every pair: what a binary index must answer."
    return hamming_reference(pack_codes(feature_bits(queries)), pack_codes(feature_bits(gallery)))


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 300), n_queries=st.integers(1, 20), dim=st.sampled_from([8, 64, 136]), k=st.integers(1, 12),
       index_type=st.sampled_from(["BFlat", "BIVF4"]), seed=st.integers(0, 2**32 - 1))
def test_binary_gallery_equals_exhaustive_popcount_search(n, n_queries, dim, k, index_type, seed):
    rng = np.random.default_rng(seed)
    # few distinct sign patterns: many equal distances, so ties are tested too
    vectors = rng.normal(size=(n, dim)).astype(np.float32) * (rng.random((n, dim)) < 0.3)
    queries = rng.normal(size=(n_queries, dim)).astype(np.float32)
    if index_type == "BIVF4" and n < 4: return  # IVF needs as many vectors as lists (an error, tested in 14_gallery)
    gallery = Gallery(dim, index_type, rescore=0, nprobe=4)  # all 4 lists: exhaustive
    gallery.add(vectors + 1e-3, [Item(f"{i}.png") for i in range(n)])
    found = gallery.search(queries, k)
    hamming = exhaustive_hamming(queries, vectors + 1e-3)
    want = min(k, n)
    expected = np.sort(hamming, axis=1)[:, :want]
    np.testing.assert_array_equal(found.scores[:, :want], (1 - 2 * expected / dim).astype(np.float32))
    assert (found.ids[:, want:] == -1).all()
    for row, distances, ids in zip(range(n_queries), hamming, found.ids[:, :want]):
        assert len(set(ids)) == want, row
        np.testing.assert_array_equal(np.sort(distances[ids]), expected[row])  # the same distances: modulo ties
        assert set(np.flatnonzero(distances < expected[row, -1])) <= set(ids)


def test_binary_gallery_removes_saves_and_rescores(tmp_path):
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(500, 64)).astype(np.float32)
    gallery = Gallery(64, "BIVF8", nprobe=8)
    gallery.add(vectors, [Item(f"{i}.png", str(i % 50)) for i in range(500)])
    removed = gallery.remove(ids=[0, 1, 2], labels=["7"])
    found = gallery.search(vectors[:20], k=5)
    assert not np.isin(found.ids, removed).any()
    exact = np.einsum("qkd,qd->qk", l2_normalize(vectors)[found.ids], l2_normalize(vectors[:20]))
    np.testing.assert_allclose(found.scores, exact, atol=1e-5)  # re-scored: exact cosines, best first
    assert (np.diff(found.scores, axis=1) <= 0).all()
    gallery.save(tmp_path / "g")
    loaded = Gallery.load(tmp_path / "g")
    np.testing.assert_array_equal(loaded.search(vectors[:20], k=5).ids, found.ids)
    twin = loaded.copy()
    twin.remove(ids=found.ids[:, 0])
    np.testing.assert_array_equal(loaded.search(vectors[:20], k=5).ids, found.ids)  # the original is untouched


def test_binary_index_recall_on_icons_features(icons):
    "recall@10 of the binary index against exact search on real features (printed, and recorded in 14_gallery)."
    feats, _, _ = icons
    exact = knn(feats[:1000], feats[1000:], 10)[1]
    gallery = Gallery(512, "BFlat", num_threads=2)
    gallery.add(feats[1000:], [Item(str(i)) for i in range(len(feats) - 1000)])
    found = {}
    for rescore in (0, 10, 50, 200):
        gallery.rescore = rescore
        ids = gallery.search(feats[:1000], k=10).ids
        found[rescore] = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, exact)]))
        print(f"icons, BFlat, {rescore} re-scored per answer: recall@10 {found[rescore]:.4f}")
    assert found[0] < found[10] < found[50] < found[200], found  # each candidate re-scored finds more of the top 10
