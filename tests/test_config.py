"""Configs: the PaddleClas reference YAML and the copy in configs/ load unchanged and validate; `-o` overrides
(scalars, nested keys, list indices, YAML-typed values) never evaluate anything; every kind of bad value is a problem
naming the key path, the value and what is allowed, all reported together; unknown-key and new-key warnings; YAML
errors with line and column; the atomic save round trip. The `-c`/`-o` command-line options are tested in
tests/test_cli.py. The notebook nbs/11_config.ipynb explains the design."""
import ast
import builtins
import copy
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

from feature_extraction.config import (ARCH_KEYS, SECTIONS, ConfigError, ConfigWarning, apply_overrides, load_config,
                                       parse_override, save_config, validate_config)
from feature_extraction.core import unknown_keys_message

REPO = Path(__file__).resolve().parents[1]
NAME = "GeneralRecognitionV2_PPLCNetV2_base.yaml"


@pytest.fixture(scope="module")
def reference(shared):
    return shared / "reference" / "paddleclas" / NAME


@pytest.fixture
def config(reference):
    return yaml.safe_load(reference.read_text())


def problems(f):
    with pytest.raises(ConfigError) as info:
        f()
    return info.value.problems


# --- the CPU recipe for the icons data -------------------------------------------------------------------------

def test_icons_cpu_recipe_is_complete_and_reads_the_shared_icons():
    "configs/icons_cpu.yaml loads without warnings, and its data paths are ../shared/datasets/icons from the repo root."
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        cfg = load_config(REPO / "configs/icons_cpu.yaml")
    validate_config(cfg, require_eval=True)
    dl = cfg["DataLoader"]
    for entry, name in [(dl["Train"], "train_list.txt"), (dl["Eval"]["Query"], "test_list.txt"),
                        (dl["Eval"]["Gallery"], "test_list.txt")]:
        assert Path(entry["dataset"]["image_root"]) == Path("../shared/datasets/icons")
        assert Path(entry["dataset"]["cls_label_path"]) == Path("../shared/datasets/icons") / name
    if (REPO.parent / "shared").is_dir():  # as in CI
        assert (REPO / "../shared/datasets/icons/train_list.txt").is_file()
    assert cfg["Arch"]["Head"]["class_num"] == 837 and cfg["Global"]["image_shape"] == [3, 32, 32]


# --- the reference config ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["shared", "configs"])
def test_reference_loads_unchanged_without_warnings(reference, where):
    path = reference if where == "shared" else REPO / "configs" / NAME
    assert path.read_bytes() == reference.read_bytes()  # the copy in configs/ is unchanged
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        cfg = load_config(path)
    g = cfg["Global"]
    assert (g["epochs"], g["device"], g["eval_during_train"], g["output_dir"]) == (100, "gpu", True, "./output")
    # defaults filled in
    assert (g["seed"], g["start_eval_epoch"], g["feature_normalize"], g["sim_block_size"]) == (0, 0, True, 64)
    assert (g["update_freq"], g["to_static"], g["max_iterations"]) == (1, False, None)
    assert cfg["Optimizer"]["lr"] == {"name": "Cosine", "learning_rate": 0.06, "warmup_epoch": 5,
                                      "warmup_start_lr": 0.0, "eta_min": 0.0}
    assert cfg["Optimizer"]["use_nesterov"] is False and cfg["Optimizer"]["regularizer"]["coeff"] == 1e-5
    assert cfg["AMP"] == yaml.safe_load(path.read_text())["AMP"]  # complete already: nothing added
    assert cfg["Metric"]["Eval"] == [{"Recallk": {"topk": [1, 5]}}, {"mAP": {}}]
    # anchors resolved, strings for the transforms left alone (never evaluated)
    assert cfg["Arch"]["Neck"]["num_features"] == cfg["Arch"]["Head"]["embedding_size"] == 512
    assert cfg["DataLoader"]["Train"]["dataset"]["transform_ops"][7]["NormalizeImage"]["scale"] == "1.0/255.0"
    assert cfg["Arch"]["Neck"]["bias_attr"]["learning_rate"] == 1e-20


def test_validate_is_a_copy_and_idempotent(config):
    before = copy.deepcopy(config)
    checked = validate_config(config)
    assert config == before and "seed" not in config["Global"]
    assert validate_config(checked) == checked


# --- parse_override ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, keys, value", [
    ("Global.epochs=10", ["Global", "epochs"], 10),
    ("Optimizer.lr.learning_rate=0.01", ["Optimizer", "lr", "learning_rate"], 0.01),
    ("DataLoader.Train.dataset.transform_ops.1.ResizeImage.size=[96,96]",
     ["DataLoader", "Train", "dataset", "transform_ops", 1, "ResizeImage", "size"], [96, 96]),
    ("Global.eval_during_train=False", ["Global", "eval_during_train"], False),
    ("Global.use_amp=true", ["Global", "use_amp"], True),
    ("Global.checkpoints=null", ["Global", "checkpoints"], None),
    ("Global.checkpoints=", ["Global", "checkpoints"], None),
    ("Global.checkpoints=output/latest", ["Global", "checkpoints"], "output/latest"),
    ("Metric.Eval.1={mAP: {}}", ["Metric", "Eval", 1], {"mAP": {}}),
    ("Optimizer.regularizer.coeff=1e-5", ["Optimizer", "regularizer", "coeff"], "1e-5"),  # YAML 1.1: a string
    ("A.scale=1.0/255.0", ["A", "scale"], "1.0/255.0"),
    ("Global.device=gpu:1", ["Global", "device"], "gpu:1"),
    ("Global.output_dir=a=b", ["Global", "output_dir"], "a=b"),
    ("  Global.epochs = 7 ", ["Global", "epochs"], 7),
    ("A.-1=x", ["A", "-1"], "x"),
    ("Global.epochs=__import__('os').system('touch x')", ["Global", "epochs"], "__import__('os').system('touch x')"),
])
def test_parse_override(text, keys, value):
    assert parse_override(text) == (keys, value)


@pytest.mark.parametrize("text, fragment", [
    ("Global.epochs", "no '='"), ("Global..epochs=1", "empty key segment"), ("=1", "empty key segment"),
    (".Global=1", "empty key segment"), ("Global.=1", "empty key segment"), ("A.b=[1, 2", "not valid YAML"),
    ("A.b=@x", "not valid YAML"),
])
def test_parse_override_errors(text, fragment):
    (path, message), = problems(lambda: parse_override(text))
    assert path == f"-o {text}" and fragment in message


def test_parse_override_type():
    with pytest.raises(TypeError, match="KEY=VALUE"):
        parse_override(["Global.epochs=1"])


# --- apply_overrides ---------------------------------------------------------------------------------------------

def test_apply_overrides(config):
    before = copy.deepcopy(config)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)  # all known keys: no warning
        out = apply_overrides(config, [
            "Global.epochs=2", "Global.seed=3", "Optimizer.lr.learning_rate=0.01", "Optimizer.lr.eta_min=1e-6",
            "DataLoader.Train.dataset.transform_ops.1.ResizeImage.size=[96,96]",
            "Loss.Train.1.TripletAngularMarginLoss.margin=0.3",
            "DataLoader.Train.sampler=null", "DataLoader.Train.sampler={name: PKSampler, batch_size: 8}",
            "Metric.Eval.0.Recallk.topk=[1, 10]", "AMP.use_amp=true", "Global.epochs=4"])
    assert config == before  # not changed in place
    assert (out["Global"]["epochs"], out["Global"]["seed"]) == (4, 3)  # later overrides win
    assert out["Optimizer"]["lr"]["learning_rate"] == 0.01 and out["Optimizer"]["lr"]["eta_min"] == "1e-6"
    assert out["DataLoader"]["Train"]["dataset"]["transform_ops"][1]["ResizeImage"]["size"] == [96, 96]
    assert out["DataLoader"]["Train"]["dataset"]["transform_ops"][6]["ResizeImage"]["size"] == [224, 224]
    assert out["Loss"]["Train"][1]["TripletAngularMarginLoss"]["margin"] == 0.3
    assert out["DataLoader"]["Train"]["sampler"] == {"name": "PKSampler", "batch_size": 8}
    assert out["Metric"]["Eval"][0]["Recallk"]["topk"] == [1, 10] and out["AMP"]["use_amp"] is True
    checked = validate_config(out)
    assert checked["Optimizer"]["lr"]["eta_min"] == 1e-6  # numeric strings become numbers


def test_new_keys_warn(config):
    with pytest.warns(ConfigWarning) as record:
        out = apply_overrides(config, ["Global.epoch=5"])
    (w,) = record
    message = str(w.message)
    assert message.startswith("-o Global.epoch=5: new key Global.epoch; existing keys at Global: checkpoints, ")
    assert "epochs" in message and out["Global"]["epoch"] == 5 and out["Global"]["epochs"] == 100
    with pytest.warns(ConfigWarning) as record:  # one warning per override, at the first new key
        out = apply_overrides(config, ["EMA.decay=0.999", "Arch.Head.class_nm=10"])
    assert [str(w.message).split(";")[0] for w in record] == ["-o EMA.decay=0.999: new key EMA",
                                                              "-o Arch.Head.class_nm=10: new key Arch.Head.class_nm"]
    assert "existing keys at the top level: Global, AMP, Arch" in str(record[0].message)
    assert out["EMA"] == {"decay": 0.999}
    # a known key of a section that is absent: no warning
    no_amp = {k: v for k, v in config.items() if k != "AMP"}
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        assert apply_overrides(no_amp, ["AMP.use_amp=true"])["AMP"] == {"use_amp": True}


def test_override_errors_all_at_once(config):
    with pytest.warns(ConfigWarning):
        found = problems(lambda: apply_overrides(config, [
            "DataLoader.Train.dataset.transform_ops.8.Pad.padding=4",
            "Optimizer.momentum.x=1",
            "Loss.Train.CELoss.weight=2",
            "Global.checkpoints.x=1",
            "Global.epochs",
            "Global.new=1",  # a warning, not a problem
            "Loss..Train=1"]))
    assert [p for p, _ in found] == ["DataLoader.Train.dataset.transform_ops[8].Pad.padding", "Optimizer.momentum.x",
                                     "Loss.Train.CELoss.weight", "Global.checkpoints.x", "-o Global.epochs",
                                     "-o Loss..Train=1"]
    messages = [m for _, m in found]
    assert "index 8 is past the end of DataLoader.Train.dataset.transform_ops, a list of length 8" in messages[0]
    assert "Optimizer.momentum is 0.9 (float), not a mapping or a list" in messages[1]
    assert "Loss.Train is a list of length 2: 'CELoss' is not an index" in messages[2]
    assert "Global.checkpoints is null" in messages[3]
    assert messages[0].startswith("-o DataLoader.Train.dataset.transform_ops.8.Pad.padding=4: ")


def test_overrides_must_be_a_list(config):
    with pytest.raises(TypeError, match="not the string"):
        apply_overrides(config, "Global.epochs=1")
    assert apply_overrides(config, None) == apply_overrides(config, ()) == config


def test_overrides_never_evaluate(config, tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("evaluated")
    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(ast, "literal_eval", forbidden)
    target = tmp_path / "pwned"
    code = f"__import__('pathlib').Path({str(target)!r}).touch()"
    found = problems(lambda: validate_config(apply_overrides(config, [f"Global.epochs={code}",
                                                                      "Global.print_batch_step=__import__('os')"])))
    assert [p for p, _ in found] == ["Global.epochs", "Global.print_batch_step"]
    assert found[0][1].startswith("must be an integer >= 1, got \"__import__('pathlib')")
    assert found[0][1].endswith("(str)")
    assert found[1][1] == "must be an integer >= 1, got \"__import__('os')\" (str)"
    assert not target.exists()
    # a string field keeps the text as it is
    out = validate_config(apply_overrides(config, [f"Global.output_dir={code}"]))
    assert out["Global"]["output_dir"] == code and not target.exists()


# --- validate_config: values -------------------------------------------------------------------------------------

BAD_VALUES = [  # override, key path, the value as quoted, what is allowed
    ("Global.epochs=0", "Global.epochs", "0 (int)", "an integer >= 1"),
    ("Global.epochs=2.5", "Global.epochs", "2.5 (float)", "an integer >= 1"),
    ("Global.epochs='10'", "Global.epochs", "'10' (str)", "an integer >= 1"),
    ("Global.epochs=true", "Global.epochs", "True (bool)", "an integer >= 1"),
    ("Global.save_interval=0", "Global.save_interval", "0 (int)", "an integer >= 1"),
    ("Global.eval_interval=-1", "Global.eval_interval", "-1 (int)", "an integer >= 1"),
    ("Global.start_eval_epoch=-1", "Global.start_eval_epoch", "-1 (int)", "an integer >= 0"),
    ("Global.print_batch_step=0", "Global.print_batch_step", "0 (int)", "an integer >= 1"),
    ("Global.eval_during_train=1", "Global.eval_during_train", "1 (int)", "true or false"),
    ("Global.eval_during_train='yes'", "Global.eval_during_train", "'yes' (str)", "true or false"),
    ("Global.checkpoints=5", "Global.checkpoints", "5 (int)", "null or a non-empty string"),
    ("Global.pretrained_model=[a]", "Global.pretrained_model", "['a'] (list)", "null or a non-empty string"),
    ("Global.output_dir=null", "Global.output_dir", "null", "a non-empty string"),
    ("Global.device=xpu", "Global.device", "'xpu' (str)", "'cpu', 'gpu' or 'gpu:N'"),
    ("Global.device=gpu:x", "Global.device", "'gpu:x' (str)", "'cpu', 'gpu' or 'gpu:N'"),
    ("Global.use_visualdl=true", "Global.use_visualdl", "True (bool)", "false (VisualDL logging is not supported)"),
    ("Global.eval_mode=classification", "Global.eval_mode", "'classification' (str)",
     "'retrieval' (only retrieval evaluation is implemented)"),
    ("Global.retrieval_feature_from=neck", "Global.retrieval_feature_from", "'neck' (str)",
     "one of 'features', 'backbone'"),
    ("Global.re_ranking=1", "Global.re_ranking", "1 (int)", "true or false"),
    ("Global.feature_binarize=floor", "Global.feature_binarize", "'floor' (str)", "null or one of 'sign', 'round'"),
    ("Global.leak_check=drop", "Global.leak_check", "'drop' (str)", "one of 'exclude', 'warn', 'ignore'"),
    ("Global.use_dali=true", "Global.use_dali", "True (bool)", "false (DALI is not supported"),
    ("Global.image_shape=[224, 224]", "Global.image_shape", "[224, 224] (list)", "[channels, height, width]"),
    ("Global.image_shape=[3, 0, 224]", "Global.image_shape", "[3, 0, 224] (list)", "three integers >= 1"),
    ("Global.seed=-1", "Global.seed", "-1 (int)", "an integer >= 0, or false (meaning 0, as in PaddleClas)"),
    ("Global.seed=true", "Global.seed", "True (bool)", "an integer >= 0, or false"),
    ("Global.feature_normalize=null", "Global.feature_normalize", "null", "true or false"),
    ("Global.sim_block_size=0", "Global.sim_block_size", "0 (int)", "an integer >= 1"),
    ("Global.update_freq=2", "Global.update_freq", "2 (int)", "1 (gradient accumulation is not supported)"),
    ("Global.to_static=true", "Global.to_static", "True (bool)", "false (static-graph training is not supported)"),
    ("Global.max_iterations=0", "Global.max_iterations", "0 (int)", "null or an integer >= 1"),
    ("AMP.use_amp=1", "AMP.use_amp", "1 (int)", "true or false"),
    ("AMP.scale_loss=0", "AMP.scale_loss", "0 (int)", "a number > 0"),
    ("AMP.scale_loss=big", "AMP.scale_loss", "'big' (str)", "a number > 0"),
    ("AMP.level=O3", "AMP.level", "'O3' (str)", "'O1' or 'O2'"),
    ("AMP.use_promote=null", "AMP.use_promote", "null", "true or false"),
    ("AMP=[1]", "AMP", "[1] (list)", "null or a mapping"),
    ("Optimizer.name=AdamW", "Optimizer.name", "'AdamW' (str)",
     "one of 'Momentum' (other optimizers are not supported yet)"),
    ("Optimizer.momentum=1", "Optimizer.momentum", "1 (int)", "a number with 0 <= x < 1"),
    ("Optimizer.momentum=-0.1", "Optimizer.momentum", "-0.1 (float)", "a number with 0 <= x < 1"),
    ("Optimizer.use_nesterov=maybe", "Optimizer.use_nesterov", "'maybe' (str)", "true or false"),
    ("Optimizer.no_weight_decay_name=bn", "Optimizer.no_weight_decay_name", "'bn' (str)",
     "null or empty (not supported yet)"),
    ("Optimizer.lr=0.1", "Optimizer.lr", "0.1 (float)", "a mapping"),
    ("Optimizer.lr.name=Piecewise", "Optimizer.lr.name", "'Piecewise' (str)", "one of 'Cosine'"),
    ("Optimizer.lr.learning_rate=0", "Optimizer.lr.learning_rate", "0 (int)", "a number > 0"),
    ("Optimizer.lr.learning_rate=nan", "Optimizer.lr.learning_rate", "'nan' (str)", "a number > 0"),
    ("Optimizer.lr.learning_rate=.inf", "Optimizer.lr.learning_rate", "inf (float)", "a number > 0"),
    ("Optimizer.lr.learning_rate=0.06/4", "Optimizer.lr.learning_rate", "'0.06/4' (str)", "a number > 0"),
    ("Optimizer.lr.warmup_epoch=-1", "Optimizer.lr.warmup_epoch", "-1 (int)", "a number >= 0"),
    ("Optimizer.lr.warmup_start_lr=-1e-3", "Optimizer.lr.warmup_start_lr", "'-1e-3' (str)", "a number >= 0"),
    ("Optimizer.lr.eta_min=x", "Optimizer.lr.eta_min", "'x' (str)", "a number >= 0"),
    ("Optimizer.lr.by_epoch=true", "Optimizer.lr.by_epoch", "True (bool)", "false (the learning rate changes every"),
    ("Optimizer.regularizer.name=L1", "Optimizer.regularizer.name", "'L1' (str)", "one of 'L2'"),
    ("Optimizer.regularizer.coeff=-1", "Optimizer.regularizer.coeff", "-1 (int)", "a number >= 0"),
    ("DataLoader.Train.sampler.batch_size=0", "DataLoader.Train.sampler.batch_size", "0 (int)", "an integer >= 1"),
    ("DataLoader.Eval.Query.sampler.batch_size=8.0", "DataLoader.Eval.Query.sampler.batch_size", "8.0 (float)",
     "an integer >= 1"),
    ("DataLoader.Eval.Gallery.sampler.name=null", "DataLoader.Eval.Gallery.sampler.name", "null", "a non-empty string"),
    ("DataLoader.Train.dataset.transform_ops={a: 1}", "DataLoader.Train.dataset.transform_ops", "{'a': 1} (dict)",
     "a list"),
    ("DataLoader.Train.dataset.image_root=3", "DataLoader.Train.dataset.image_root", "3 (int)", "a non-empty string"),
    ("DataLoader.Train.dataset.cls_label_path=''", "DataLoader.Train.dataset.cls_label_path", "'' (str)",
     "a non-empty string"),
    ("DataLoader.Train.dataset=list.txt", "DataLoader.Train.dataset", "'list.txt' (str)", "a mapping"),
    ("DataLoader.Train.loader.num_workers=-1", "DataLoader.Train.loader.num_workers", "-1 (int)", "an integer >= 0"),
    ("DataLoader.Train.loader.use_shared_memory=1", "DataLoader.Train.loader.use_shared_memory", "1 (int)",
     "true or false"),
    ("DataLoader.Eval=[]", "DataLoader.Eval", "[] (list)", "a mapping"),
    ("Metric.Eval.0.Recallk.topk=0", "Metric.Eval[0].Recallk.topk", "0 (int)", "an integer >= 1 or a non-empty list"),
    ("Metric.Eval.0.Recallk.topk=[]", "Metric.Eval[0].Recallk.topk", "[] (list)",
     "an integer >= 1 or a non-empty list"),
    ("Metric.Eval.0.Recallk.topk=[1, 0]", "Metric.Eval[0].Recallk.topk", "[1, 0] (list)", "an integer >= 1"),
    ("Metric.Eval.1.mAP.descending=false", "Metric.Eval[1].mAP.descending", "False (bool)",
     "True (features are ranked by descending similarity)"),
    ("Metric.Eval=[]", "Metric.Eval", "[] (list)", "a non-empty list"),
    ("Loss.Train=[]", "Loss.Train", "[] (list)", "a non-empty list"),
    ("Loss.Eval={CELoss: {weight: 1}}", "Loss.Eval", "{'CELoss': {'weight': 1}} (dict)", "a non-empty list"),
    ("Arch.name=null", "Arch.name", "null", "a non-empty string"),
    ("Arch=RecModel", "Arch", "'RecModel' (str)", "a mapping"),
]


@pytest.mark.parametrize("override, path, value, allowed", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_bad_value(config, override, path, value, allowed):
    (where, message), = problems(lambda: validate_config(apply_overrides(config, [override])))
    assert where == path
    allowed_part, got = message[:message.rindex(", got ")], message[message.rindex(", got "):]
    assert allowed_part.startswith("must be ") and allowed in allowed_part and got == f", got {value}", message


def test_many_problems_at_once(config, tmp_path):
    overrides = [b[0] for b in BAD_VALUES if not b[0].startswith(("Arch=", "Optimizer.lr=", "DataLoader.Eval=",
                                                                  "Metric.Eval=", "DataLoader.Train.dataset=",
                                                                  "AMP="))]
    # one value per key: the last override of a key wins, so keep the first of each path
    seen, chosen = set(), []
    for text in overrides:
        key = text.partition("=")[0]
        if key not in seen:
            seen.add(key)
            chosen.append(text)
    cfg = apply_overrides(config, chosen)
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    err = info.value
    assert len(err.problems) == len(chosen)
    assert str(err).startswith(f"{len(chosen)} problems in the config:\n  Global.")
    assert str(err).splitlines()[-1] == f"  ... and {len(chosen) - 20} more problems"
    assert len(str(err).splitlines()) == 22
    # through load_config: the file is named and each problem blames its override
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError) as info:
        load_config(path, chosen)
    assert info.value.source == str(path) and str(info.value).startswith(f"{path}: {len(chosen)} problems")
    assert all(" (set by -o " in m for _, m in info.value.problems)
    assert dict(info.value.problems)["Global.epochs"].endswith("(set by -o Global.epochs=0)")


def test_config_error_pickles():
    err = ConfigError([("Global.epochs", "must be an integer >= 1, got 0 (int)")], source="c.yaml")
    again = pickle.loads(pickle.dumps(err))
    assert (again.problems, again.source, str(again)) == (err.problems, err.source, str(err))


def test_numeric_strings_converted(config):
    out = validate_config(apply_overrides(config, [
        "Optimizer.regularizer.coeff=1e-5", "Optimizer.lr.learning_rate='6e-2'", "AMP.scale_loss=65536",
        "Optimizer.momentum=9E-1", "Optimizer.lr.warmup_epoch=2"]))
    coeff = out["Optimizer"]["regularizer"]["coeff"]
    assert coeff == 1e-5 and isinstance(coeff, float)
    assert out["Optimizer"]["lr"]["learning_rate"] == 0.06 and out["Optimizer"]["momentum"] == 0.9
    assert out["AMP"]["scale_loss"] == 65536 and isinstance(out["AMP"]["scale_loss"], int)  # numbers kept as given
    assert out["Optimizer"]["lr"]["warmup_epoch"] == 2 and isinstance(out["Optimizer"]["lr"]["warmup_epoch"], int)


def test_special_values(config):
    out = validate_config(apply_overrides(config, [
        "Global.seed=false", "AMP.level=o2", "Global.device=gpu:1", "Global.max_iterations=5", "Metric.Eval.1.mAP=null",
        "Metric.Eval.0.Recallk.topk=3", "Global.retrieval_feature_from=backbone", "Optimizer.no_weight_decay_name=''",
        "Optimizer.lr.by_epoch=false"]))
    assert (out["Global"]["seed"], out["AMP"]["level"], out["Global"]["device"]) == (0, "O2", "gpu:1")
    assert out["Global"]["max_iterations"] == 5 and out["Metric"]["Eval"] == [{"Recallk": {"topk": 3}}, {"mAP": {}}]
    cfg = copy.deepcopy(config)
    del cfg["Metric"]["Eval"][0]["Recallk"]["topk"]
    assert validate_config(cfg)["Metric"]["Eval"][0] == {"Recallk": {"topk": [1, 5]}}  # PaddleClas's default


def test_missing_keys_and_sections(config):
    cfg = copy.deepcopy(config)
    del cfg["Global"]["epochs"], cfg["Optimizer"]["lr"]["learning_rate"], cfg["DataLoader"]["Train"]["sampler"]
    del cfg["DataLoader"]["Eval"]["Gallery"], cfg["Optimizer"]["momentum"], cfg["Arch"]["name"]
    del cfg["DataLoader"]["Eval"]["Query"]["dataset"]["transform_ops"]
    assert problems(lambda: validate_config(cfg)) == [
        ("Global.epochs", "missing (required: an integer >= 1)"),
        ("Arch.name", "missing (required: a non-empty string)"),
        ("Optimizer.momentum", "missing (required: a number with 0 <= x < 1)"),
        ("Optimizer.lr.learning_rate", "missing (required: a number > 0)"),
        ("DataLoader.Train.sampler", "missing (required: a mapping)"),
        ("DataLoader.Eval.Gallery", "missing (required: a mapping)"),
        ("DataLoader.Eval.Query.dataset.transform_ops", "missing (required: a list)")]
    for section in ["Global", "Arch", "Loss", "Optimizer", "DataLoader", "Metric"]:
        cut = {k: v for k, v in config.items() if k != section}
        assert (section, "missing (required: a mapping)") in problems(lambda: validate_config(cut))
    validate_config({k: v for k, v in config.items() if k != "AMP"})  # AMP is optional
    validate_config(config | {"AMP": None})
    found = problems(lambda: validate_config(config | {"Loss": {"Eval": config["Loss"]["Eval"]}}))
    assert found == [("Loss.Train", "missing (required: a non-empty list of `- Name: {...}` entries)")]


@pytest.mark.parametrize("top", [None, [], "Global: 1", 3])
def test_top_level_not_a_mapping(top):
    (where, message), = problems(lambda: validate_config(top))
    assert where == "(top level)" and message.startswith("must be a mapping of sections")


def test_eval_sections_only_when_evaluating(config):
    train_only = {k: v for k, v in config.items() if k != "Metric"}
    train_only["DataLoader"] = {"Train": config["DataLoader"]["Train"]}
    assert problems(lambda: validate_config(train_only)) == [("Metric", "missing (required: a mapping)"),
                                                             ("DataLoader.Eval", "missing (required: a mapping)")]
    no_eval = apply_overrides(train_only, ["Global.eval_during_train=false"])
    assert validate_config(no_eval)["Global"]["eval_during_train"] is False
    validate_config(no_eval | {"Metric": None})
    assert len(problems(lambda: validate_config(no_eval, require_eval=True))) == 2
    assert validate_config(train_only, require_eval=False)  # an explicit choice wins over eval_during_train
    # present evaluation sections are checked even when not needed
    bad = apply_overrides(config, ["Global.eval_during_train=false", "DataLoader.Eval.Query.sampler.batch_size=0"])
    assert problems(lambda: validate_config(bad))[0][0] == "DataLoader.Eval.Query.sampler.batch_size"


def test_entries(config):
    cfg = apply_overrides(config, ["Loss.Train.0=CELoss", "Loss.Eval.0={CELoss: 1.0}",
                                   "Metric.Eval.1={TopkAcc: {topk: 1}}"])
    cfg["Metric"]["Eval"].append({"Recallk": {}, "mAP": {}})
    assert problems(lambda: validate_config(cfg)) == [
        ("Loss.Train[0]", "must be a one-key mapping `Name: {...}`, got 'CELoss' (str)"),
        ("Loss.Eval[0].CELoss", "must be a mapping of parameters, got 1.0 (float)"),
        ("Metric.Eval[1]", "'TopkAcc' is not supported; supported: Recallk, mAP"),
        ("Metric.Eval[2]", "must be a one-key mapping `Name: {...}`, got {'Recallk': {}, 'mAP': {}} (dict)")]


# --- warnings ----------------------------------------------------------------------------------------------------

def test_unknown_keys_warn(config):
    cfg = copy.deepcopy(config)
    cfg["Global"]["epoch"] = 5
    cfg["Global"]["use_gpu"] = True
    cfg["Optimizer"]["lr"]["warmup_epochs"] = 3
    cfg["DataLoader"]["Train"]["loader"]["workers"] = 2
    cfg["Metric"]["Eval"][0]["Recallk"]["k"] = 1
    cfg["Globl"] = {}
    cfg["Arch"]["Nekc"] = {}  # closed: the keys RecModel.from_config takes
    cfg["Arch"]["Head"]["anything"] = 1  # open below: the head builder checks it
    cfg["DataLoader"]["Train"]["sampler"]["anything"] = 1  # open
    cfg["DataLoader"]["Train"]["dataset"]["anything"] = 1  # open
    with pytest.warns(ConfigWarning) as record:
        validate_config(cfg)
    messages = [str(w.message) for w in record]
    assert len(messages) == 6
    assert messages[0].startswith("Global: unknown keys epoch, use_gpu; known: checkpoints, pretrained_model,")
    assert "epochs" in messages[0] and messages[0].endswith(", validation_split; ignored (a typo?)")
    assert messages[1] == ("(top level): unknown key Globl; known: Global, AMP, Arch, Loss, Optimizer, DataLoader, "
                           "Metric; ignored (a typo?)")
    assert messages[2] == ("Arch: unknown key Nekc; known: name, Backbone, BackboneStopLayer, Neck, Head, "
                           "head_feature_from, infer_output_key, infer_add_softmax; ignored (a typo?)")
    assert messages[3].startswith("Optimizer.lr: unknown key warmup_epochs; known: ") and "warmup_epoch," in messages[3]
    assert messages[4] == ("DataLoader.Train.loader: unknown key workers; known: num_workers, use_shared_memory; "
                           "ignored (a typo?)")
    assert messages[5].startswith("Metric.Eval[0].Recallk: unknown key k; known: topk, descending")
    # the wording is core's, the one unknown-key message of the package
    assert messages[1] == unknown_keys_message("(top level)", ["Globl"], SECTIONS) + "; ignored (a typo?)"


@pytest.mark.filterwarnings("ignore:No ccache found")  # core set its filter at collection, which pytest undoes
def test_arch_keys_are_the_models():
    "One definition: the model reads the keys the config accepts, in the order it passes them on."
    from feature_extraction import model
    assert model.ARCH_KEYS is ARCH_KEYS
    assert ARCH_KEYS[:4] == ("Backbone", "BackboneStopLayer", "Neck", "Head")


@pytest.mark.parametrize("path", ["configs/icons_cpu.yaml", f"configs/{NAME}",
                                  "feature_extraction/demo_data/demo.yaml"])
def test_shipped_configs_load_without_warnings(path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)
        cfg = load_config(REPO / path)
    assert set(cfg["Arch"]) - {"name"} <= set(ARCH_KEYS)


AMP_DEFAULTS = {"use_amp": False, "use_fp16_test": False, "scale_loss": 1.0, "use_dynamic_loss_scaling": False,
                "use_promote": False, "level": "O1"}  # PaddleClas's, with AMP off


@pytest.mark.parametrize("how", ["absent", "null"])
def test_defaults_the_engine_reads_are_filled_in(config, how):
    "Every key the engine reads with a default is present after the check, so the tables hold the only defaults."
    cfg = copy.deepcopy(config)
    train, query = cfg["DataLoader"]["Train"], cfg["DataLoader"]["Eval"]["Query"]
    del cfg["Global"]["device"]
    assert "delimiter" not in train["dataset"]
    for section, key in [(cfg, "AMP"), (cfg["Optimizer"], "regularizer"), (train, "loader"), (query, "loader")]:
        if how == "absent":
            del section[key]
        else:
            section[key] = None
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)  # a missing AMP section is no missing use_amp
        out = validate_config(cfg)
    assert out["AMP"] == AMP_DEFAULTS
    assert out["Global"]["device"] == "cpu"
    assert out["Optimizer"]["regularizer"] == {"name": "L2", "coeff": 0.0}  # no weight decay
    assert out["DataLoader"]["Train"]["loader"] == out["DataLoader"]["Eval"]["Query"]["loader"] == {"num_workers": 1}
    assert out["DataLoader"]["Train"]["dataset"]["delimiter"] == "default"
    g, lr = out["Global"], out["Optimizer"]["lr"]
    assert (g["seed"], g["start_eval_epoch"], g["max_iterations"], g["pretrained_model"], g["checkpoints"]) == (
        0, 0, None, None, None)
    assert (g["image_shape"], g["retrieval_feature_from"]) == ([3, 224, 224], "features")
    assert (lr["warmup_epoch"], lr["warmup_start_lr"], lr["eta_min"], out["Optimizer"]["use_nesterov"]) == (
        5, 0.0, 0.0, False)
    assert out["Metric"]["Eval"][0]["Recallk"]["topk"] == [1, 5]
    assert validate_config(out) == out


def test_regularizer_and_loader_given_keep_their_values(config):
    out = validate_config(apply_overrides(config, ["DataLoader.Train.loader.num_workers=0",
                                                   "DataLoader.Train.dataset.delimiter=null"]))
    assert out["DataLoader"]["Train"]["loader"] == {"num_workers": 0, "use_shared_memory": True}
    assert out["DataLoader"]["Train"]["dataset"]["delimiter"] is None
    assert out["Optimizer"]["regularizer"] == {"name": "L2", "coeff": 1e-5}
    found = problems(lambda: validate_config(apply_overrides(config, ["Optimizer.regularizer={name: L2}",
                                                                      "DataLoader.Train.dataset.delimiter=''"])))
    assert found == [("Optimizer.regularizer.coeff", "missing (required: a number >= 0)"),
                     ("DataLoader.Train.dataset.delimiter",
                      "must be 'default' (the data set's own), null (any run of whitespace) or a non-empty string, "
                      "got '' (str)")]


def test_unused_sections_warn_once(config):
    cfg = config | {"Infer": {"infer_imgs": "x"}, "IndexProcess": {}, "RecPreProcess": {}, "RecPostProcess": None,
                    "Slim": {}, "EMA": {"decay": 0.9999}}
    with pytest.warns(ConfigWarning) as record:
        out = validate_config(cfg)
    assert [str(w.message) for w in record] == [
        "Infer, IndexProcess, RecPreProcess, RecPostProcess, Slim, EMA: not used by training here, ignored"]
    assert out["EMA"] == {"decay": 0.9999}  # kept as they are


def test_amp_without_use_amp(config):
    cfg = config | {"AMP": {"scale_loss": 65536, "use_dynamic_loss_scaling": True, "level": "O1"}}  # the 2022 config
    with pytest.warns(ConfigWarning, match="use_amp is absent, so AMP is off"):
        out = validate_config(cfg)
    assert out["AMP"] == {"scale_loss": 65536, "use_dynamic_loss_scaling": True, "level": "O1", "use_amp": False,
                          "use_fp16_test": False, "use_promote": False}


# --- files -------------------------------------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.yaml"):
        load_config(tmp_path / "nothing.yaml")
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path)  # a folder


@pytest.mark.parametrize("text, where", [
    ("Global:\n  epochs: 10\n   print_batch_step: 5\n", "line 3, column 20"),
    ("Global: [1, 2\n", "line 2, column 1"),
    ("Global:\n\tepochs: 1\n", "line 2, column 1"),
    ("a: !!python/object/apply:os.system ['true']\n", "line 1, column 4"),
    ("a: 1\n---\nb: 2\n", "line 2, column 1"),
])
def test_yaml_errors(tmp_path, text, where):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (got, message), = info.value.problems
    assert got == where and message.startswith("YAML error: ")
    assert info.value.source == str(path) and str(info.value).startswith(f"{path}: 1 problem in the config:")


def test_empty_file(tmp_path):
    (tmp_path / "e.yaml").write_text("# nothing\n")
    assert problems(lambda: load_config(tmp_path / "e.yaml")) == [("(top level)",
                                                                     "must be a mapping of sections, got null")]


def test_duplicate_keys_warn(reference, tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text(reference.read_text() + "Global:\n  epochs: 1\n  epochs: 2\n")
    n = len(reference.read_text().splitlines())
    with pytest.warns(ConfigWarning) as record:
        cfg = load_config(path)
    last = "the last value is used"
    assert [str(w.message) for w in record] == [
        f"{path}, line {n + 1}: key 'Global' given twice in one mapping (first on line 2); {last}",
        f"{path}, line {n + 3}: key 'epochs' given twice in one mapping (first on line {n + 2}); {last}"]
    assert cfg["Global"]["epochs"] == 2


def test_anchors_and_merge_keys(tmp_path, reference):
    text = reference.read_text().replace("  Query:\n", "  Query: &query\n").split("    Gallery:\n")[0]
    text += ("    Gallery:\n      <<: *query\n      sampler:\n"
             "        name: DistributedBatchSampler\n        batch_size: 32\n")
    text += "\nMetric:\n  Eval:\n    - Recallk:\n        topk: [1, 5]\n"
    path = tmp_path / "merged.yaml"
    path.write_text(text)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConfigWarning)  # a key overriding a merged one is not given twice
        cfg = load_config(path)
    query, gallery = cfg["DataLoader"]["Eval"]["Query"], cfg["DataLoader"]["Eval"]["Gallery"]
    assert gallery["dataset"] == query["dataset"] and gallery["sampler"]["batch_size"] == 32
    assert query["sampler"]["batch_size"] == 64


def test_save_round_trip(reference, tmp_path):
    cfg = load_config(reference, ["Global.epochs=3"])
    path = save_config(cfg, tmp_path / "out" / "config.yaml")
    assert path == tmp_path / "out" / "config.yaml" and os.listdir(path.parent) == ["config.yaml"]
    assert load_config(path) == cfg
    text = path.read_text()
    assert text.startswith("Global:\n  checkpoints: null\n") and "&" not in text and "*" not in text
    assert "size: [224, 224]" in text and "scale: 1.0/255.0" in text
    assert oct(path.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_save_shared_objects_and_types(tmp_path):
    shared_list = [1, 2]
    cfg = {"a": shared_list, "b": shared_list, "t": (1, 2), "p": Path("x/y"), "n": np.float32(0.5), "i": np.int64(3),
           "u": "ü", "s": "1e-5"}
    path = save_config(cfg, tmp_path / "c.yaml")
    assert yaml.safe_load(path.read_text()) == {"a": [1, 2], "b": [1, 2], "t": [1, 2], "p": "x/y", "n": 0.5, "i": 3,
                                                "u": "ü", "s": "1e-5"}
    assert "&" not in path.read_text() and "ü" in path.read_text(encoding="utf-8")


def test_save_is_atomic(tmp_path, monkeypatch):
    path = save_config({"a": 1}, tmp_path / "c.yaml")
    with pytest.raises(yaml.representer.RepresenterError):  # not representable: nothing written
        save_config({"a": object()}, path)
    def broken_replace(src, dst):
        raise OSError("disk gone")
    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk gone"):
        save_config({"a": 2}, path)
    assert yaml.safe_load(path.read_text()) == {"a": 1} and os.listdir(tmp_path) == ["c.yaml"]
