"""The HTML report in headless Chromium: loads offline, no console errors, no script injection.

Skips with a message when Chromium / chromedriver / selenium are not installed
(``scripts/test-setup.sh`` installs them during ``make test``).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_report_fixtures import make_analysis_folder, make_run


def _driver(tmp_path: Path):
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install selenium); browser test skipped")
    chrome = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_bin = shutil.which("chromedriver")
    if not chrome or not driver_bin:
        pytest.skip("headless Chromium not available (apt-get install chromium chromium-driver, "
                    "or run scripts/test-setup.sh); browser test skipped")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chrome
    for a in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--window-size=1280,2000", f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(options=opts, service=Service(driver_bin))
    except Exception as e:  # a broken browser install is an environment problem, not a report bug
        pytest.skip(f"could not start headless Chromium: {' '.join(str(e).split())[:200]}")


def _severe(logs: list[dict]) -> list[dict]:
    return [e for e in logs if e.get("level") in ("SEVERE", "ERROR")]


def test_run_report_in_browser(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from diziner.report import build_report

    run = make_run(tmp_path / "run")
    out = build_report(run)
    drv = _driver(tmp_path)
    try:
        drv.get(out.resolve().as_uri())
        for el_id in ("report-title", "summary", "charts", "chart-agreement", "chart-hotspots", "chart-f1",
                      "chart-annotators", "agreement", "heatmap-0", "heatmap-1", "hotspots", "hotspot-filter",
                      "hotspot-iteration", "hotspot-count", "guidelines", "guideline-0", "guideline-1",
                      "ledger", "ledger-table", "report-data"):
            assert drv.find_elements(By.ID, el_id), f"missing #{el_id}"
        # the injected script and the onerror handler did not run
        assert drv.execute_script("return typeof window.__pwned") == "undefined"
        # ... and the text is visible as text (in iteration 0's hotspot on the injected document)
        Select(drv.find_element(By.ID, "hotspot-iteration")).select_by_value("0")
        body = drv.find_element(By.TAG_NAME, "body").text
        assert "<script>window.__pwned=1</script>" in body
        assert 'onerror="window.__pwned=2"' in body
        # the category filter hides the other categories; the count says so
        cards = drv.find_elements(By.CSS_SELECTOR, "article.hotspot[data-iteration='0']")
        cats = {c.get_attribute("data-category") for c in cards}
        assert len(cards) >= 2 and len(cats) >= 2
        pick = min(cats)
        Select(drv.find_element(By.ID, "hotspot-filter")).select_by_value(pick)
        visible = [c for c in drv.find_elements(By.CSS_SELECTOR, "article.hotspot") if c.is_displayed()]
        assert visible and all(c.get_attribute("data-category") == pick for c in visible)
        n_pick = sum(1 for c in cards if c.get_attribute("data-category") == pick)
        assert drv.find_element(By.ID, "hotspot-count").text == f"showing {n_pick} of {len(cards)} hotspot" + (
            "" if len(cards) == 1 else "s")
        # a rule links to the hotspot that motivated it; following the link shows it
        Select(drv.find_element(By.ID, "hotspot-filter")).select_by_value("")
        Select(drv.find_element(By.ID, "hotspot-iteration")).select_by_value("1")
        drv.find_element(By.CSS_SELECTOR, "#guideline-1 > summary").click() if not drv.find_element(
            By.ID, "guideline-1").get_attribute("open") else None
        link = drv.find_element(By.CSS_SELECTOR, "#guideline-1 a[href='#hs-0-1']")
        link.click()
        target = drv.find_element(By.ID, "hs-0-1")
        assert target.is_displayed()
        drv.save_screenshot(str(tmp_path / "report.png"))
        assert (tmp_path / "report.png").stat().st_size > 10_000
        errors = _severe(drv.get_log("browser"))
        assert not errors, errors
    finally:
        drv.quit()


def test_analysis_report_in_browser(tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    from diziner.report import build_report

    folder = make_analysis_folder(tmp_path / "an")
    out = build_report(folder)
    drv = _driver(tmp_path)
    try:
        drv.get(out.resolve().as_uri())
        for el_id in ("summary", "hotspots", "hotspot-filter", "agreement", "chart-annotators", "chart-hotspots"):
            assert drv.find_elements(By.ID, el_id), f"missing #{el_id}"
        for el_id in ("guidelines", "ledger", "chart-agreement"):
            assert not drv.find_elements(By.ID, el_id), f"#{el_id} should be absent for an analyze folder"
        assert drv.execute_script("return typeof window.__pwned") == "undefined"
        assert drv.find_elements(By.CSS_SELECTOR, "article.hotspot")
        drv.save_screenshot(str(tmp_path / "analysis.png"))
        assert not _severe(drv.get_log("browser"))
    finally:
        drv.quit()


def test_corpus_browser_in_browser(tmp_path: Path) -> None:
    import json

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from diziner.report import build_report

    run = make_run(tmp_path / "run")
    rows = [json.loads(x) for x in (run / "final" / "annotations.jsonl").read_text(encoding="utf-8").splitlines()]
    out = build_report(run)
    drv = _driver(tmp_path)
    try:
        drv.get(out.resolve().as_uri())
        docs = drv.find_elements(By.CSS_SELECTOR, "#corpus article.doc")
        assert len(docs) == len(rows)
        # each delivered span is drawn, coloured by its support
        marks = drv.find_elements(By.CSS_SELECTOR, "#corpus article.doc > mark.ent, #corpus article.doc > span.hot > mark")
        assert len(marks) == sum(len(r["spans"]) for r in rows)
        classes = {m.get_attribute("class") for m in marks}
        assert {"ent sup-hi", "ent sup-lo"} <= classes or {"ent sup-hi", "ent sup-mid"} <= classes
        # hotspots only
        drv.find_element(By.ID, "corpus-hot").click()
        n_hot = sum(1 for r in rows if any(s.get("hotspot") for s in r["spans"]))
        assert 0 < n_hot < len(rows) and sum(d.is_displayed() for d in docs) == n_hot
        assert drv.find_element(By.ID, "corpus-count").text == f"showing {n_hot} of {len(rows)} documents"
        drv.find_element(By.ID, "corpus-hot").click()
        # a label
        Select(drv.find_element(By.ID, "corpus-label")).select_by_value("LOC")
        n_loc = sum(1 for r in rows if any(s["label"] == "LOC" for s in r["spans"]))
        assert 0 < n_loc < len(rows) and sum(d.is_displayed() for d in docs) == n_loc
        Select(drv.find_element(By.ID, "corpus-label")).select_by_value("")
        # low support: documents with a span of support ≤ 0.7
        drv.execute_script("var s=document.getElementById('corpus-support'); s.value='0.7';"
                           "s.dispatchEvent(new Event('input'));")
        n_low = sum(1 for r in rows if any(s["support"]["weight"] <= 0.7 for s in r["spans"]))
        assert sum(d.is_displayed() for d in docs) == n_low < len(rows)
        # the annotators' readings open on click
        first = docs[0] if docs[0].is_displayed() else next(d for d in docs if d.is_displayed())
        first.find_element(By.CSS_SELECTOR, "details > summary").click()
        assert len(first.find_elements(By.CSS_SELECTOR, "table.readings tr")) == 3  # gpt, claude, llama
        drv.find_element(By.ID, "corpus").screenshot(str(tmp_path / "corpus.png"))
        assert (tmp_path / "corpus.png").stat().st_size > 5_000
        assert not _severe(drv.get_log("browser"))
    finally:
        drv.quit()
