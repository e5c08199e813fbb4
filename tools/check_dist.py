#!/usr/bin/env python
"""Build the sdist and the wheel, check what they hold, and run the installed wheel away from the clone.

    python tools/check_dist.py                 # build (python -m build: the sdist, then the wheel from it), check
                                               # both, repair the wheel (auditwheel), install it and run it
    python tools/check_dist.py --skip-build    # check and run what dist/ already holds

Steps, each failing with a message that says what is wrong:

1. `python -m build --outdir dist`: the sdist, then the wheel built from the unpacked sdist (so the sdist holds
   what a build needs); `twine check` on both (the README renders as the long description).
2. The contents: the sdist holds the sources a build needs and nothing generated (no `csrc/*.cpp`, no `.so`);
   the wheel holds the package's modules, one compiled module per `csrc/_*.pyx`, the demo data and the web
   page's files, and no tests, no Cython or C++ sources, no notebooks, no caches.
3. On Linux, `auditwheel repair` makes a `manylinux` wheel (bundling OpenMP's runtime), and `auditwheel show` must
   name a manylinux tag.
4. The repaired wheel installed with `--no-deps` into a fresh virtual environment that sees this environment's
   packages (the dependencies) but not its `feature_extraction`; from a folder outside the clone it imports the
   package, checks that every `feature_extraction` module comes from the new environment, runs `fe_demo --help`,
   a retrieval-metrics example, and an extraction of two demo images with an exported model.
"""
from __future__ import annotations

import argparse
import configparser
import fnmatch
import os
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import textwrap
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NAME = "feature_extraction"


def version() -> str:
    "The version's one source: settings.ini."
    settings = configparser.ConfigParser(delimiters=["="])
    settings.read(ROOT/"settings.ini", encoding="utf-8")
    return settings["DEFAULT"]["version"]


def run(*command, cwd=None, env=None) -> str:
    "Run a command; its output, or exit with the command and its output if it fails."
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        said = done.stdout[-4000:] + done.stderr[-4000:]
        sys.exit(f"FAILED ({done.returncode}): {' '.join(map(str, command))}\n{said}")
    return done.stdout


def tracked(*patterns) -> list:
    "Files git tracks under ROOT that match the patterns, as relative paths."
    return run("git", "ls-files", *patterns, cwd=ROOT).split()


# what the sdist may hold (relative to its top folder), and what it must hold beyond every tracked source of a build
SDIST_ALLOWED = ["setup.py", "settings.ini", "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", "MANIFEST.in",
                 "PKG-INFO", "setup.cfg", f"{NAME}.egg-info/*", "csrc/*.pyx", "csrc/*.pxd", "csrc/*.hpp",
                 f"{NAME}/*.py", f"{NAME}/demo_data/*", f"{NAME}/static/*"]
WHEEL_ALLOWED = [f"{NAME}/*.py", f"{NAME}/_*.so", f"{NAME}/_*.pyd", f"{NAME}/demo_data/*", f"{NAME}/static/*",
                 f"{NAME}-*.dist-info/*", f"{NAME}.libs/*"]
FORBIDDEN = ["*.pyx", "*.pxd", "*.cpp", "*.hpp", "*.ipynb", "*__pycache__*", "*.pyc", "tests/*", "*/tests/*", "*.o"]


def problems(names: list, allowed: list, forbidden: list, required: list) -> list:
    "What is wrong with an archive's file list: files not allowed, or forbidden, and required files missing."
    out = [f"not allowed: {n}" for n in names if not any(fnmatch.fnmatch(n, p) for p in allowed)]
    out += [f"forbidden: {n}" for n in names if any(fnmatch.fnmatch(n, p) for p in forbidden)]
    return out + [f"missing: {r}" for r in required if not any(fnmatch.fnmatch(n, r) for n in names)]


def check_sdist(sdist: Path) -> list:
    "The sdist's problems: everything a build needs, from git's tracked files, and nothing generated."
    top = f"{NAME}-{version()}/"
    with tarfile.open(sdist) as archive:
        names = [m.name[len(top):] for m in archive.getmembers() if m.isfile()]
    required = ["setup.py", "settings.ini", "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md"]
    required += tracked("csrc", f"{NAME}/*.py", f"{NAME}/demo_data", f"{NAME}/static")
    forbidden = [p for p in FORBIDDEN if p not in ("*.pyx", "*.pxd", "*.hpp", "*.cpp")] + ["*.so", "*.pyd", "*.cpp"]
    return problems(names, SDIST_ALLOWED, forbidden, required)


def check_wheel(wheel: Path) -> list:
    "The wheel's problems: the modules, one compiled module per csrc/_*.pyx, the data; no sources or tests."
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
    required = [f"{NAME}/{Path(p).stem}.*" for p in tracked("csrc/_*.pyx")]  # the compiled modules
    required += tracked(f"{NAME}/*.py", f"{NAME}/demo_data", f"{NAME}/static")
    required += [f"{NAME}-{version()}.dist-info/METADATA", f"{NAME}-{version()}.dist-info/entry_points.txt"]
    return problems(names, WHEEL_ALLOWED, FORBIDDEN, required)


def repair(wheel: Path, out_dir: Path) -> tuple:
    "(the manylinux wheel auditwheel makes of `wheel`, what `auditwheel show` says of it)."
    run(sys.executable, "-m", "auditwheel", "repair", wheel, "--wheel-dir", out_dir)
    (repaired,) = sorted(out_dir.glob("*.whl"))
    shown = run(sys.executable, "-m", "auditwheel", "show", repaired)
    if "manylinux" not in repaired.name or "manylinux" not in shown:
        sys.exit(f"FAILED: auditwheel made {repaired.name}, which names no manylinux tag:\n{shown}")
    return repaired, shown


SMOKE = '''
"The installed wheel at work, run from outside the clone: argv[1] is the virtual environment that holds it."
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np

import feature_extraction
from feature_extraction.data import demo_data
from feature_extraction.demo import demo_config
from feature_extraction.export import export_model
from feature_extraction.inference import FeatureExtractor, preprocess_ops
from feature_extraction.metrics import retrieval_metrics
from feature_extraction.model import build_model

prefix = Path(sys.argv[1]).resolve()
def inside(path) -> bool:
    return Path(path).resolve().is_relative_to(prefix)

assert inside(feature_extraction.__file__), f"imported from {feature_extraction.__file__}, not from {prefix}"
assert version("feature_extraction") == feature_extraction.__version__ == sys.argv[2], (
    version("feature_extraction"), feature_extraction.__version__, sys.argv[2])
labels = np.repeat(np.arange(50), 4)
rng = np.random.default_rng(0)
features = rng.normal(size=(50, 32))[labels] + 0.5 * rng.normal(size=(200, 32))
ids = np.arange(200)
metrics = retrieval_metrics(features, features, labels, labels, ids, ids, topk=(1,))
assert 0.9 < metrics["recall1"] <= 1, metrics
scripts = Path(sys.executable).parent
helped = subprocess.run([scripts / "fe_demo", "--help"], capture_output=True, text=True)
assert helped.returncode == 0 and helped.stdout.startswith("usage: fe_demo"), helped
work = Path(tempfile.mkdtemp())
config = demo_config(work / "train")
export_model(build_model(config["Arch"]).eval(), work / "inference", preprocess_ops(config))
images = sorted((demo_data() / "images").rglob("*.jpg"))[:2]
assert len(images) == 2 and all(inside(p) for p in images), images
extracted = FeatureExtractor(work / "inference", num_threads=1)(images)
assert extracted.shape == (2, 256) and np.allclose(np.linalg.norm(extracted, axis=1), 1, atol=1e-4), extracted.shape
extract = subprocess.run([scripts / "fe_extract", work / "inference", *images, "-o", work / "out"],
                         capture_output=True, text=True)
assert extract.returncode == 0 and np.array_equal(np.load(work / "out/features.npy"), extracted), extract.stderr
outside = [m.__file__ for name, m in sys.modules.items()
           if name.split(".")[0] == "feature_extraction" and getattr(m, "__file__", None) and not inside(m.__file__)]
assert not outside, f"modules from outside the new environment: {outside}"
print(f"the installed wheel works: {feature_extraction.__file__}; recall1 {metrics['recall1']:.3f}; "
      f"features {extracted.shape} by FeatureExtractor and fe_extract")
'''


def install_and_run(wheel: Path) -> str:
    "Install `wheel` with --no-deps into a new virtual environment that sees this one's packages, and run SMOKE."
    with tempfile.TemporaryDirectory(prefix="fe_wheel_") as folder:
        folder = Path(folder)
        run(sys.executable, "-m", "venv", folder/"venv")
        python = folder/"venv"/("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
        site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
        # this environment's packages after the new one's, as plain folders: their .pth files (an editable
        # install of this clone among them) are not run, so only the wheel can provide feature_extraction
        outer = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
        (site/"dependencies_of_the_clone.pth").write_text("\n".join(outer) + "\n")
        run(python, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", wheel)
        (folder/"smoke.py").write_text(textwrap.dedent(SMOKE))
        environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        return run(python, folder/"smoke.py", folder/"venv", version(), cwd=folder, env=environment).strip()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-build", action="store_true", help="check what dist/ already holds")
    parser.add_argument("--dist", default=str(ROOT/"dist"), help="where the sdist and wheels are written")
    args = parser.parse_args(argv)
    dist = Path(args.dist)
    if not args.skip_build:
        for old in [*dist.glob("*.whl"), *dist.glob("*.tar.gz"), *dist.glob("repaired/*.whl")]: old.unlink()
        run(sys.executable, "-m", "build", "--outdir", dist, ROOT)  # the sdist, then the wheel from the sdist
    sdists, wheels = sorted(dist.glob("*.tar.gz")), sorted(dist.glob("*.whl"))
    if len(sdists) != 1 or len(wheels) != 1: sys.exit(f"FAILED: {dist} must hold one sdist and one wheel")
    run(sys.executable, "-m", "twine", "check", "--strict", sdists[0], wheels[0])
    found = [f"{sdists[0].name}: {p}" for p in check_sdist(sdists[0])]
    found += [f"{wheels[0].name}: {p}" for p in check_wheel(wheels[0])]
    if found:
        sys.exit("FAILED: the distributions hold what they should not, or lack what they need:\n" + "\n".join(found))
    print(f"sdist {sdists[0].name} ({sdists[0].stat().st_size / 2**20:.1f} MiB), wheel {wheels[0].name} "
          f"({wheels[0].stat().st_size / 2**20:.1f} MiB): contents as allowed; twine check passed")
    wheel = wheels[0]
    if sys.platform.startswith("linux"):
        wheel, shown = repair(wheels[0], dist/"repaired")
        found = [f"{wheel.name}: {p}" for p in check_wheel(wheel)]
        if found: sys.exit("FAILED: the repaired wheel:\n" + "\n".join(found))
        with zipfile.ZipFile(wheel) as archive:
            bundled = sorted(Path(n).name for n in archive.namelist()
                             if n.startswith(f"{NAME}.libs/") and not n.endswith("/"))
        print(f"repaired: {wheel.name}; bundled: {', '.join(bundled) or 'nothing'}\n{shown.strip()}")
    print(install_and_run(wheel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
