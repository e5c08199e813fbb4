"""The rules of tools/check_dist.py (what the sdist and the wheel may and must hold), on small archives made here;
the real build, repair and installed-wheel run are the last step of tests/run_all.sh."""
import importlib.util
import io
import tarfile
import zipfile

import pytest
from conftest import REPO

spec = importlib.util.spec_from_file_location("check_dist", REPO / "tools/check_dist.py")
check_dist = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_dist)
VERSION = check_dist.version()


def wheel_names() -> list:
    "What a good wheel holds: the tracked modules and data, one compiled module per .pyx, the metadata."
    names = check_dist.tracked("feature_extraction/*.py", "feature_extraction/demo_data", "feature_extraction/static")
    names += [f"feature_extraction/{p.split('/')[-1][:-4]}.cpython-311-x86_64-linux-gnu.so"
              for p in check_dist.tracked("csrc/_*.pyx")]
    return names + [f"feature_extraction-{VERSION}.dist-info/{n}" for n in ("METADATA", "entry_points.txt", "RECORD")]


def make_wheel(path, names: list):
    with zipfile.ZipFile(path, "w") as archive:
        for name in names: archive.writestr(name, "")
    return path


def make_sdist(path, names: list):
    with tarfile.open(path, "w:gz") as archive:
        for name in names:
            info = tarfile.TarInfo(f"feature_extraction-{VERSION}/{name}")
            archive.addfile(info, io.BytesIO(b""))
    return path


def test_a_good_wheel_passes_and_bad_ones_are_named(tmp_path):
    good = wheel_names()
    assert check_dist.check_wheel(make_wheel(tmp_path / "good.whl", good)) == []
    bad = [n for n in good if not n.endswith(".so") or "_retrieval" not in n] + [
        "csrc/_retrieval.pyx", "tests/test_metrics.py", "feature_extraction/__pycache__/core.cpython-311.pyc",
        "nbs/00_core.ipynb"]
    found = check_dist.check_wheel(make_wheel(tmp_path / "bad.whl", bad))
    assert "missing: feature_extraction/_retrieval.*" in found
    for name in ("csrc/_retrieval.pyx", "tests/test_metrics.py", "nbs/00_core.ipynb"):
        assert f"not allowed: {name}" in found, found
    assert "forbidden: feature_extraction/__pycache__/core.cpython-311.pyc" in found


@pytest.mark.parametrize("extra", [
    "csrc/_retrieval.cpp", "feature_extraction/_retrieval.cpython-311-x86_64-linux-gnu.so", "tests/test_metrics.py"])
def test_the_sdist_holds_the_sources_and_nothing_generated(tmp_path, extra):
    good = ["setup.py", "settings.ini", "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "PKG-INFO"]
    good += check_dist.tracked("csrc", "feature_extraction/*.py", "feature_extraction/demo_data",
                               "feature_extraction/static")
    assert check_dist.check_sdist(make_sdist(tmp_path / "good.tar.gz", good)) == []
    found = check_dist.check_sdist(make_sdist(tmp_path / "bad.tar.gz", [n for n in good if n != "csrc/_rerank.pyx"]
                                              + [extra]))
    assert "missing: csrc/_rerank.pyx" in found and any(extra in line for line in found), found
