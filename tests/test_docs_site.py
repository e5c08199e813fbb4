"""The documentation site builds from the notebooks and renders in a browser.

`tools/build_docs.py` builds the site into a temporary folder; it is served on the loopback interface
and opened in headless Chromium, and the rendered pages are checked for the prose, the API reference
(show_doc output) and the stored outputs of the examples, and for nbdev directives being honoured.
Chromium is Debian's `chromium`: without it the browser tests are skipped, or fail under CI.
"""
import functools
import html
import json
import http.server
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def page_text(dom: str) -> str:
    "The visible text of an HTML page: tags removed, entities decoded."
    dom = re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S | re.I)
    return html.unescape(re.sub(r"<[^>]+>", "", dom))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    "The site, built by the documented command into a temporary folder (README.md is left alone)."
    site_dir = tmp_path_factory.mktemp("site")
    r = subprocess.run([sys.executable, "tools/build_docs.py", "--no-readme", "--site-dir", str(site_dir)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"tools/build_docs.py failed:\n{r.stdout}\n{r.stderr}"
    assert not (ROOT / "_proc").exists(), "the build left its staging folder _proc/ behind"
    return site_dir


@pytest.fixture(scope="module")
def server(site):
    "Base URL of `site`, served by http.server on 127.0.0.1 (a free port) in a background thread."
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args): pass
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def test_site_files(site):
    "The pages, the search index and the styles are there, and the home page loads nothing from the internet."
    for name in ("index.html", "00_core.html", "01_metrics.html", "search/search_index.json", "stylesheets/extra.css"):
        assert (site / name).is_file(), f"{name} missing from the built site"
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "fonts.googleapis.com" not in index and "unpkg.com" not in index
    search = json.loads((site / "search/search_index.json").read_text(encoding="utf-8"))
    assert any(d["location"].startswith("01_metrics.html") and "retrieval" in d["text"].lower()
               for d in search["docs"]), "the search index lacks the metrics page"


def assert_shows(text: str, *needles: str, why: str):
    missing = [n for n in needles if n not in text]
    assert not missing, f"{why}: the page lacks {missing}"


def test_home_page(server, chromium):
    dom = chromium("--dump-dom", f"{server}/index.html")
    text = page_text(dom)
    assert_shows(text, "feature_extraction", "General image recognition by deep metric learning", "Run the tests",
                 why="the prose of index.ipynb is missing")
    for page, title in [("00_core.html", "Core"), ("01_metrics.html", "Retrieval metrics")]:
        nav_link = rf'href="{page}"[^>]*>(\s*<[^>]+>)*\s*{title}\s*<'
        assert re.search(nav_link, dom), f"no nav link to {page} titled {title!r}"
    assert "from feature_extraction.metrics import" not in text, "a `#| hide` cell is shown"
    assert_shows(text, "'num_queries': 400", why="the stored output of the first example is missing "
                 "(is nbs/index.ipynb saved with its outputs?)")


def test_metrics_page(server, chromium):
    text = page_text(chromium("--dump-dom", f"{server}/01_metrics.html"))
    assert_shows(text, "Retrieval metrics", "Exact, memory-bounded recall@k", why="the title or subtitle is missing")
    # The API reference is show_doc's output (its signature carries annotations, `topk:tuple=`), not the call.
    sig = re.search(r"def retrieval_metrics\(\s*query,.{0,400}?query_labels.{0,400}?topk:tuple=\(1, 5\)", text, re.S)
    assert sig, "the API reference (show_doc output) of retrieval_metrics is missing"
    assert "show_doc(" not in text, "a show_doc call is shown"
    # `#| export` cells are shown as code, without their directive lines; `#| default_exp` cells are not.
    assert_shows(text, "def as_features(", why="an exported cell is missing")
    assert not re.search(r"#\s*\|", text), "an nbdev directive line is shown"
    assert "default_exp" not in text, "a `#| default_exp` cell is shown"
    # Stored outputs of an executed example: PaddleClas's own metrics, reproduced.
    assert_shows(text, "'recall1': 0.5637583892617449", "'num_skipped_queries': 2",
                 why="stored outputs are missing (is nbs/01_metrics.ipynb saved with its outputs?)")


def test_metrics_page_screenshot(server, chromium, tmp_path):
    shot = tmp_path / "01_metrics.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,2000", "--hide-scrollbars", f"{server}/01_metrics.html")
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A blank 1280x2000 page compresses to about 10 kB; the styled page with text is over 300 kB.
    assert shot.stat().st_size > 100_000, f"screenshot {shot} looks blank ({shot.stat().st_size} bytes)"


def stored_figures(notebook: Path) -> int:
    "How many plotly figures `notebook` holds as stored outputs."
    nb = json.loads(notebook.read_text(encoding="utf-8"))
    return sum("application/vnd.plotly.v1+json" in o.get("data", {}) for c in nb["cells"] for o in c.get("outputs", []))


@pytest.mark.parametrize("notebook", sorted(p.name for p in (ROOT / "nbs").glob("*.ipynb") if stored_figures(p)))
def test_figures_render(server, chromium, notebook):
    "Every plotly figure stored in a notebook is drawn on its page by the site's own plotly.js (no internet)."
    page = notebook.replace(".ipynb", ".html")
    dom = chromium("--virtual-time-budget=20000", "--dump-dom", f"{server}/{page}")
    drawn = dom.count('class="main-svg"') // 3  # plotly draws three SVG layers per figure
    assert drawn == stored_figures(ROOT / "nbs" / notebook), f"{page}: {drawn} figures drawn"


def test_tutorials_in_site(site):
    "The tutorials are pages of the site, in its navigation."
    index = (site / "index.html").read_text(encoding="utf-8")
    tutorials = sorted(p.name for p in (ROOT / "nbs").glob("*_tutorial_*.ipynb"))
    assert len(tutorials) >= 4, tutorials
    for nb in tutorials:
        page = nb.replace(".ipynb", ".html")
        assert (site / page).is_file() and f'href="{page}"' in index, f"{page} is not in the site's navigation"
