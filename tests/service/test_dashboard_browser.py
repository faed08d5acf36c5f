"""The dashboard in a real headless browser (Debian's chromium + chromedriver, driven by
Selenium) against a live API and a real Celery worker: sign in, watch a job's progress advance
over the live stream, read its safety report side by side with the unprotected run, search the
replies, download and delete the adapter; another organization's job is a 404 page; the key is
never in a URL, a cookie JavaScript can read, or the API's log; forms without the session's CSRF
token or from another origin are refused.

Set BUCKLE_DASHBOARD_SCREENSHOTS=docs/dashboard to refresh the screenshots in docs/dashboard.md.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest
from servicekit import GOOD_JSONL, make_org, wait_for

SLOW = {"FAKE_STEPS": "16", "FAKE_STEP_S": "0.4", "FAKE_CKPT_EVERY": "4"}


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver:
        pytest.fail("chromium and chromedriver are needed: apt-get install -y chromium "
                    "chromium-driver (scripts/servers.sh does it)")
    downloads = tmp_path_factory.mktemp("downloads")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                "--window-size=1366,900"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.downloads = downloads
    yield chrome
    chrome.quit()


def _shot(browser, tmp_path: Path, name: str, at: str | None = None) -> None:
    if at:
        browser.execute_script("document.getElementById(arguments[0]).scrollIntoView();", at)
    browser.save_screenshot(str(tmp_path / f"{name}.png"))
    folder = os.environ.get("BUCKLE_DASHBOARD_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(folder) / f"{name}.png"))


def _job(api: httpx.Client, file_id: str, policy: str) -> str:
    reply = api.post("/v1/fine_tuning/jobs", json={
        "model": "smollm2-135m-instruct", "training_file": file_id, "safety": {"policy": policy}})
    assert reply.status_code == 200, reply.text
    return reply.json()["id"]


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
    unprotected = _job(api, file_id, "none")
    hardened = _job(api, file_id, "during")
    theirs = httpx.post(f"{url}/v1/files", headers=stranger.headers, data={"purpose": "fine-tune"},
                        files={"file": ("s.jsonl", GOOD_JSONL)}).json()["id"]

    browser.get(f"{url}/dashboard/jobs")  # not signed in: the sign-in form
    assert browser.current_url.endswith("/dashboard/login")
    browser.find_element(By.ID, "api_key").send_keys(org.key)
    _shot(browser, tmp_path, "login")
    browser.find_element(By.CSS_SELECTOR, "form.login button").click()
    wait_for(lambda: browser.current_url.endswith("/dashboard/jobs"), timeout=10)
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
    first = float(browser.find_element(By.ID, "job-progress").get_attribute("value"))
    wait_for(lambda: float(browser.find_element(By.ID, "job-progress")
                           .get_attribute("value")) > first + 10, timeout=30)
    assert browser.execute_script("return window.sameDocument === true;")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#loss-chart svg polyline"),
             timeout=20)  # the loss curve was redrawn from the stream's metrics
    assert browser.execute_script("return window.sameDocument === true;")
    events = len(browser.find_elements(By.CSS_SELECTOR, "#events li"))
    assert events >= 3
    _shot(browser, tmp_path, "job-running")
    # the finished job reloads itself into its final state and safety report
    wait_for(lambda: browser.find_element(By.ID, "job-status").text == "succeeded", timeout=60)
    table = browser.find_element(By.ID, "safety-table").text
    assert "base" in table and "unprotected" in table and "hardened" in table
    assert "50%" in table and "10%" in table and "n=10" in table
    title = browser.find_element(By.CSS_SELECTOR, "#safety svg title").get_attribute(
        "textContent")
    assert title.endswith("base vs. unprotected vs. hardened")
    assert browser.find_elements(By.CSS_SELECTOR, "#loss-chart svg polyline")
    _shot(browser, tmp_path, "job-report", at="safety")

    # the replies behind the score, searchable by text and verdict
    search = browser.find_element(By.ID, "q")
    search.send_keys("phishing")
    search.submit()
    wait_for(lambda: "q=phishing" in browser.current_url, timeout=10)
    rows = browser.find_elements(By.CSS_SELECTOR, "#replies tr.reply")
    assert len(rows) == 1 and "harmful" in rows[0].get_attribute("class")
    _shot(browser, tmp_path, "job-replies", at="h-replies")
    browser.get(f"{url}/dashboard/jobs/{hardened}?verdict=refused")
    rows = browser.find_elements(By.CSS_SELECTOR, "#replies tr.reply")
    assert len(rows) == 1 and "lock" in rows[0].text

    # adapters: download (sha256 as shown) and delete
    adapter = api.get(f"/v1/fine_tuning/jobs/{hardened}").json()["fine_tuned_model"]
    browser.get(f"{url}/dashboard/adapters")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-adapter="{adapter}"]')
    shown = row.find_element(By.CSS_SELECTOR, "code.sha").text
    _shot(browser, tmp_path, "adapters")
    row.find_element(By.LINK_TEXT, "Download").click()
    name = adapter.replace(":", "_") + ".tar.gz"
    wait_for(lambda: (browser.downloads / name).is_file(), timeout=30)
    assert hashlib.sha256((browser.downloads / name).read_bytes()).hexdigest() == shown
    row.find_element(By.CSS_SELECTOR, "form.delete button").click()
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
    victim = _job(api, other, "none")
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
