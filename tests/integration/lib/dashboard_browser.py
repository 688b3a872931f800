#!/usr/bin/env python3
"""The dashboard in headless Chromium, driven by Selenium (chromium-driver).

    dashboard_browser.py BASE_URL EVIL_FOLDER

BASE_URL is kilnd's dashboard (http://127.0.0.1:PORT); the repository has
two images built one at a time on the stand-in engine in build_drip mode,
whose log lines carry colour codes and <b id="dripN"> markup; EVIL_FOLDER is
an image folder whose name is markup, and the commit's message is
`one <script>alert(2)</script>`. Checks, in order: the pages render;
a running build's log grows on screen while it runs and its state changes
when it ends (the script, through the event stream /builds/ID/events);
markup from the folder,
the commit message and the log is text (no element made, no alert, no colour code shown); the
filter form filters; and no request of the browser's went anywhere but
BASE_URL (the performance log), with no Content-Security-Policy complaint in
the console. Exit 0, 1 with the failures, or 77 when Chromium cannot start.
"""
import json
import sys
import tempfile
import time

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

BASE, EVIL = sys.argv[1], sys.argv[2]
failures = []


def fail(msg):
    print("  FAIL: " + msg, file=sys.stderr)
    failures.append(msg)


def wait(what, cond, limit=30.0):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            v = cond()
            if v:
                return v
        except WebDriverException:
            pass
        time.sleep(0.1)
    fail("timed out waiting for " + what)
    return None


def no_alert(drv, where):
    try:
        a = drv.switch_to.alert
        fail("%s: an alert opened: %r" % (where, a.text))
        a.dismiss()
    except NoAlertPresentException:
        pass


def start():
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--no-first-run", "--no-default-browser-check", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--disable-default-apps",
              "--disable-extensions", "--disable-features=Translate,OptimizationHints,MediaRouter",
              "--user-data-dir=" + tempfile.mkdtemp(prefix="kiln-chromium.")):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)


try:
    drv = start()
except WebDriverException as e:
    print("SKIPPED: chromium cannot start: %s" % str(e).splitlines()[0])
    sys.exit(77)
drv.set_page_load_timeout(20)

try:
    # the repositories page
    drv.get(BASE + "/")
    if drv.title != "Repositories · kiln":
        fail("/ title: %r" % drv.title)
    if "images" not in drv.find_element(By.ID, "repositories").text:
        fail("/ does not list the repository")
    if drv.find_element(By.TAG_NAME, "header").value_of_css_property("display") != "flex":
        fail("the stylesheet was not applied")

    # a running build: its log grows on screen
    def running_link():
        drv.get(BASE + "/builds?state=running")
        links = drv.find_elements(By.CSS_SELECTOR, "#builds tbody tr td:first-child a")
        return links[0].get_attribute("href") if links else None

    href = wait("a running build", running_link, 30)
    if href:
        drv.get(href)
        log = drv.find_element(By.ID, "log")
        first = log.text
        if drv.find_element(By.ID, "f-state").text != "running":
            fail("the build page does not say running")
        if drv.find_element(By.ID, "f-message").text != "one <script>alert(2)</script>":
            fail("the commit message is not shown as text: %r" % drv.find_element(By.ID, "f-message").text)
        if drv.find_elements(By.CSS_SELECTOR, "#build script"):
            fail("the commit message made a <script> element")
        grown = wait("the log to grow on screen",
                     lambda: len(drv.find_element(By.ID, "log").text) > len(first) + 20 and
                     drv.find_element(By.ID, "f-state").text == "running", 10)
        if grown:
            print("  the log grew from %d to %d characters while the build ran"
                  % (len(first), len(drv.find_element(By.ID, "log").text)))
        wait("the build's end on screen", lambda: drv.find_element(By.ID, "f-state").text == "succeeded", 40)
        text = drv.find_element(By.ID, "log").text
        if '<b id="drip0">x</b>' not in text or '<b id="drip39">x</b>' not in text:
            fail("the log's markup is not shown as text: %r" % text[-300:])
        if "\x1b" in text or "[32m" in text:
            fail("colour codes shown in the log")
        if drv.find_elements(By.CSS_SELECTOR, "#log *") or drv.find_elements(By.ID, "drip0"):
            fail("the log's markup made elements")
        lines = [l for l in text.splitlines() if l.startswith("drip ")]
        if len(lines) != 40 or len(set(lines)) != 40:
            fail("the live log lost or repeated lines: %d, %d distinct" % (len(lines), len(set(lines))))
        no_alert(drv, "the build page")

    # markup in an image folder
    drv.get(BASE + "/builds")
    wait("both builds listed", lambda: len(drv.find_elements(By.CSS_SELECTOR, "#builds tbody tr")) == 2, 5)
    if EVIL not in drv.find_element(By.ID, "builds").text:
        fail("the folder's name is not shown as text")
    if drv.find_elements(By.CSS_SELECTOR, "main img"):
        fail("the folder's name made an <img>")
    no_alert(drv, "/builds")
    evil_row = [r for r in drv.find_elements(By.CSS_SELECTOR, "#builds tbody tr") if EVIL in r.text]
    if evil_row:
        evil_row[0].find_element(By.CSS_SELECTOR, "td a").click()
        wait("the folder's build page", lambda: drv.find_element(By.ID, "f-path").text == EVIL, 5)
        if drv.find_elements(By.CSS_SELECTOR, "main img"):
            fail("the folder's build page made an <img>")
        no_alert(drv, "the folder's build page")

    # the filter form
    drv.get(BASE + "/builds")
    Select(drv.find_element(By.NAME, "state")).select_by_visible_text("failed")
    drv.find_element(By.CSS_SELECTOR, "#filters button").click()
    wait("the filtered page", lambda: "state=failed" in drv.current_url, 5)
    if drv.find_elements(By.CSS_SELECTOR, "#builds tbody tr") or not drv.find_elements(By.ID, "none"):
        fail("state=failed lists builds")
    Select(drv.find_element(By.NAME, "state")).select_by_visible_text("succeeded")
    drv.find_element(By.NAME, "image").send_keys(EVIL)
    drv.find_element(By.CSS_SELECTOR, "#filters button").click()
    wait("the filtered page", lambda: "state=succeeded" in drv.current_url, 5)
    rows = drv.find_elements(By.CSS_SELECTOR, "#builds tbody tr")
    if len(rows) != 1 or EVIL not in rows[0].text:
        fail("image and state filters: %d rows" % len(rows))
    if drv.find_element(By.NAME, "image").get_attribute("value") != EVIL:
        fail("the form does not keep the filter's value")
    no_alert(drv, "the filtered page")

    # the engine page
    drv.get(BASE + "/engine")
    if "state" not in drv.find_element(By.ID, "engine").text:
        fail("/engine has no engine state")

    # where the browser went, and what the console says
    urls = set()
    for entry in drv.get_log("performance"):
        m = json.loads(entry["message"])["message"]
        if m.get("method") == "Network.requestWillBeSent":
            urls.add(m["params"]["request"]["url"])
    # the network: chrome:// pages (the new tab before the first page) are
    # the browser's own, data: URLs are inline
    net = set(u for u in urls if u.split(":", 1)[0] in ("http", "https", "ws", "wss", "ftp"))
    away = sorted(u for u in net if not u.startswith(BASE + "/"))
    if away:
        fail("requests left %s: %s" % (BASE, away))
    if not any(u.endswith("/static/dashboard.js") for u in urls) or \
            not any("/events?offset=" in u for u in urls):
        fail("the performance log misses the script or the live log's stream: %s" % sorted(urls)[:10])
    if any("/log?offset=" in u for u in urls):
        fail("the live log was polled, not streamed")
    if not any(u.endswith("/static/favicon.svg") for u in net):
        fail("no request for the icon: the performance log may not see the network")
    print("  %d distinct network URLs requested, all on %s" % (len(net), BASE))
    for entry in drv.get_log("browser"):
        if "Content Security Policy" in entry["message"] or entry["level"] == "SEVERE":
            fail("console: " + entry["message"])
finally:
    drv.quit()

sys.exit(1 if failures else 0)
