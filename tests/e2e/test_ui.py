"""End to end in a real browser: a dream run against a local Prefect server shows its diff in the UI.

Starts `prefect server start` on a free loopback port (own PREFECT_HOME, analytics off), runs
`dreams run` against it in a subprocess, then loads the flow run's Artifacts tab and the diff
artifact's page in headless Chromium (Debian's `chromium`; scripts/install-chromium.sh installs it)
and checks the rendered DOM. Set DREAMS_SCREENSHOT_DIR to keep the PNG (docs/screenshots/).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from dreaming.catalog import Catalog
from dreaming.outcomes.charts import COLOURS
from dreaming.stores import StoreService
from tests.factories import T0, write_sessions

ROOT = Path(__file__).resolve().parents[2]
PREFECT = str(Path(sys.executable).with_name("prefect"))

pytestmark = pytest.mark.flow


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.skip("no chromium on PATH (install it with scripts/install-chromium.sh)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    home = tmp_path_factory.mktemp("prefect-home")
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_API_URL": api, "PREFECT_API_URL": api, "PREFECT_LOGGING_LEVEL": "WARNING"}
    log = open(home / "server.log", "w")
    proc = subprocess.Popen([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"prefect server exited: {(home / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            pytest.fail("prefect server did not become healthy in 150 s")
        yield {"api": api, "ui": f"http://127.0.0.1:{port}", "env": env}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _browse(chromium: str, url: str, profile: Path, screenshot: Path | None = None) -> str:
    """The page's visible text after the SPA has rendered (virtual time), and optionally a PNG."""
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=20000",
            "--window-size=1400,1000", "--hide-scrollbars"]
    if screenshot is not None:
        subprocess.run(base + [f"--screenshot={screenshot}", url], capture_output=True, timeout=120, check=True)
    dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True, timeout=120, check=True).stdout
    text = re.sub(r"<script.*?</script>|<style.*?</style>", " ", dom, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def test_flow_run_page_shows_the_diff_artifact(server, lake, tmp_path):
    chromium = _chromium()
    StoreService(Catalog(lake)).create("support-bot", scope="acme")
    # three sessions at different times (the same events at the same times would be copies of one session)
    write_sessions(lake, [{"session_id": f"sesn_ui_{i}", "start": T0 + timedelta(hours=i), "events": [
        ("user", "always use uv, never pip"), ("assistant", "noted, using uv")]} for i in range(3)])
    env = {**server["env"], "DREAMS_HOME": str(lake.home)}
    run = subprocess.run(
        [sys.executable, "-c", "import sys; from dreaming.cli import main; "
         "sys.argv = ['dreams', 'run', '--store', 'support-bot', '--json']; main()"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    dream = json.loads(run.stdout)
    assert dream["status"] == "completed" and dream["flow_run_id"]
    flow_run_id = dream["flow_run_id"]

    arts = httpx.post(f"{server['api']}/artifacts/filter", json={
        "flow_runs": {"id": {"any_": [flow_run_id]}}, "artifacts": {"type": {"any_": ["markdown"]}}}).json()
    diff = [a for a in arts if a["key"] and a["key"].endswith("-diff")]
    assert diff, arts
    added_path = re.search(r"`(/preferences/[^`]+)`", diff[0]["data"]).group(1)

    tab = _browse(chromium, f"{server['ui']}/v2/runs/flow-run/{flow_run_id}?tab=Artifacts", tmp_path / "p1")
    assert diff[0]["key"] in tab, tab[:1500]  # the run's Artifacts tab lists the diff artifact

    shot = tmp_path / "dream-diff-artifact.png"
    page = _browse(chromium, f"{server['ui']}/v2/artifacts/artifact/{diff[0]['id']}", tmp_path / "p2", shot)
    assert dream["id"] in page and added_path in page, page[:1500]  # the rendered diff itself
    assert shot.stat().st_size > 10_000
    if keep := os.environ.get("DREAMS_SCREENSHOT_DIR"):
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)

    # the promotion published the store's outcomes (tasks/outcomes.py); its charts are drawn in the UI
    outcomes = [a for a in arts if a["key"] == "outcomes-support-bot"]
    assert len(outcomes) == 1 and "data:image/svg+xml;base64," in outcomes[0]["data"], [a["key"] for a in arts]
    chart = tmp_path / "outcomes-artifact.png"
    page = _browse(chromium, f"{server['ui']}/v2/artifacts/artifact/{outcomes[0]['id']}", tmp_path / "p4", chart)
    assert "Outcomes of support-bot" in page, page[:1500]
    assert _has_colour(chart, COLOURS["error rate"]), "the rates chart was not drawn in the artifact page"
    if keep:
        shutil.copy(chart, Path(keep) / chart.name)


def _has_colour(png: Path, hex_rgb: str, tol: int = 12) -> bool:
    """Whether a screenshot holds a pixel of (about) this colour: what was drawn, not only what is in the DOM."""
    from PIL import Image

    want = tuple(int(hex_rgb[i:i + 2], 16) for i in (1, 3, 5))
    colours = Image.open(png).convert("RGB").getcolors(maxcolors=1 << 22)
    return any(max(abs(a - b) for a, b in zip(c, want)) <= tol for _, c in colours)


def test_outcomes_page_draws_its_charts_in_a_browser_offline(lake, tmp_path):
    """`dreams outcomes --html` on the recurrence scenario (a mistake that stopped after its memory was
    promoted, one that recurs): the page, opened from disk with networking off, draws both charts — the
    promotion marker and the error-rate line are on screen (pixels of their colours), not only in the DOM."""
    from typer.testing import CliRunner

    from dreaming.cli import app
    from tests.test_outcomes import build_recurred

    chromium = _chromium()
    build_recurred(lake)  # store `s`: a dream over 8 days of two recurring mistakes, promoted; 16 sessions after
    out = tmp_path / "outcomes.html"
    res = CliRunner().invoke(app, ["outcomes", "s", "--html", str(out)])
    assert res.exit_code == 0, res.output
    shot = tmp_path / "outcomes.png"
    text = _browse(chromium, out.as_uri(), tmp_path / "p3", shot)
    # the SVG's text is in the rendered DOM: the title, the promotion label, the legend, a pattern
    assert "rates per day, promotions marked" in text and "v2" in text and "error rate" in text, text[:1500]
    assert "most recurring patterns" in text
    assert _has_colour(shot, COLOURS["error rate"]) and _has_colour(shot, COLOURS["covered"]), \
        "the lines and bars were not drawn"
    if keep := os.environ.get("DREAMS_SCREENSHOT_DIR"):
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
