"""report.html in a real headless browser (Chromium through Playwright): it loads offline
with no console error, draws every interactive plot with its data, shows every step on zoom,
and its events filter works.

Needs the ``playwright`` package (the dev extra) and a Chromium of the system
(``apt-get install chromium``; or set ``CKSIM_CHROMIUM`` to a Chromium/Chrome executable).
Playwright's own browser download is not used. Without either the test skips and says why.
"""

from __future__ import annotations

import os
import shutil

import pytest
from _report_records import long_record, tiny_pngs

from cyberknife_sim.report import MAX_POINTS, write_report

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    """``CKSIM_CHROMIUM``, else the first Chromium/Chrome on ``PATH``."""
    env = os.environ.get("CKSIM_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else None
    for name in _NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
    exe = find_chromium()
    if exe is None:
        pytest.skip("no Chromium found: install the system package (apt-get install chromium) "
                    "or set CKSIM_CHROMIUM to a Chromium/Chrome executable")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, headless=True,
                               args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    """The report of a synthetic 30 min run (46,800 steps: decimated traces)."""
    rec, beams, summary = long_record(1800.0)
    out = tmp_path_factory.mktemp("browser")
    path = write_report(out, summary, [], tiny_pngs(out), record=rec, beams=beams)
    n_holds = sum(ev["kind"] == "hold" for ev in rec.events)
    return path, rec, n_holds


def test_report_renders_offline_without_errors(browser, page_file):
    path, rec, n_holds = page_file
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    errors, outside = [], []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def block(route):
        outside.append(route.request.url)
        route.abort()

    page.route("http*://**", block)  # offline: anything fetched from elsewhere is noted
    page.goto(path.as_uri())
    page.wait_for_function(
        "document.querySelectorAll('.plotly-figure .main-svg').length >= 3", timeout=20_000)

    # every figure drew its traces as SVG paths with many points
    drawn = page.evaluate("""() => Array.from(document.querySelectorAll('.plotly-figure'))
        .map(d => [d.id, Array.from(d.querySelectorAll('g.scatterlayer path.js-line'))
                          .map(p => (p.getAttribute('d') || '').split(/[LM]/).length)
                          .reduce((a, b) => a + b, 0)])""")
    drawn = dict(drawn)
    assert set(drawn) == {"fig-error", "fig-tracking", "fig-components"}
    assert drawn["fig-error"] > 2_000  # a 30 min error trace (Plotly simplifies the path)
    assert drawn["fig-tracking"] > 6 * 1_000
    assert drawn["fig-components"] > 5 * 200  # five traces, one point per 5 s bin
    # hold bands: one shaded rectangle per hold event
    shapes = page.evaluate("document.getElementById('fig-error').layout.shapes"
                           ".filter(s => s.name === 'hold').length")
    assert shapes == n_holds
    assert page.locator("#fig-error .shapelayer path").count() >= n_holds
    n_dec = page.evaluate("document.getElementById('fig-error')._fullData[0].x.length")
    assert 10_000 < n_dec <= MAX_POINTS

    # zoomed in to 60 s the error trace shows every step, and comes back on zooming out
    page.evaluate("Plotly.relayout('fig-error', {'xaxis.range': [600, 660]})")
    page.wait_for_function("document.getElementById('fig-error').dataset.view === 'raw'",
                           timeout=5_000)
    n_raw = page.evaluate("document.getElementById('fig-error')._fullData[0].x.length")
    t = rec.time_s
    assert abs(n_raw - int(((t >= 600) & (t < 660)).sum())) <= 1
    page.evaluate("Plotly.relayout('fig-error', {'xaxis.autorange': true})")
    page.wait_for_function(
        "document.getElementById('fig-error').dataset.view === 'decimated'", timeout=5_000)
    assert page.evaluate("document.getElementById('fig-error')._fullData[0].x.length") == n_dec

    # the events filter shows one kind
    page.locator("#events-section summary").click()
    page.select_option("#event-kind", "hold")
    visible = page.locator("#events tbody tr:visible").count()
    assert visible == n_holds

    assert errors == []
    assert outside == []
    page.close()
