#!/usr/bin/env bash
# Every test of the project, in the order CI runs them. Run it after installing the package:
#   pip install -e ".[cpu,dev]" && bash tests/run_all.sh
# Any failure stops the run with a non-zero exit code.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONDONTWRITEBYTECODE=1

step() { printf '\n== %s\n' "$*"; }

step "1/7 the exported package matches the notebooks (nbdev_export, then git diff)"
nbdev_export
if [ -n "$(git status --porcelain -- feature_extraction)" ]; then
  git status --porcelain -- feature_extraction
  git --no-pager diff --stat -- feature_extraction
  echo "FAILED: nbdev_export changed feature_extraction/. Edit the notebooks, run nbdev_export, and commit both."
  exit 1
fi

step "2/7 README.md matches nbs/index.ipynb"
python tools/build_docs.py --check-readme

step "3/7 ruff (style rules in pyproject.toml) and the notebook style rules (tools/notebook_style.py)"
ruff check feature_extraction tests bench tools setup.py
python tools/notebook_style.py --check > /dev/null || { python tools/notebook_style.py; exit 1; }

step "4/7 notebooks (nbdev_test; cells flagged slow are skipped, add --flags slow to run them)"
(cd nbs && nbdev_test --n_workers 2)

step "5/7 headless Chromium (and its driver) for the documentation-site and web-page tests"
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/dev/null
  else
    echo "chromium or chromedriver is not installed and this is not root: the browser tests will be skipped (CI fails instead)."
  fi
fi
command -v chromium chromedriver || true

step "6/7 pytest (tests/)"
python -m pytest tests -q -p no:cacheprovider

step "7/7 the distributions: sdist and wheel built, their contents checked, the wheel repaired (auditwheel) and run installed in a fresh venv"
python tools/check_dist.py
