"""Packaging promises: the parts that do not need PaddlePaddle import without it, and the compiled core
is really built (no silent fallback)."""
import subprocess
import sys


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_metrics_import_without_paddle():
    # sys.modules[name] = None makes any `import paddle` fail, as if PaddlePaddle were not installed
    r = run_python("import sys; sys.modules['paddle'] = None\n"
                   "import feature_extraction, feature_extraction.metrics as m\n"
                   "import numpy as np; x = np.array([[1, 0], [1, 0.1], [0, 1]]); ids = [0, 1, 2]\n"
                   "print(m.retrieval_metrics(x, x, [0, 0, 1], [0, 0, 1], ids, ids, topk=1)['recall1'])")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1.0"


def test_compiled_core_is_an_extension_module():
    import importlib
    for name in ("_retrieval", "_augment", "_decode", "_depthwise"):
        ext = importlib.import_module(f"feature_extraction.{name}")
        assert ext.__file__.endswith((".so", ".pyd")), ext.__file__


def test_data_pipeline_imports_without_paddle():
    r = run_python("import sys; sys.modules['paddle'] = None\n"
                   "import feature_extraction.loader, feature_extraction.transforms\n"
                   "from feature_extraction.core import compiled; print(compiled('_augment').instruction_set())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in ("avx2", "scalar")


def test_version_matches_settings():
    import configparser
    import feature_extraction
    from conftest import REPO
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "settings.ini")
    assert feature_extraction.__version__ == cfg["DEFAULT"]["version"]
