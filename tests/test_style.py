"""The code-organisation rules of issue 17, checked on the exported package (ruff checks the rest)."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "feature_extraction"
MODULES = sorted(p for p in PACKAGE.glob("*.py") if p.name != "_modidx.py")


def lines_matching(pattern: str, exclude: tuple = ()) -> list:
    "`module:line: text` for every package line that matches `pattern`, outside the modules in `exclude`."
    found = []
    for module in MODULES:
        if module.name in exclude:
            continue
        for number, line in enumerate(module.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{module.name}:{number}: {line.strip()}")
    return found


def test_lines_at_most_120_characters():
    # nbdev writes the first line of `__all__` itself, wrapped before its prefix is added (see pyproject.toml)
    long = [hit for hit in lines_matching(r"^.{121,}$") if ": __all__ = [" not in hit]
    assert not long, "\n".join(long)


def test_argparse_only_in_cli():
    assert not lines_matching(r"^\s*(import argparse|from argparse)", exclude=("cli.py",))


def test_one_atomic_write_helper():
    assert not lines_matching(r"os\.replace|os\.rename|\.rename\(|\.replace\(tmp", exclude=("core.py",))


def test_one_digest_helper():
    assert not lines_matching(r"hashlib\.sha256\(\)", exclude=("core.py",))


def test_one_unknown_key_wording():
    assert not lines_matching(r"unknown key", exclude=("core.py",))


def test_no_methods_attached_by_assignment():
    # later-cell methods use fastcore's @patch, so a module's namespace holds only what users import
    assert not lines_matching(r"^[A-Z]\w*\.\w+ = [a-z_]\w*$")


def test_notebook_style_rules():
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "notebook_style.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


def test_style_checker_fails_on_a_bad_notebook(tmp_path):
    cells = [{"cell_type": "code", "id": "a", "metadata": {}, "outputs": [], "execution_count": None,
              "source": ["#| export\n", "def public_thing():\n"] + ["    x = 1\n"] * 31}]
    notebook = tmp_path / "99_bad.ipynb"
    notebook.write_text('{"cells": %s, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}'
                        % __import__("json").dumps(cells))
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "notebook_style.py"), "--check", str(notebook)],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert "public_thing is not named" in done.stdout
    assert "has 32 lines" in done.stdout
