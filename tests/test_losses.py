"""Losses against PaddleClas's reference numbers and against the plain NumPy oracle over many random,
unbalanced batches; degenerate batches and config errors. The notebook nbs/05_losses.ipynb explains the losses."""
import copy

import numpy as np
import paddle
import pytest
import yaml
from hypothesis import assume, given, settings, strategies as st

from feature_extraction.losses import (LOSSES, CELoss, CombinedLoss, TripletAngularMarginLoss, build_loss,
                                       hardest_pairs, reference_triplet_angular_margin_loss, similarity_matrix)

KEY = "TripletAngularMarginLoss"
SHITU = dict(margin=0.5, normalize_feature=True, add_absolute=True, absolute_loss_weight=0.1, ap_value=0.8,
             an_value=0.4)


@pytest.fixture(scope="module")
def ref(shared):
    return dict(np.load(shared / "reference" / "paddleclas" / "losses.npz"))


@pytest.fixture(scope="module")
def config(shared):
    path = shared / "reference" / "paddleclas" / "GeneralRecognitionV2_PPLCNetV2_base.yaml"
    return yaml.safe_load(path.read_text())


def taml(x, y, **kw):
    return TripletAngularMarginLoss(**kw)(paddle.to_tensor(x), paddle.to_tensor(y))[KEY]


# --- PaddleClas's reference batch ---------------------------------------------------------------------------

def test_celoss_matches_paddleclas(ref):
    got = CELoss(epsilon=0.1)({"logits": paddle.to_tensor(ref["logits"])}, paddle.to_tensor(ref["labels"]))["CELoss"]
    assert abs(float(got) - float(ref["celoss"])) <= 1e-5


def test_taml_matches_paddleclas_in_compat_mode(ref):
    got = taml(ref["features"], ref["labels"], **SHITU, paddleclas_compat=True)
    assert abs(float(got) - float(ref["taml"])) <= 1e-5


def test_taml_default_differs_by_satisfied_fraction(ref):
    x, y = ref["features"], ref["labels"]
    diff = float(taml(x, y, **SHITU, paddleclas_compat=True)) - float(taml(x, y, **SHITU))
    _, s_an, valid = hardest_pairs(similarity_matrix(paddle.to_tensor(x)), paddle.to_tensor(y))
    frac = float(((s_an.numpy() <= 0.4) & valid.numpy()).mean())
    assert frac == 1.0  # random 512-d features: every hardest negative is far below 0.4
    assert abs(diff - 0.1 * frac) <= 1e-6


def test_taml_default_differs_by_partial_fraction():
    rng = np.random.default_rng(0)
    centres = np.array([[1.0, 0.0, 0.0], [0.9, 0.44, 0.0], [0.0, 0.0, 1.0]])  # classes 0, 1 close; 2 apart
    x, y = (np.repeat(centres, 2, 0) + 0.05 * rng.normal(size=(6, 3))).astype(np.float32), np.array([0, 0, 1, 1, 2, 2])
    diff = float(taml(x, y, **SHITU, paddleclas_compat=True)) - float(taml(x, y, **SHITU))
    assert abs(diff - 0.1 * 2 / 6) <= 1e-6


@pytest.mark.parametrize("compat", [True, False])
def test_gradients_match_paddleclas(ref, compat):
    features = paddle.to_tensor(ref["features"], stop_gradient=False)
    logits = paddle.to_tensor(ref["logits"], stop_gradient=False)
    y = paddle.to_tensor(ref["labels"])
    out = {"features": features, "logits": logits}
    taml_loss = TripletAngularMarginLoss(**SHITU, paddleclas_compat=compat)
    (CELoss(0.1)(out, y)["CELoss"] + taml_loss(out, y)[KEY]).backward()
    np.testing.assert_allclose(features.grad.numpy(), ref["grad_features"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(logits.grad.numpy(), ref["grad_logits"], rtol=0, atol=1e-5)


def test_labels_as_column_int32(ref):
    y = ref["labels"].reshape(-1, 1).astype(np.int32)
    assert abs(float(taml(ref["features"], y, **SHITU, paddleclas_compat=True)) - float(ref["taml"])) <= 1e-5
    got = CELoss(0.1)(paddle.to_tensor(ref["logits"]), paddle.to_tensor(y))["CELoss"]
    assert abs(float(got) - float(ref["celoss"])) <= 1e-5


# --- the NumPy oracle on random, unbalanced batches ---------------------------------------------------------

@st.composite
def batch(draw, max_classes=8, max_count=6, max_dim=8):
    "Random features and labels: 1-8 classes of 1-6 images each, shuffled; random loss settings."
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    counts = draw(st.lists(st.integers(1, max_count), min_size=1, max_size=max_classes))
    labels = np.repeat(np.arange(len(counts)) * draw(st.sampled_from([1, 7])), counts)  # labels need not be 0..P-1
    rng.shuffle(labels)
    x = rng.normal(size=(len(labels), draw(st.integers(1, max_dim)))).astype(np.float32)
    if draw(st.booleans()): x *= rng.uniform(0.01, 10, size=(len(x), 1)).astype(np.float32)  # norms vary
    kw = dict(margin=draw(st.floats(0, 1)), normalize_feature=draw(st.booleans()),
              reduction=draw(st.sampled_from(["mean", "sum"])), add_absolute=draw(st.booleans()),
              absolute_loss_weight=draw(st.floats(0, 1)), ap_value=draw(st.floats(-1, 1)),
              an_value=draw(st.floats(-1, 1)), paddleclas_compat=draw(st.booleans()))
    return x, labels, kw


def near_an_threshold(x, y, kw):
    "Whether some hardest negative is within rounding of an_value, where the compat term jumps by 1."
    sim = similarity_matrix(paddle.to_tensor(x), kw["normalize_feature"])
    s_ap, s_an, valid = (t.numpy() for t in hardest_pairs(sim, paddle.to_tensor(y)))
    return bool(np.any(valid & (np.abs(s_an - kw["an_value"]) < 1e-4 * max(1.0, np.abs(s_an).max()))))


@settings(max_examples=300, deadline=None)
@given(batch())
def test_taml_equals_oracle(arg):
    x, y, kw = arg
    if kw["paddleclas_compat"] and kw["add_absolute"]: assume(not near_an_threshold(x, y, kw))
    want = reference_triplet_angular_margin_loss(x, y, **kw)
    scale = 1.0 if kw["normalize_feature"] else max(1.0, float((x.astype(np.float64) ** 2).sum(1).max()))
    assert abs(float(taml(x, y, **kw)) - want) <= 1e-5 * scale * (len(y) if kw["reduction"] == "sum" else 1)


def distance_to_kink(x, y, kw) -> float:
    "How far (in similarity) the batch is from a point where the loss is not differentiable."
    x = np.asarray(x, np.float64)
    if kw["normalize_feature"]: x = x / np.linalg.norm(x, axis=1, keepdims=True)
    s, gaps = x @ x.T, [np.inf]
    for i in range(len(y)):
        pos, neg = s[i, (y == y[i]) & (np.arange(len(y)) != i)], s[i, y != y[i]]
        if not len(pos) or not len(neg): continue
        for v in (pos, neg):  # a tie for the hardest pair switches which pair gets the gradient
            if len(v) > 1: gaps.append(np.min(np.diff(np.sort(v))))
        gaps.append(abs(neg.max() - pos.min() + kw["margin"]))  # the ranking relu
        if kw["add_absolute"]: gaps += [abs(kw["ap_value"] - pos.min()), abs(neg.max() - kw["an_value"])]
    return float(min(gaps))


@settings(max_examples=40, deadline=None)
@given(batch(max_classes=4, max_count=3, max_dim=4))
def test_taml_gradient_equals_oracle_finite_differences(arg):
    "float64 gradients against central differences of the oracle, away from kinks and ties."
    x, y, kw = arg
    x = x.astype(np.float64)
    assume(distance_to_kink(x, y, kw) > 1e-3)
    xt = paddle.to_tensor(x, stop_gradient=False)
    TripletAngularMarginLoss(**kw)(xt, paddle.to_tensor(y))[KEY].backward()
    h, num = 1e-7 * max(1.0, np.abs(x).max()), np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        up = reference_triplet_angular_margin_loss(x + e, y, **kw)
        num[idx] = (up - reference_triplet_angular_margin_loss(x - e, y, **kw)) / (2 * h)
    assert xt.grad.dtype == paddle.float64
    np.testing.assert_allclose(xt.grad.numpy(), num, rtol=1e-4, atol=1e-6 * max(1.0, np.abs(num).max()))


# --- degenerate batches -------------------------------------------------------------------------------------

X8 = np.random.default_rng(1).normal(size=(8, 16)).astype(np.float32)
DEGENERATE = {
    "single-image class": (X8, [0, 0, 0, 1, 1, 2, 2, 3], None),
    "one class": (X8, [5] * 8, 0.0),
    "all labels distinct": (X8, list(range(8)), 0.0),
    "batch of one": (X8[:1], [0], 0.0),
    "identical features": (np.ones((8, 16), np.float32), [0, 0, 1, 1, 2, 2, 3, 3], 0.5 + 0.1 * 0.6),
    "identical features, one class": (np.ones((4, 16), np.float32), [0] * 4, 0.0),
    "zero features": (np.zeros((4, 16), np.float32), [0, 0, 1, 1], 0.5 + 0.1 * 0.8),
}


@pytest.mark.parametrize("name", DEGENERATE)
@pytest.mark.parametrize("compat", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_degenerate_batches_finite(name, compat, reduction):
    x, y, expect = DEGENERATE[name]
    xt = paddle.to_tensor(x, stop_gradient=False)
    taml_loss = TripletAngularMarginLoss(**SHITU, paddleclas_compat=compat, reduction=reduction)
    loss = taml_loss(xt, paddle.to_tensor(y))[KEY]
    loss.backward()  # also when no anchor is valid: the zero loss is connected to the graph
    assert np.isfinite(float(loss)) and xt.grad is not None and np.isfinite(xt.grad.numpy()).all()
    want = reference_triplet_angular_margin_loss(x, y, **SHITU, paddleclas_compat=compat, reduction=reduction)
    assert abs(float(loss) - want) <= 1e-5
    if expect is not None and not compat and reduction == "mean": assert abs(float(loss) - expect) <= 1e-6
    if expect == 0.0: assert float(np.abs(xt.grad.numpy()).max()) == 0.0


def test_combined_loss_degenerate_batch_backward():
    features = paddle.to_tensor(X8, stop_gradient=False)
    logits = paddle.to_tensor(np.random.default_rng(2).normal(size=(8, 5)).astype(np.float32), stop_gradient=False)
    loss = CombinedLoss([(CELoss(0.1), 1.0), (TripletAngularMarginLoss(**SHITU), 1.0)])
    out = loss({"features": features, "logits": logits}, paddle.to_tensor([3] * 8))
    out["loss"].backward()
    assert float(out[KEY]) == 0.0 and np.isfinite(features.grad.numpy()).all() and np.abs(logits.grad.numpy()).max() > 0


# --- configs ------------------------------------------------------------------------------------------------

def test_build_loss_from_paddleclas_yaml(config, ref):
    train = copy.deepcopy(config["Loss"]["Train"])
    loss = build_loss(train)
    assert train == config["Loss"]["Train"]  # PaddleClas pops 'weight'; we do not modify the config
    assert [type(p) for p in loss.parts] == [CELoss, TripletAngularMarginLoss] and loss.weights == [1.0, 1.0]
    out = loss({"features": paddle.to_tensor(ref["features"]), "logits": paddle.to_tensor(ref["logits"])},
               paddle.to_tensor(ref["labels"]))
    assert list(out) == ["CELoss", KEY, "loss"]
    assert abs(float(out["CELoss"]) - float(ref["celoss"])) <= 1e-5
    # default: 0, not PaddleClas's 1, per satisfied anchor
    assert abs(float(out[KEY]) - (float(ref["taml"]) - 0.1)) <= 1e-5
    assert abs(float(out["loss"]) - float(out["CELoss"]) - float(out[KEY])) <= 1e-6
    assert build_loss(config["Loss"]["Eval"]).parts[0].epsilon is None


def test_weights_scale_parts(ref):
    loss = build_loss([{"CELoss": {"weight": 2.0, "epsilon": 0.1}}])
    out = loss(paddle.to_tensor(ref["logits"]), paddle.to_tensor(ref["labels"]))
    assert abs(float(out["CELoss"]) - 2 * float(ref["celoss"])) <= 1e-5 and float(out["loss"]) == float(out["CELoss"])


@pytest.mark.parametrize("cfg, message", [
    ([{"CELoss": {"epsilon": 0.1}}], "loss entry 0 (CELoss): every loss needs a 'weight'"),
    ([{"CELoss": {"weight": 1.0}}, {"TripletAngularMarginLoss": {"margin": 0.5}}],
     "loss entry 1 (TripletAngularMarginLoss): every loss needs a 'weight'"),
    ([{"CELoss": None}], "every loss needs a 'weight'"),
    ([{"ArcLoss": {"weight": 1.0}}], "unknown loss 'ArcLoss'; known: CELoss, TripletAngularMarginLoss"),
    ([{"CELoss": {"weight": 1.0, "eps": 0.1}}], "loss entry 0 (CELoss): CELoss: unknown key eps; known: epsilon"),
    ([{"TripletAngularMarginLoss": {"weight": 1.0, "reduction": "none"}}], "reduction must be 'mean' or 'sum'"),
    ([{"CELoss": {"weight": None}}], "weight must be a finite number"),
    ([{"CELoss": {"weight": 1.0}}, {"CELoss": {"weight": 1.0}}], "two losses named 'CELoss'"),
    ([], "non-empty list"),
    ({"CELoss": {"weight": 1.0}}, "non-empty list"),
    (["CELoss"], "loss entry 0: expected {LossName"),
])
def test_config_errors(cfg, message):
    with pytest.raises((ValueError, KeyError, TypeError)) as e: build_loss(cfg)
    assert message in str(e.value)


def test_registry():
    assert sorted(LOSSES.entries) == ["CELoss", "TripletAngularMarginLoss"]
    assert isinstance(LOSSES.build({"name": "CELoss", "epsilon": 0.1}), CELoss)


def test_bad_labels(ref):
    logits = paddle.to_tensor(ref["logits"])
    for bad, message in ((paddle.full([32], -100, "int64"), "got -100"), (paddle.full([32], 100, "int64"), "got 100"),
                         (paddle.zeros([32], "float32"), "int32 or int64"), (paddle.zeros([31], "int64"), "31 labels")):
        with pytest.raises((ValueError, TypeError)) as e: CELoss(0.1)(logits, bad)
        assert message in str(e.value)
    with pytest.raises(ValueError, match="3 labels for a batch of 32"): taml(ref["features"], np.zeros(3, np.int64))


def test_taml_compiles_with_free_batch_size(ref):
    "Mask-based mining under paddle.jit.to_static: the reference batch and an unbalanced slice give the eager values."
    eager = TripletAngularMarginLoss(**SHITU, paddleclas_compat=True)
    static = paddle.jit.to_static(TripletAngularMarginLoss(**SHITU, paddleclas_compat=True), full_graph=True)
    x, y = paddle.to_tensor(ref["features"]), paddle.to_tensor(ref["labels"])
    assert abs(float(static(x, y)[KEY]) - float(ref["taml"])) <= 1e-6
    for n in (7, 3, 1):
        assert abs(float(static(x[:n], y[:n])[KEY]) - float(eager(x[:n], y[:n])[KEY])) <= 1e-6
