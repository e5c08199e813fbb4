"""Measure the notebooks against the project's style rules: small exported cells, each public name tested.

    python tools/notebook_style.py            # a table, one row per notebook, and the offending cells
    python tools/notebook_style.py --check    # exit 1 if a rule is broken (tests/test_style.py runs this)

Rules (issue 17): the median exported cell has at most 12 lines and none has more than 30 (directive lines such as
`#| export` and blank lines are not counted); every public function or class an exported cell defines is named
in a later code cell that asserts (`test_eq`, `test_close`, `test_fail`, `test_ne`, `test_warns` or `assert`).
"""
import argparse
import ast
import json
import re
import statistics
import sys
from pathlib import Path

NBS = Path(__file__).resolve().parent.parent / "nbs"
MEDIAN_LIMIT = 12
MAX_LIMIT = 30
ASSERTS = re.compile(r"\b(test_eq|test_close|test_fail|test_ne|test_warns|test_is|test_shuffled|assert)\b")


def is_exported(source: str) -> bool:
    "True for a cell with an `#| export` or `#| exports` directive."
    return any(re.fullmatch(r"#\|\s*exports?\s*", line.strip()) for line in source.splitlines())


def code_lines(source: str) -> int:
    "Lines of a cell that are neither directives nor blank."
    return sum(1 for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#|"))


def public_names(source: str) -> list:
    "Names of the public top-level functions and classes a cell defines (`@patch` methods as `Class.method`)."
    try:
        tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith("#|")))
    except SyntaxError:
        return []
    names = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name.startswith("_"):
            continue
        names.append(node.name)
    return names


def notebook_report(path: Path) -> dict:
    "Exported-cell sizes and untested public names of one notebook."
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    sources = ["".join(c["source"]) for c in cells]
    sizes, long_cells, untested = [], [], []
    for index, source in enumerate(sources):
        if not is_exported(source):
            continue
        size = code_lines(source)
        sizes.append(size)
        if size > MAX_LIMIT:
            long_cells.append((cells[index].get("id"), size))
        later_tests = [s for s in sources[index + 1:] if not is_exported(s) and ASSERTS.search(s)]
        for name in public_names(source):
            if not any(re.search(rf"\b{re.escape(name)}\b", s) for s in later_tests):
                untested.append(name)
    return {"notebook": path.name, "cells": len(sizes), "median": statistics.median(sizes) if sizes else 0,
            "max": max(sizes, default=0), "long": long_cells, "untested": untested}


def problems(report: dict) -> list:
    "What breaks a rule in one notebook's report, as sentences."
    found = []
    if report["median"] > MEDIAN_LIMIT:
        found.append(f"median exported cell {report['median']} lines (at most {MEDIAN_LIMIT})")
    for cell_id, size in report["long"]:
        found.append(f"exported cell {cell_id} has {size} lines (at most {MAX_LIMIT})")
    for name in report["untested"]:
        found.append(f"{name} is not named in any later cell that asserts")
    return found


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if any notebook breaks a rule")
    parser.add_argument("notebooks", nargs="*", help="notebooks to measure (default: every nbs/[0-9]*.ipynb)")
    args = parser.parse_args(argv)
    paths = [Path(p) for p in args.notebooks] or sorted(NBS.glob("[0-9]*.ipynb"))
    broken = 0
    print(f"{'notebook':32} {'cells':>5} {'median':>6} {'max':>4}  problems")
    for path in paths:
        report = notebook_report(path)
        found = problems(report)
        broken += bool(found)
        print(f"{report['notebook']:32} {report['cells']:5} {report['median']:6} {report['max']:4}  {len(found)}")
        for sentence in found:
            print(f"    {sentence}")
    return 1 if args.check and broken else 0


if __name__ == "__main__":
    sys.exit(main())
