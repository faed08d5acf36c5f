"""The dashboard in a real headless browser (Debian's chromium + chromedriver, driven by
Selenium) against a live API and a real Celery worker: sign in, watch a job's progress advance
over the live stream, read its safety report side by side with the unprotected run, search the
replies, download and delete the adapter; another organization's job is a 404 page; the key is
never in a URL, a cookie JavaScript can read, or the API's log; forms without the session's CSRF
token or from another origin are refused.

The `browser` fixture is in conftest.py; BUCKLE_DASHBOARD_SCREENSHOTS=docs/dashboard refreshes
the screenshots in docs/dashboard.md.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx
from servicekit import GOOD_JSONL, create_job, make_org, screenshot, sign_in, wait_for

SLOW = {"FAKE_STEPS": "24", "FAKE_STEP_S": "0.4", "FAKE_CKPT_EVERY": "4"}


def _read(browser, element_id: str, attribute: str | None = None) -> str | None:
    """An element's text (or attribute), None while the page is being replaced (the job page
    reloads itself when its job finishes)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        element = browser.find_element(By.ID, element_id)
        return element.get_attribute(attribute) if attribute else element.text
    except (NoSuchElementException, StaleElementReferenceException):
        return None


def _status(api: httpx.Client, job_id: str) -> str:
    return api.get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"]


def test_a_reviewer_follows_a_job_and_handles_its_adapter(fresh_stack, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    url = fresh_stack.start_api()
    fresh_stack.start_worker(**SLOW)
    org, stranger = make_org(), make_org()
    api = httpx.Client(base_url=url, headers=org.headers, timeout=30)
    file_id = api.post("/v1/files", files={"file": ("t.jsonl", GOOD_JSONL)},
                       data={"purpose": "fine-tune"}).json()["id"]
    unprotected = create_job(api, file_id, "none")
    hardened = create_job(api, file_id, "during")
    theirs = httpx.post(f"{url}/v1/files", headers=stranger.headers, data={"purpose": "fine-tune"},
                        files={"file": ("s.jsonl", GOOD_JSONL)}).json()["id"]

    sign_in(browser, url, org.key, shot=lambda: screenshot(browser, tmp_path, "login"))
    listed = [r.get_attribute("data-job") for r in browser.find_elements(By.CSS_SELECTOR,
                                                                         "tr[data-job]")]
    assert listed == [hardened, unprotected]
    Select(browser.find_element(By.ID, "status")).select_by_value("succeeded")
    browser.find_element(By.CSS_SELECTOR, "form.filters button").click()
    wait_for(lambda: "status=succeeded" in browser.current_url, timeout=10)

    # live progress: the bar moves while the page stays the same page (no reload)
    wait_for(lambda: _status(api, hardened) == "running", timeout=60)
    browser.get(f"{url}/dashboard/jobs/{hardened}")
    browser.execute_script("window.sameDocument = true;")
    first = float(_read(browser, "job-progress", "value"))
    wait_for(lambda: float(_read(browser, "job-progress", "value") or 0) > first + 10,
             timeout=30)
    assert browser.execute_script("return window.sameDocument === true;")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#loss-chart svg polyline"),
             timeout=20)  # the loss curve was redrawn from the stream's metrics
    assert browser.execute_script("return window.sameDocument === true;")
    events = len(browser.find_elements(By.CSS_SELECTOR, "#events li"))
    assert events >= 3
    screenshot(browser, tmp_path, "job-running")
    # the finished job reloads itself into its final state and safety report
    wait_for(lambda: _read(browser, "job-status") == "succeeded", timeout=60)
    table = browser.find_element(By.ID, "safety-table").text
    assert "base" in table and "unprotected" in table and "hardened" in table
    assert "50%" in table and "10%" in table and "n=10" in table
    title = browser.find_element(By.CSS_SELECTOR, "#safety svg title").get_attribute(
        "textContent")
    assert "base vs. unprotected vs. hardened" in title and "/" not in title
    assert browser.find_elements(By.CSS_SELECTOR, "#loss-chart svg polyline")
    screenshot(browser, tmp_path, "job-report", at="safety")

    # the replies behind the score, searchable by text and verdict
    search = browser.find_element(By.ID, "q")
    search.send_keys("phishing")
    search.submit()
    wait_for(lambda: "q=phishing" in browser.current_url, timeout=10)
    rows = browser.find_elements(By.CSS_SELECTOR, "#replies tr.reply")
    assert len(rows) == 1 and "harmful" in rows[0].get_attribute("class")
    screenshot(browser, tmp_path, "job-replies", at="h-replies")
    browser.get(f"{url}/dashboard/jobs/{hardened}?verdict=refused")
    rows = browser.find_elements(By.CSS_SELECTOR, "#replies tr.reply")
    assert len(rows) == 1 and "lock" in rows[0].text

    # adapters: download (sha256 as shown) and delete
    adapter = api.get(f"/v1/fine_tuning/jobs/{hardened}").json()["fine_tuned_model"]
    browser.get(f"{url}/dashboard/adapters")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-adapter="{adapter}"]')
    shown = row.find_element(By.CSS_SELECTOR, "code.sha").text
    screenshot(browser, tmp_path, "adapters")
    row.find_element(By.LINK_TEXT, "Download").click()
    name = adapter.replace(":", "_") + ".tar.gz"
    wait_for(lambda: (browser.downloads / name).is_file(), timeout=30)
    assert hashlib.sha256((browser.downloads / name).read_bytes()).hexdigest() == shown
    row.find_element(By.CSS_SELECTOR, "form.delete button").click()
    prompt = browser.switch_to.alert  # asked first
    assert "cannot be undone" in prompt.text
    prompt.dismiss()
    assert browser.find_elements(By.CSS_SELECTOR, f'tr[data-adapter="{adapter}"]')
    row.find_element(By.CSS_SELECTOR, "form.delete button").click()
    browser.switch_to.alert.accept()
    wait_for(lambda: "deleted=" in browser.current_url, timeout=10)
    assert not browser.find_elements(By.CSS_SELECTOR, f'tr[data-adapter="{adapter}"]')
    assert api.get(f"/v1/adapters/{adapter}").status_code == 404

    browser.get(f"{url}/dashboard/files")
    assert "rows flagged" in browser.find_element(By.CSS_SELECTOR, f'tr[data-file="{file_id}"]').text
    browser.get(f"{url}/dashboard/corpora")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Curated safety corpora"

    # another organization's job and file: a 404 page, as the API answers
    theirs_job = httpx.post(f"{url}/v1/fine_tuning/jobs", headers=stranger.headers, json={
        "model": "smollm2-135m-instruct", "training_file": theirs}).json()["id"]
    browser.get(f"{url}/dashboard/jobs/{theirs_job}")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
    cookie = browser.get_cookie("buckle_session")
    session = httpx.Client(base_url=url, cookies={"buckle_session": cookie["value"]})
    assert session.get(f"/dashboard/jobs/{theirs_job}").status_code == 404
    assert session.get(f"/dashboard/jobs/{theirs_job}/stream").status_code == 404

    # the key: never in a URL, not readable by scripts, not in the API's log
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert "buckle_session" not in browser.execute_script("return document.cookie;")
    time.sleep(0.5)
    logs = "".join(p.read_text() for p in Path(fresh_stack.env["BUCKLE_DATA_DIR"]).glob("*.log"))
    assert org.key not in logs and org.key not in browser.current_url

    # state changes need this session's CSRF token and this origin
    other = api.post("/v1/files", files={"file": ("u.jsonl", GOOD_JSONL)},
                     data={"purpose": "fine-tune"}).json()["id"]
    victim = create_job(api, other, "none")
    assert session.post(f"/dashboard/jobs/{victim}/cancel").status_code == 403
    csrf = browser.find_element(By.CSS_SELECTOR, "form.logout input[name=csrf]").get_attribute(
        "value")
    assert session.post(f"/dashboard/jobs/{victim}/cancel", data={"csrf": csrf},
                        headers={"Origin": "https://evil.example"}).status_code == 403
    assert _status(api, victim) != "cancelled"
    assert session.post(f"/dashboard/jobs/{victim}/cancel", data={"csrf": csrf},
                        headers={"Origin": url}).status_code == 303
    assert _status(api, victim) == "cancelled"

    # signing out ends the session server-side
    browser.find_element(By.CSS_SELECTOR, "form.logout button").click()
    wait_for(lambda: browser.current_url.endswith("/dashboard/login"), timeout=10)
    assert session.get("/dashboard/jobs", follow_redirects=False).status_code == 303
