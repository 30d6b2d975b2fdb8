"""The page in a real browser: Debian's Chromium, headless, driven by Selenium, against
a real server over the demo index. It asks the demo question; the highlighted element
must hold exactly the answer span and sit inside the viewer's visible area. The default
answer stage may abstain on it: then the abstention view is checked (not found, the
closest evidence marked as a suggestion), and the first demo question it does answer
is asked for the highlight; if it answers none, the headline question is asked of a
server that never abstains (``abstain_below`` 0). A screenshot is saved
(RAGMEM_SERVE_SCREENSHOT: where)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ragmem.config import Config
from ragmem.serve.app import create_app
from ragmem.serve.service import Service
from tests.serve.conftest import ROOT, running

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
HEADLINE = "Which bank's cellar were the robbers tunnelling into?"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("no Chromium here: apt-get install chromium chromium-driver (.ci/run "
                    "does; CI must have it)")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,800", "--disable-extensions"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options,
                              service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def ask(driver: Any, question: str) -> dict[str, Any]:
    """Type the question, send it with Enter, wait for the answer to be shown; the
    Answer JSON the page received (read back through the API's own ask)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    before = len(driver.find_elements(By.CSS_SELECTOR, ".turn .meta"))
    box = driver.find_element(By.ID, "question")
    box.send_keys(question, Keys.ENTER)  # the keyboard alone
    WebDriverWait(driver, 120).until(lambda d: any(
        "retrieve" in m.text for m in d.find_elements(By.CSS_SELECTOR, ".turn .meta")[before:]))
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#viewer-body mark"))
    turn = driver.find_elements(By.CSS_SELECTOR, ".turn")[-1]
    return {"turn": turn, "text": turn.find_element(By.CSS_SELECTOR, ".answer").text}


def mark_in_view(driver: Any) -> tuple[str, str]:
    """The viewer's mark: its class and text, checked to lie inside the visible viewer."""
    return driver.execute_script("""
        const mark = document.querySelector('#viewer-body mark');
        const box = document.getElementById('viewer-body').getBoundingClientRect();
        const r = mark.getBoundingClientRect();
        const inside = r.top >= box.top && r.bottom <= box.bottom && r.left >= box.left
                       && r.right <= box.right && r.height > 0 && r.width > 0;
        return [mark.className, mark.textContent, inside,
                mark.closest('.sentence') !== null];
    """)


def test_the_page_highlights_the_answer_in_its_document(browser: Any, demo_service: Service,
                                                        demo_home: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    questions = [json.loads(line)["question"] for line in
                 (ROOT / "ragmem/demo/questions.jsonl").read_text("utf-8").splitlines()
                 if line.strip()]
    assert questions[0] == HEADLINE
    assistant = demo_service.served("demo").assistant
    service, expected = demo_service, assistant.ask(HEADLINE)
    with running(create_app(demo_service)) as url:
        browser.get(url + "/")
        shown = ask(browser, HEADLINE)
        kind, text, inside, in_sentence = mark_in_view(browser)
        if expected.abstained:
            assert shown["text"] == "Not found in the indexed documents."
            suggestion = shown["turn"].find_element(By.CSS_SELECTOR, ".suggestions")
            assert "suggestion, not an answer" in suggestion.text
            assert kind == "suggestion" and inside
            assert text == expected.suggestions[0].quote
    if expected.abstained:
        answered = next((q for q in questions[1:] if not assistant.ask(q).abstained), None)
        if answered is None:  # the default abstains on all 11: make it answer the headline
            never = {"answering": {"abstain_below": 0.0}, "reader": {"abstain_below": 0.0}}
            service = Service(Config().with_overrides(never), demo_home)
            answered = HEADLINE
        expected = service.served("demo").assistant.ask(answered)
        assert not expected.abstained and expected.citations
        with running(create_app(service)) as url:
            browser.get(url + "/")
            shown = ask(browser, answered)
            kind, text, inside, in_sentence = mark_in_view(browser)
    citation = expected.citations[0]
    assert shown["text"] == " ".join(expected.text.split())  # as the browser renders it
    assert (kind, text) == ("answer", citation.quote) and text == expected.text
    assert inside, "the highlighted answer is outside the viewer's visible area"
    assert in_sentence, "the answer is highlighted inside its sentence"
    assert "confidence" in shown["turn"].find_element(By.CSS_SELECTOR, ".meta").text
    shot = tmp_path / "serve.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    if os.environ.get("RAGMEM_SERVE_SCREENSHOT"):
        shutil.copy(shot, os.environ["RAGMEM_SERVE_SCREENSHOT"])
    if service is not demo_service:
        service.close()


def test_the_page_fits_a_phone(browser: Any, demo_service: Service) -> None:
    with running(create_app(demo_service)) as url:
        browser.set_window_size(390, 844)
        browser.get(url + "/")
        wide = browser.execute_script(
            "return document.documentElement.scrollWidth > window.innerWidth")
        assert not wide, "the page scrolls sideways at phone width"
        browser.set_window_size(1280, 800)
