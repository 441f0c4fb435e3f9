"""The dashboard in a real browser (Debian's headless Chromium driven by Playwright) against a
real search: the page loads, the running search's progress advances, and a click on a trial
shows its generated code."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from neuromosaic_api.testing import LiveServer, api_settings, token

CHROMIUM = Path("/usr/bin/chromium")
#: Headless as root, and no attempt to reach the internet (see /work/shared/ENVIRONMENT.md);
#: Playwright adds --headless and a fresh --user-data-dir itself.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
FAST = ["task=digits", "training.epochs=1", "training.patience=1", "runner.workers=1", "visualizers=[]", "search.trials=30"]
NAME = "digits-mlp_conv1d-random"


@pytest.fixture
def browser():
    if not CHROMIUM.is_file():
        reason = f"Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
        print(reason)
        pytest.skip(reason)
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install playwright")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_the_dashboard_follows_a_running_search_and_shows_a_trials_code(tmp_path, browser):
    from neuromosaic_api.app import create_app
    from playwright import sync_api

    write = token("write")
    with LiveServer(create_app(api_settings(tmp_path, stop_grace_seconds=60))) as server:
        headers = {"Authorization": f"Bearer {write}"}
        created = httpx.post(f"{server.url}/api/experiments", headers=headers, json={"overrides": FAST, "start": True}, timeout=60)
        assert created.status_code == 201, created.text

        page = browser.new_page()
        expect = sync_api.expect
        page.goto(server.url + "/")
        page.fill("#token-input", write)
        page.click("#token-save")
        page.click(f'#experiments tr[data-name="{NAME}"]', timeout=60_000)
        # Locator assertions, not wait_for_function: the page's Content-Security-Policy forbids eval.
        count = page.locator("#progress-count")
        expect(count).not_to_have_text("0", timeout=120_000)
        first = int(count.text_content())
        # Progress advances on the page by itself (polling): more trials, a point per valued trial.
        expect(count).not_to_have_text(str(first), timeout=180_000)
        assert int(count.text_content()) > first
        expect(page.locator("#history circle").first).to_be_attached(timeout=60_000)
        expect(page.locator("#search-state")).to_have_text("running")
        expect(page.locator("#best")).not_to_have_text("-")

        page.click("#trials tbody tr[data-number]")
        expect(page.locator("#trial-code")).to_contain_text("class ", timeout=30_000)
        number = int(page.text_content("#trial-title").split()[1])
        shown = page.text_content("#trial-code")
        stored = httpx.get(f"{server.url}/api/experiments/{NAME}/trials/{number}/code", headers=headers, timeout=30)
        assert shown == stored.text and "nn.Module" in shown

        stop = httpx.post(f"{server.url}/api/experiments/{NAME}/stop", headers=headers, timeout=30)
        assert stop.status_code == 202
