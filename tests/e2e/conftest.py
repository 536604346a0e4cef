"""Browser end-to-end harness: a real ``streamlit run app.py`` server and Debian's Chromium via Playwright.

One server and one browser per test session (the e2e tests share an xdist group so they land on one
worker); each test gets a fresh page. Screenshots go to ``artifacts/screenshots/`` (ignored by git), the
server log to ``artifacts/streamlit-e2e.log``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
CHROMIUM = os.environ.get("TIERPLAN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
STARTUP_TIMEOUT_S = 90.0
#: Generous: the first plan of a session is computed cold on a loaded 2-core CI machine.
APP_TIMEOUT_MS = 60_000


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {proc.returncode}; log:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"streamlit did not become healthy within {STARTUP_TIMEOUT_S:.0f} s; log:\n{log.read_text()[-4000:]}")


def _tracked_images() -> dict[str, str]:
    import hashlib

    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((ROOT / "docs" / "img").glob("*"))
            if p.is_file()}


@pytest.fixture(scope="session", autouse=True)
def docs_untouched() -> Iterator[None]:
    """Tests must not rewrite tracked files: docs/img/ is only refreshed by `make screenshots`."""
    before = _tracked_images()
    yield
    if os.environ.get("TIERPLAN_UPDATE_SCREENSHOTS") != "1":
        assert _tracked_images() == before, "a browser test rewrote docs/img/ (use `make screenshots` for that)"


@pytest.fixture(scope="session")
def app_url() -> Iterator[str]:
    """Start the dashboard headless on a free port; stop it (its own process group) afterwards."""
    yield from _serve("streamlit-e2e.log")


@pytest.fixture()
def fresh_app_url() -> Iterator[str]:
    """A server no session has visited yet (for first-visit behaviour such as deep links)."""
    yield from _serve("streamlit-e2e-fresh.log")


def _serve(log_name: str) -> Iterator[str]:
    ARTIFACTS.mkdir(exist_ok=True)
    port = _free_port()
    log = ARTIFACTS / log_name
    cmd = [
        sys.executable, "-m", "streamlit", "run", "app.py",
        "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}; install it with `bash .ci/install-chromium` (make test does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture()
def page(browser: object, app_url: str) -> Iterator[object]:
    """A fresh browser page (own context: no shared session state) opened on the app."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)  # type: ignore[attr-defined]
    context.set_default_timeout(APP_TIMEOUT_MS)
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()


class AppDriver:
    """What every scenario needs: open the app or a page, wait for reruns, screenshot, check for exceptions."""

    def __init__(self, page: object, url: str) -> None:
        self.page = page
        self.url = url

    def wait_idle(self, timeout_ms: int = APP_TIMEOUT_MS) -> None:
        """Wait until the script has finished rerunning (the status widget says "Running…" meanwhile)."""
        self.page.wait_for_timeout(400)
        self.page.wait_for_function(
            """() => {
                const s = document.querySelector('[data-testid="stStatusWidget"]');
                return !s || !/running/i.test(s.innerText);
            }""",
            timeout=timeout_ms,
        )
        self.page.wait_for_timeout(250)

    def wait_refined(self, timeout_ms: int = APP_TIMEOUT_MS) -> None:
        """Wait until the refined plan is shown (the Plan page's "Refined: stages …" caption, drawn only for
        the final plan) and the page has rerun with it: charts are redrawn when it lands."""
        self.page.get_by_text("Refined: stages first").first.wait_for(timeout=timeout_ms)
        self.wait_idle(timeout_ms)

    def open(self, path: str = "") -> None:
        """Open the app (or ``path``, e.g. ``compare`` or ``?set=HBM.capacity%3D8GiB``) and wait for it."""
        self.page.goto(f"{self.url}/{path}")
        self.page.locator('[data-testid="stApp"]').wait_for()
        self.page.locator('[data-testid="stSidebar"]').wait_for()
        self.wait_idle()

    def screenshot(self, name: str, *, full: bool = True) -> Path:
        """Save a PNG. Streamlit scrolls inside its own container, so for a full page the viewport is grown
        to the content's height for the shot and restored afterwards."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        size = self.page.viewport_size
        if full and size:
            height = self.page.evaluate(
                """() => Math.max(...[...document.querySelectorAll('[data-testid="stMain"], section, .main')]
                                   .map(e => e.scrollHeight), document.body.scrollHeight)"""
            )
            self.page.set_viewport_size({"width": size["width"], "height": int(min(max(height, size["height"]), 8000))})
            self.page.wait_for_timeout(600)
        try:
            self.page.screenshot(path=str(path), full_page=True)
        finally:
            if full and size:
                self.page.set_viewport_size(size)
        return path

    def assert_no_exception(self) -> None:
        count = self.page.locator('[data-testid="stException"]').count()
        assert count == 0, f"{count} exception element(s) on the page"


@pytest.fixture()
def app(page: object, app_url: str) -> AppDriver:
    return AppDriver(page, app_url)

