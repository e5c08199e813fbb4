#!/usr/bin/env python
"""Build the documentation site and README.md from the notebooks, offline.

nbdev's own `nbdev_docs` and `nbdev_readme` need Quarto. This script needs only the `dev` extra:
it applies nbdev's directives to the notebooks with nbdev's own processors (plus a few small ones
below), stages the result in `_proc/`, and builds a static mkdocs-material site from it with
mkdocs-jupyter. Notebooks are never executed: their stored outputs are shown, so commit them
executed. Settings (project name, description, repository, notebook folder) come from settings.ini.

    python tools/build_docs.py                  # the site into docs/, and README.md
    python tools/build_docs.py --readme         # README.md only
    python tools/build_docs.py --check-readme   # exit status 1 if README.md is out of date
"""
from __future__ import annotations

import argparse
import configparser
import difflib
import logging
import re
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALL_HINT = 'install the development tools with `pip install -e ".[dev]"`'
README_CMD = "python tools/build_docs.py --readme"
log = logging.getLogger("build_docs")

try:
    from execnb.nbio import read_nb, write_nb
    from nbdev.process import NBProcessor
    from nbdev.processors import (clean_magics, clean_show_doc, filter_stream_, hide_, hide_line,
                                  populate_language, rm_header_dash, strip_ansi, strip_hidden_metadata)
    from feature_extraction.plots import figure_html, plotly_js  # the figures' HTML, as in the package's reports
except ImportError as e:
    sys.exit(f"error: {e.name} is not installed: {INSTALL_HINT}")

# nbdev's Quarto docs drop `#| export` cells and show only their `show_doc` (its `rm_export`
# processor); they show `#| exports` cells. This project shows the source of `#| export` cells
# too (without the directive line). Set this to False to hide them as nbdev does.
SHOW_EXPORTED_SOURCE = True
# Cells that never appear in the docs: nbdev's `rm_export` drops these as well.
HIDDEN_DIRECTIVES = {"default_exp", "exporti"} | (set() if SHOW_EXPORTED_SOURCE else {"export"})
# Wider pages than mkdocs-material's default (61rem): the code lines of the notebooks are up to
# 120 characters. mkdocs.yml's extra_css names this file; it is written to the staging folder.
EXTRA_CSS = ("stylesheets/extra.css", ".md-grid { max-width: 90rem; }\n")
# plotly.js, from the `plotly` package, is staged here and loaded in each page's head (tools/docs_theme/main.html):
# figures are stored in the notebooks as plotly JSON, which `plotly_outputs` turns into HTML that draws them.
PLOTLY_JS = "javascripts/plotly.min.js"
PLOTLY_MIME = "application/vnd.plotly.v1+json"
# Tag that mkdocs.yml's `remove_tag_config` turns into "show the outputs only".
REMOVE_INPUT_TAG = "remove_input"


class DocsError(Exception):
    "A problem the user can fix; reported as one line, without a traceback."


def read_settings(root: Path = ROOT) -> configparser.SectionProxy:
    "The `[DEFAULT]` section of nbdev's settings.ini, with `%(...)s` references resolved."
    cfg = configparser.ConfigParser(delimiters=["="])
    if not cfg.read(root / "settings.ini", encoding="utf-8"): raise DocsError(f"{root / 'settings.ini'} not found")
    missing = [k for k in ("lib_name", "description", "git_url", "nbs_path") if k not in cfg["DEFAULT"]]
    if missing: raise DocsError(f"settings.ini: [DEFAULT] lacks {', '.join(missing)}")
    return cfg["DEFAULT"]


# --- Notebook processing ---------------------------------------------------------------------

def rm_hidden_directives(cell):
    "Drop cells whose directive keeps them out of the docs (see HIDDEN_DIRECTIVES)."
    if cell.directives_.keys() & HIDDEN_DIRECTIVES: del cell["source"]


_re_quarto_option = re.compile(r"^\s*#\s*\|\s*([\w-]+)\s*:\s*(.*?)\s*$")
# A Pandoc link with attributes, `[text](url){key="value" ...}`, as in show_doc's `[source]` link.
_re_pandoc_link = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)\{([^}]*)\}")


def _html_link(m: re.Match) -> str:
    attrs = "".join(f" {a}" for a in re.findall(r'[\w-]+="[^"]*"', m[3]))
    return f'<a href="{m[2]}"{attrs}>{m[1]}</a>'


def asis_markdown(outputs) -> str:
    "What Quarto puts in the page for an `output: asis` cell: its outputs as markdown."
    parts = []
    for o in outputs:
        data = o.get("data", {})
        text = data.get("text/markdown") or data.get("text/html") or data.get("text/plain") or o.get("text") or ""
        parts.append("".join(text).strip())
    # Quarto understands Pandoc's link attributes; the notebook renderer would print them as text.
    return _re_pandoc_link.sub(_html_link, "\n\n".join(p for p in parts if p))


def quarto_options(cell):
    """Apply the Quarto cell options that nbdev leaves in a cell for Quarto (those of the notebook,
    and `output: asis` + `echo: false`, which nbdev's `clean_show_doc` gives `show_doc` cells), then
    remove their lines. As in Quarto: `include: false` drops the cell, `output: false` its outputs,
    `echo: false` its source, and `output: asis` turns its outputs into markdown of the page."""
    if cell.cell_type != "code": return
    lines, opts = cell.source.splitlines(keepends=True), {}
    while lines and (m := _re_quarto_option.match(lines[0])):
        opts[m[1]] = m[2].strip("\"'").lower()
        lines.pop(0)
    cell.source = "".join(lines)
    if opts.get("include") == "false": del cell["source"]
    elif opts.get("output") == "asis":
        md = asis_markdown(cell.get("outputs", []))
        for k in ("outputs", "execution_count"): cell.pop(k, None)
        cell.cell_type, cell.source = "markdown", md
        if not md: del cell["source"]  # nothing stored, e.g. a show_doc cell of an unexecuted notebook
    else:
        if opts.get("output") == "false": cell.outputs = []
        if opts.get("echo") == "false": cell.metadata.setdefault("tags", []).append(REMOVE_INPUT_TAG)


def plotly_outputs(cell):
    "Turn stored plotly figures into HTML that draws them (with the image hover of `feature_extraction.plots`)."
    for out in cell.get("outputs", []):
        data = out.get("data", {})
        if PLOTLY_MIME in data:
            out["data"] = {"text/html": figure_html(data[PLOTLY_MIME])}


# The order follows nbdev's own docs processors (nbdev.processors.FilterDefaults.base_procs) minus
# those that need Quarto, execute code or point links at nbdev's page names.
DOC_PROCS = [populate_language, strip_ansi, hide_line, filter_stream_, rm_header_dash, clean_show_doc,
             rm_hidden_directives, clean_magics, hide_, quarto_options, strip_hidden_metadata, plotly_outputs]


def process_notebook(path: Path):
    "The notebook at `path` as its page shows it (an execnb notebook)."
    proc = NBProcessor(path, DOC_PROCS)  # also removes the `#| directive` lines
    proc.process()
    return proc.nb


def missing_outputs(path: Path) -> str | None:
    "Why the notebook at `path` looks unexecuted, or None."
    cells = [c for c in read_nb(path).cells if c.cell_type == "code" and c.source.strip()]
    no_doc = [c for c in cells if re.search(r"^show_doc", c.source, re.M) and not c.get("outputs")]
    if cells and not any(c.get("outputs") for c in cells): return "has no stored outputs"
    if no_doc: return f"has {len(no_doc)} show_doc cell(s) without output, so their API reference is missing"


_re_title = re.compile(r"^#\s+(.+?)\s*$", re.M)


def notebook_title(nb, path: Path) -> str:
    "The `# Title` of the first markdown cell (nbdev's convention), else the file name."
    first_md = next((c.source for c in nb.cells if c.cell_type == "markdown"), "")
    m = _re_title.search(first_md)
    return m[1].strip() if m else path.stem


def find_notebooks(nbs: Path) -> list[Path]:
    "Notebooks under `nbs` as nbdev finds them (no `_*` or `.*` names); index.ipynb first, then by name."
    found = [p for p in nbs.rglob("*.ipynb") if not any(s.startswith(("_", ".")) for s in p.relative_to(nbs).parts)]
    if not found: raise DocsError(f"no notebooks found in {nbs}")
    return sorted(found, key=lambda p: (p.relative_to(nbs).as_posix() != "index.ipynb", p.relative_to(nbs).as_posix()))


def stage(nbs: Path, stage_dir: Path) -> list[dict]:
    "Write the processed notebooks, and the other files of `nbs` (images...), to `stage_dir`; return the nav."
    shutil.rmtree(stage_dir, ignore_errors=True)
    shutil.copytree(nbs, stage_dir, ignore=shutil.ignore_patterns("*.ipynb", ".*", "_*", "*.yml", "*.yaml"))
    css = stage_dir / EXTRA_CSS[0]
    css.parent.mkdir(parents=True, exist_ok=True)
    css.write_text(EXTRA_CSS[1], encoding="utf-8")
    (stage_dir / PLOTLY_JS).parent.mkdir(parents=True, exist_ok=True)
    (stage_dir / PLOTLY_JS).write_text(plotly_js(), encoding="utf-8")
    nav = []
    for path in find_notebooks(nbs):
        if problem := missing_outputs(path):
            log.warning(f"{path.relative_to(nbs.parent)} {problem}: execute it and save it with its outputs")
        nb, rel = process_notebook(path), path.relative_to(nbs)
        (stage_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        write_nb(nb, stage_dir / rel)
        nav.append({notebook_title(nb, path): rel.as_posix()})
    return nav


# --- Site ----------------------------------------------------------------------------------------

def build_site(nbs: Path, site_dir: Path | None, settings, keep_staging: bool = False) -> Path:
    "Build the site with mkdocs (strict: any warning fails the build); return the site folder."
    try:
        # the theme and the plugin mkdocs.yml names, imported only to check that they are installed
        import material  # noqa: F401
        import mkdocs_jupyter  # noqa: F401
        from mkdocs.commands.build import build
        from mkdocs.config import load_config
        from mkdocs.exceptions import MkDocsException
    except ImportError as e:
        pip_name = {"material": "mkdocs-material", "mkdocs_jupyter": "mkdocs-jupyter"}.get(e.name, e.name)
        raise DocsError(f"{pip_name} is not installed: {INSTALL_HINT}")
    stage_dir = ROOT / "_proc"  # gitignored, as mkdocs.yml's docs_dir
    try:
        nav = stage(nbs, stage_dir)
        branch = settings.get("branch", "main")
        cfg = load_config(str(ROOT / "mkdocs.yml"), strict=True, nav=nav, docs_dir=str(stage_dir),
                          site_dir=str(site_dir.resolve()) if site_dir else None,
                          site_name=settings["lib_name"], site_description=settings["description"],
                          repo_url=settings["git_url"], edit_uri=f"blob/{branch}/{settings['nbs_path']}/")
        build(cfg)
        return Path(cfg.site_dir)
    except MkDocsException as e:
        raise DocsError(f"mkdocs: {e.format_message()}")
    finally:
        if not keep_staging: shutil.rmtree(stage_dir, ignore_errors=True)


# --- README --------------------------------------------------------------------------------------

def _fence(text: str, lang: str = "") -> str:
    fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`{3,}", text)), default=0))
    return f"{fence}{lang}\n{text}\n{fence}"


def text_output(outputs) -> str:
    "A code cell's printed and returned text (stderr, e.g. warnings, left out)."
    texts = []
    for o in outputs:
        if o.get("output_type") == "stream" and o.get("name") == "stdout": texts.append("".join(o["text"]))
        elif "text/plain" in o.get("data", {}): texts.append("".join(o["data"]["text/plain"]))
    return "\n".join(t.rstrip() for t in texts).strip("\n")


def readme_text(nbs: Path, settings) -> str:
    "README.md as generated from index.ipynb: its markdown, and code with text outputs as fenced blocks."
    index = nbs / "index.ipynb"
    if not index.exists(): raise DocsError(f"{index} not found: it is the source of README.md")
    parts = [f"<!-- Generated from {settings['nbs_path']}/index.ipynb by `{README_CMD}`: "
             "edit the notebook, not this file. -->"]
    for cell in process_notebook(index).cells:
        if cell.cell_type == "markdown": parts.append(cell.source.strip())
        elif cell.cell_type == "code":
            if REMOVE_INPUT_TAG not in cell.metadata.get("tags", []):
                parts.append(_fence(cell.source.strip(), "python"))
            if out := text_output(cell.get("outputs", [])): parts.append(_fence(out))
    return "\n\n".join(p for p in parts if p) + "\n"


def check_readme(nbs: Path, settings) -> bool:
    "Whether README.md is what `--readme` would write; if not, say so and show the difference."
    path, want = ROOT / "README.md", readme_text(nbs, settings)
    have = path.read_text(encoding="utf-8") if path.exists() else ""
    if have == want: return True
    diff = list(difflib.unified_diff(have.splitlines(), want.splitlines(), "README.md", "from index.ipynb",
                                     lineterm=""))
    print("\n".join(diff[:60] + (["..."] if len(diff) > 60 else [])), file=sys.stderr)
    print(f"error: README.md is out of date with {settings['nbs_path']}/index.ipynb: run `{README_CMD}`",
          file=sys.stderr)
    return False


# --- Command line --------------------------------------------------------------------------------


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--readme", action="store_true", help="only write README.md from index.ipynb")
    what.add_argument("--check-readme", action="store_true", help="only check that README.md is up to date")
    what.add_argument("--no-readme", action="store_true", help="build the site but leave README.md alone")
    parser.add_argument("--site-dir", type=Path, help="build the site here instead of docs/ (mkdocs empties it first)")
    parser.add_argument("--nbs-path", type=Path, help="notebook folder (default: nbs_path of settings.ini)")
    parser.add_argument("--keep-staging", action="store_true", help="keep the processed notebooks in _proc/")
    parser.add_argument("-v", "--verbose", action="store_true", help="show mkdocs's progress messages")
    args = parser.parse_args(argv)

    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s - %(message)s"))
    for name in ("mkdocs", "build_docs"):
        logging.getLogger(name).addHandler(handler)
        logging.getLogger(name).setLevel(logging.INFO if args.verbose else logging.WARNING)
        logging.getLogger(name).propagate = False  # paddle (imported with the package) sets up the root logger too

    try:
        settings = read_settings()
        nbs = (args.nbs_path or ROOT / settings["nbs_path"]).resolve()
        if not nbs.is_dir(): raise DocsError(f"notebook folder {nbs} not found")
        if args.check_readme: return 0 if check_readme(nbs, settings) else 1
        if not args.readme:
            start = time.perf_counter()
            site = build_site(nbs, args.site_dir, settings, args.keep_staging)
            print(f"Built the site in {site} in {time.perf_counter() - start:.1f}s")
        if not args.no_readme:
            (ROOT / "README.md").write_text(readme_text(nbs, settings), encoding="utf-8")
            print(f"Wrote README.md from {settings['nbs_path']}/index.ipynb")
    except DocsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
