"""`fe_demo`, the README's main-job command, end to end on the bundled data (a 2-epoch run), and its report
opened in headless Chromium: every figure must be drawn. nbs/17_demo.ipynb explains the demo."""
import json
import re
import shutil
import subprocess

import pytest


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple:
    "(output folder, printed text) of `fe_demo --output DIR -o Global.epochs=2 -o Global.eval_interval=1`."
    exe = shutil.which("fe_demo")
    assert exe, "fe_demo is not installed: pip install -e ."
    out = tmp_path_factory.mktemp("demo") / "run"
    r = subprocess.run([exe, "--output", str(out), "-o", "Global.epochs=2", "-o", "Global.eval_interval=1"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"fe_demo failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return out, r.stdout


def test_demo_prints_and_writes(demo):
    "Raw-pixel, untrained and trained numbers are printed in that order, with the report's path; every output is there."
    out, printed = demo
    rows = [line for line in printed.splitlines() if re.match(r"(raw pixels|untrained network|trained network):", line)]
    assert [row.split(":")[0] for row in rows] == ["raw pixels", "untrained network", "trained network"], printed
    for row in rows:
        assert re.fullmatch(r"[a-z ]+:\s+recall1 0\.\d{3}  recall5 0\.\d{3}  mAP 0\.\d{3}", row), row
        assert row.index("recall1") == 20, row  # the three rows line up
    assert f"report: {out / 'report.html'}" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 2 and 0 <= summary["trained"]["recall1"] <= 1
    assert summary["raw pixels"]["recall1"] == pytest.approx(0.306, abs=0.01)  # 16 x 16 pixels of the 588 test images
    assert rows[0] == f"raw pixels:         recall1 {summary['raw pixels']['recall1']:.3f}  " \
                      f"recall5 {summary['raw pixels']['recall5']:.3f}  mAP {summary['raw pixels']['mAP']:.3f}"
    assert sorted(p.name for p in out.iterdir()) == ["gallery", "inference", "report.html", "summary.json", "train"]
    page = (out / "report.html").read_text(encoding="utf-8")
    table = re.findall(r"<tr><td>([^<]+)</td><td>([0-9.]+)</td>", page)  # the retrieval table: model, recall1
    assert table[:3] == [(m, f"{summary[m]['recall1']:.4f}") for m in ("raw pixels", "untrained", "trained")]


def test_demo_history(demo):
    "The history starts with the untrained network's evaluation (iteration 0), then one per epoch."
    out, _ = demo
    history = [json.loads(line) for line in (out / "train" / "history.jsonl").read_text().splitlines()]
    evals = [(r["epoch"], r["iteration"] > 0) for r in history if r["kind"] == "eval"]
    assert evals == [(1, False), (1, True), (2, True)]


def test_report_renders_every_figure(demo, chromium):
    "Every figure of the report is drawn by plotly.js in a browser: an SVG in each, the images of the grid loaded."
    out, _ = demo
    page = (out / "report.html").read_text(encoding="utf-8")
    expected = int(re.search(r'<meta name="figures" content="(\d+)">', page)[1])
    assert expected == 6  # recall@k, training loss, recall over epochs, precision-recall, grid, projection
    dom = chromium("--virtual-time-budget=20000", "--dump-dom", (out / "report.html").as_uri())
    figures = dom.split('class="report-figure"')[1:]
    assert len(figures) == expected
    for i, fig in enumerate(figures):
        assert 'class="main-svg"' in fig, f"figure {i + 1} of {expected} was not drawn"
    recall = next(f for f in figures if "Recall@k" in f)
    assert re.findall(r'class="legendtext"[^>]*>([^<]+)<', recall) == ["raw pixels", "untrained", "trained"]
    grid = next(f for f in figures if "Queries (left)" in f)
    assert grid.count("<image") >= 8 * 2, "the retrieval grid's images are missing"
    projection = next(f for f in figures if "PCA to 2-D" in f)
    assert len(re.findall(r'class="point[ "]', projection)) == 588, "the projection does not show every test image"


def test_projection_shows_the_image_on_hover(demo, chromium, tmp_path):
    "Moving the mouse onto a point of the projection shows that point's image beside it."
    out, _ = demo
    page = (out / "report.html").read_text(encoding="utf-8")
    # a real mousemove at the pixel of point 7 (plotly's programmatic Fx.hover emits no hover event)
    hover = """<script>window.addEventListener("load", function () { setTimeout(function () {
      var gd = Array.from(document.querySelectorAll(".js-plotly-plot")).find(function (g) {
        return (g.data || []).some(function (t) { return t.meta === "hover-images"; }); });
      gd.scrollIntoView();
      var L = gd._fullLayout, drag = gd.querySelector(".nsewdrag"), box = drag.getBoundingClientRect();
      var x = box.left + L.xaxis.c2p(gd.calcdata[0][7].x), y = box.top + L.yaxis.c2p(gd.calcdata[0][7].y);
      drag.dispatchEvent(new MouseEvent("mousemove", {clientX: x, clientY: y, bubbles: true}));
      document.body.setAttribute("data-point-image", gd.data[0].customdata[7]);
    }, 500); });</script></body>"""
    probe = tmp_path / "report.html"
    probe.write_text(page.replace("</body>", hover), encoding="utf-8")
    dom = chromium("--virtual-time-budget=20000", "--dump-dom", probe.as_uri())
    expected = re.search(r'data-point-image="([^"]+)"', dom)
    assert expected, "the probe script did not run"
    shown = [t for t in re.findall(r"<img [^>]*>", dom) if "display: block" in t]
    assert len(shown) == 1 and f'src="{expected[1]}"' in shown[0], "the point's image is not shown on hover"
