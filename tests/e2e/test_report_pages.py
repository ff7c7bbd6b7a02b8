"""Report pages in a real browser (headless Chromium): a society's, a two-seed sweep's agora-report page and a
study's page fit the window at 1280 and 800 px, every image loads, and the screenshots are not blank.
Skipped, with the reason, where Chromium is not installed (``make screenshots`` installs it on Debian)."""

from __future__ import annotations

import os

import pytest

from tests.browser import check_page, chromium, make_runs

# CI sets AGORA_REQUIRE_CHROMIUM=1 (after `make chromium`), so there a missing browser fails instead of skipping
NO_BROWSER = chromium() is None and not os.environ.get("AGORA_REQUIRE_CHROMIUM")
pytestmark = pytest.mark.skipif(NO_BROWSER, reason="no chromium on PATH: report pages are checked in a real "
                                "browser only where one is installed (apt-get install chromium; make screenshots)")


def _check(pages, out):
    results = {name: check_page(page, out / f"{name}.png") for name, page in pages.items()}
    for name, r in results.items():
        assert not r["problems"], f"{name}: {r['problems']}"
        assert r["at_1280"]["images"] >= 1 and r["at_1280"]["height"] > 800, name
    return results


def test_society_sweep_and_study_pages_fit_and_render(tmp_path):
    results = _check(make_runs(tmp_path / "runs", generations=False), tmp_path)
    assert set(results) == {"society", "sweep", "sweep_run"}
    assert results["society"]["at_1280"]["images"] == 3  # social graph, choices by cluster, stance shares


@pytest.mark.slow  # the generations run trains a reward model and DPO (~2 min on 2 cores)
def test_generations_page_fits_and_renders(tmp_path):
    pages = make_runs(tmp_path / "runs")
    _check({"generations": pages["generations"]}, tmp_path)
