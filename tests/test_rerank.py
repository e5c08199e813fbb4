"""k-reciprocal re-ranking and average query expansion (nbs/01a_rerank.ipynb): the sparse implementation equals the
published algorithm written densely in float64 (hypothesis over N, k1, k2 and lambda; and on icons features),
PaddleClas's own results to its float16 precision, and the icons test set's metrics with and without re-ranking
are printed (and recorded in the notebook)."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from feature_extraction.metrics import l2_normalize, retrieval_metrics
from feature_extraction.rerank import (AverageQueryExpansion, KReciprocal, ReRanker, average_query_expansion,
                                       reference_re_ranking)


@settings(max_examples=60, deadline=None)
@given(n_query=st.integers(1, 25), n_gallery=st.integers(1, 40), dim=st.integers(2, 12), k1=st.integers(1, 25),
       k2=st.integers(1, 8), lambda_value=st.floats(0, 1), seed=st.integers(0, 2**32 - 1))
def test_equals_the_published_algorithm(n_query, n_gallery, dim, k1, k2, lambda_value, seed):
    rng = np.random.default_rng(seed)
    query = l2_normalize(rng.normal(size=(n_query, dim)).astype(np.float32))
    gallery = l2_normalize(rng.normal(size=(n_gallery, dim)).astype(np.float32))
    ours = ReRanker(KReciprocal(k1, k2, lambda_value), query, gallery, 2).block()
    np.testing.assert_allclose(ours, reference_re_ranking(query, gallery, k1, k2, lambda_value), rtol=0, atol=1e-6)


def test_paddleclas_results(shared):
    data = np.load(shared / "reference/paddleclas/rerank.npz")
    for k1, k2, lam in ((20, 6, 0.3), (10, 3, 0.5), (20, 1, 0.3)):
        ours = KReciprocal(k1, k2, lam).distances(data["query"], data["gallery"])
        assert np.abs(ours - data[f"dist_k1_{k1}_k2_{k2}_lambda_{lam}"]).max() < 3e-3


def test_icons_features_equal_the_published_algorithm(icons):
    feats, _, _ = icons
    query, gallery = feats[:150], feats[1000:1400]
    ours = ReRanker(KReciprocal(), query, gallery, 2).block()
    np.testing.assert_allclose(ours, reference_re_ranking(query, gallery), rtol=0, atol=1e-6)


def test_icons_metrics_with_and_without_reranking(icons):
    feats, labels, _ = icons
    ids = np.arange(len(labels))  # query set == gallery set: each image is left out of its own results
    runs = {"cosine": None, "k-reciprocal (20, 6, 0.3)": KReciprocal(), "average query expansion (10, 3)":
            AverageQueryExpansion()}
    found = {name: retrieval_metrics(feats, feats, labels, labels, ids, ids, topk=(1, 5), scorer=scorer)
             for name, scorer in runs.items()}
    for name, metrics in found.items():
        print(f"icons test set, {name}: recall1 {metrics['recall1']:.4f} recall5 {metrics['recall5']:.4f} "
              f"mAP {metrics['mAP']:.4f}")
    assert found["k-reciprocal (20, 6, 0.3)"]["mAP"] != found["cosine"]["mAP"]
    assert all(m["num_queries"] == len(labels) for m in found.values())


def test_query_expansion_of_a_search_leaves_the_gallery_alone():
    rng = np.random.default_rng(1)
    gallery = l2_normalize(rng.normal(size=(50, 8)).astype(np.float32))
    query = l2_normalize(rng.normal(size=(1, 8)).astype(np.float32))
    expanded = AverageQueryExpansion(k=4).expand_queries(query, gallery)
    alone, _ = average_query_expansion(query, gallery, 4)  # one query: its own expansion is the same
    np.testing.assert_allclose(expanded, alone, atol=1e-6)
