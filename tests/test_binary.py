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
from feature_extraction.metrics import retrieval_metrics
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
    by_hamming = retrieval_metrics(query, gallery, query_labels, gallery_labels, topk=topk, metrics=metrics,
                                   scorer=HammingCodes(), block_size=16, num_threads=2, **ids)
    by_float = retrieval_metrics(binarize(query), binarize(gallery), query_labels, gallery_labels, topk=topk,
                                 metrics=metrics, normalize=False, **ids)
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
    feats, labels = icons
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
