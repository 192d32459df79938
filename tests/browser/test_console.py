"""The web console in a real browser (Debian's Chromium, headless, through
chromium-driver): every role signs in and does its job, on a phone-sized
screen for the operator; accessibility (axe-core) on every page; CSRF,
session expiry, revocation; screenshots at 360x740 and 1440x900.

Run by crates/kenning-cli/tests/console.rs, which starts two `kenning
serve` (one with a 3-second console idle timeout) and sets:
KENNING_CONSOLE_URL, KENNING_SHORT_URL, KENNING_TEST_KEY_ID,
KENNING_TEST_SECRET, KENNING_TEST_DATA (../shared/data),
KENNING_TEST_DATA_DIR (the first server's data directory),
KENNING_AXE (axe.min.js), KENNING_SCREENSHOTS (where screenshots go).

The tests run in file order and share state: the admin sets up, the
operator searches, two reviewers confirm, the auditor counts it.
"""

import base64
import hashlib
import json
import os
import pathlib
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

URL = os.environ["KENNING_CONSOLE_URL"]
SHORT_URL = os.environ["KENNING_SHORT_URL"]
ROOT = (os.environ["KENNING_TEST_KEY_ID"], os.environ["KENNING_TEST_SECRET"])
DATA = pathlib.Path(os.environ["KENNING_TEST_DATA"])
DATA_DIR = pathlib.Path(os.environ["KENNING_TEST_DATA_DIR"])
AXE = pathlib.Path(os.environ["KENNING_AXE"]).read_text()
SHOTS = pathlib.Path(os.environ["KENNING_SCREENSHOTS"])
SHOTS.mkdir(parents=True, exist_ok=True)

EXAMPLES = DATA / "misc/face_recognition/examples"
CASE = "CASE-2026-0042"
PHONE = (360, 740)
DESKTOP = (1440, 900)
COLLECTION = "watchlist"

# What the tests hand on to each other.
STATE = {}
DRIVERS = []
# Every browser's profile lives under this one folder, removed with the
# browsers (the `browsers` fixture), so no run leaves profiles in /tmp.
PROFILES = pathlib.Path(tempfile.mkdtemp(prefix="kenning-chromium-"))
PAGES_CHECKED = []
# Pages whose header or body does not fit a phone's width (and what).
TOO_WIDE = {}


def new_browser(size):
    o = Options()
    o.binary_location = "/usr/bin/chromium"
    for a in [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
        "--disable-dev-shm-usage", "--disable-default-apps", "--hide-scrollbars",
        f"--user-data-dir={tempfile.mkdtemp(dir=PROFILES)}",
    ]:
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=o)
    d.set_script_timeout(60)
    d.set_page_load_timeout(120)
    resize(d, size)
    DRIVERS.append(d)
    return d


def resize(d, size):
    w, h = size
    d.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                      {"width": w, "height": h, "deviceScaleFactor": 1, "mobile": w < 500})
    d.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": w < 500})
    d.size = size


def wait(d, cond, timeout=120):
    # Pages change under the condition while a form is being answered; Chrome
    # then reports a node of the old page as stale, or as not belonging to
    # the document.
    ignored = [StaleElementReferenceException, NoSuchElementException]

    def settled(d):
        try:
            return cond(d)
        except WebDriverException as e:
            if "does not belong to the document" in str(e):
                return False
            raise

    return WebDriverWait(d, timeout, ignored_exceptions=ignored).until(settled)


def h1(d):
    return d.find_element(By.TAG_NAME, "h1").text


def go(d, path):
    d.get(URL + path if path.startswith("/") else path)
    wait(d, lambda d: d.execute_script("return document.readyState") == "complete")


def sign_in(d, key, base=URL):
    d.get(base + "/console/")
    wait(d, EC.presence_of_element_located((By.ID, "key")))
    d.find_element(By.ID, "key").send_keys(key[0])
    d.find_element(By.ID, "secret").send_keys(key[1])
    d.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(d, lambda d: "/console/signin" not in d.current_url)


def off_screen(d):
    """What of the page header lies beyond a phone's width, and the page's
    own width if it scrolls sideways; nav links under 44x44 px."""
    return d.execute_script("""
        const w = document.documentElement.clientWidth;
        const bad = Array.from(document.querySelectorAll('header.top a, header.top button')).filter(e => {
            const r = e.getBoundingClientRect();
            return r.right > w + 0.5 || r.left < -0.5 || r.height < 44 || r.width < 44;
        }).map(e => e.textContent.trim());
        if (document.documentElement.scrollWidth > w) bad.push('page width ' + document.documentElement.scrollWidth);
        return bad;
    """)


def shot(d, name):
    """Full-page screenshots at the phone and the desktop size; at the
    phone's, the header and page fit its width."""
    keep = d.size
    for size in (PHONE, DESKTOP):
        resize(d, size)
        if size == PHONE and off_screen(d):
            TOO_WIDE[name] = off_screen(d)
        png = d.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        (SHOTS / f"{name}-{size[0]}x{size[1]}.png").write_bytes(base64.b64decode(png["data"]))
    resize(d, keep)


def axe(d, name):
    """No serious or critical accessibility violation on the page."""
    d.execute_script(AXE)
    found = d.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        "  nodes: v.nodes.slice(0, 5).map(n => n.target.join(' '))}))))"
        ".catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));")
    bad = [v for v in found if v["impact"] in ("serious", "critical")]
    assert not bad, f"{name}: {json.dumps(bad, indent=1)}"
    PAGES_CHECKED.append(name)


def check_page(d, name):
    axe(d, name)
    shot(d, name)


def small_targets(d):
    """Interactive elements smaller than 44x44 CSS pixels (inline links in
    running text are exempt, as WCAG 2.5.8 allows)."""
    return d.execute_script("""
        const sel = 'button, a.button, input:not([type=hidden]):not([type=checkbox]):not([type=radio]), select, textarea, summary, nav a, label.file, label.choice';
        return Array.from(document.querySelectorAll(sel)).filter(e => {
            const r = e.getBoundingClientRect();
            if (r.width === 0 && r.height === 0) return false;
            const wide = e.matches('input, select, textarea, summary, label.choice');
            return r.height < 44 || (!wide && r.width < 44);
        }).map(e => e.outerHTML.slice(0, 80) + ' ' + Math.round(e.getBoundingClientRect().width) + 'x' + Math.round(e.getBoundingClientRect().height));
    """)


def cookies_header(d):
    return "; ".join(f"{c['name']}={c['value']}" for c in d.get_cookies())


def fetch(d, path, data=None, headers=None):
    """A request with the browser's cookies: (status, headers, body)."""
    req = urllib.request.Request(URL + path, data=data, headers={"Cookie": cookies_header(d), **(headers or {})})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def audit_records():
    lines = (DATA_DIR / "audit/audit.jsonl").read_text().splitlines()
    return [json.loads(l) for l in lines]


def close(d):
    """Ends the browser and its chromedriver, killing chromedriver (and so
    its browser) if quitting fails."""
    try:
        d.quit()
    except Exception:
        process = getattr(d.service, "process", None)
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()


@pytest.fixture(scope="module", autouse=True)
def browsers():
    yield
    # Nothing the console loaded came from anywhere but the service itself.
    # Every browser is closed and every profile removed even when a check
    # fails; the first failure is raised after.
    foreign = []
    try:
        for d in DRIVERS:
            try:
                for entry in d.get_log("performance"):
                    msg = json.loads(entry["message"])["message"]
                    if msg.get("method") == "Network.requestWillBeSent":
                        u = msg["params"]["request"]["url"]
                        # (chrome:// pages are the browser's own, never fetched.)
                        if not u.startswith(("http://127.0.0.1", "data:", "blob:", "chrome:")):
                            foreign.append(u)
            finally:
                close(d)
    finally:
        shutil.rmtree(PROFILES, ignore_errors=True)
    assert foreign == [], foreign


def test_admin_sets_up_a_collection_photos_and_keys():
    d = new_browser(DESKTOP)
    STATE["admin"] = d
    sign_in(d, ROOT)
    assert h1(d) == "Getting started"
    check_page(d, "admin-home")
    # A collection under two-person review whose enrolment photos reviewers see.
    go(d, "/console/collections")
    check_page(d, "admin-collections-empty")
    d.find_element(By.ID, "id").send_keys(COLLECTION)
    assert d.find_element(By.NAME, "require_case").is_selected()
    Select(d.find_element(By.ID, "reviewers")).select_by_value("2")
    d.find_element(By.ID, "image_source").send_keys(str(EXAMPLES.resolve()))
    d.find_element(By.XPATH, "//button[.='Create collection']").click()
    wait(d, lambda d: h1(d) == f"Collection {COLLECTION}")
    assert "created" in d.find_element(By.CLASS_NAME, "flash").text
    # Enrol through the browser: Obama's small photo, Biden, and strangers.
    deepface = DATA / "identity/deepface/images"
    strangers = sorted(deepface.glob("img*.jpg"))[:4]
    photos = [EXAMPLES / "obama-240p.jpg", EXAMPLES / "biden.jpg", *strangers]
    d.find_element(By.ID, "photos").send_keys("\n".join(str(p.resolve()) for p in photos))
    d.find_element(By.XPATH, "//button[.='Index']").click()
    wait(d, lambda d: "Indexed" in d.find_element(By.TAG_NAME, "main").text)
    flash = d.find_element(By.CLASS_NAME, "flash").text
    assert f"from {len(photos)} photos" in flash, flash
    faces = int(re.search(r"Indexed (\d+) faces", flash).group(1))
    assert faces >= len(photos) - 1, flash
    assert "obama-240p.jpg" in d.page_source
    check_page(d, "admin-collection")
    STATE["faces"] = faces
    # One key per person.
    for name, role in [("operator", "operator"), ("reviewer1", "reviewer"),
                       ("reviewer2", "reviewer"), ("auditor", "auditor"), ("temp", "operator")]:
        go(d, "/console/keys")
        Select(d.find_element(By.ID, "role")).select_by_value(role)
        d.find_element(By.XPATH, "//button[.='Create key']").click()
        wait(d, lambda d: h1(d) == "Key created")
        STATE[name] = (d.find_element(By.ID, "new-key-id").text, d.find_element(By.ID, "new-key-secret").text)
        if name == "operator":
            check_page(d, "admin-key-created")
    go(d, "/console/keys")
    check_page(d, "admin-keys")
    for path, name in [("/console/retention", "admin-retention"), ("/console/accuracy", "accuracy"),
                       ("/console/search", "admin-search"), ("/console/review", "admin-review")]:
        go(d, path)
        check_page(d, name)
    go(d, "/console/")
    assert len(d.find_elements(By.CSS_SELECTOR, "ol.steps li.done")) == 3, d.page_source


def test_operator_searches_from_a_phone_with_a_case_reference():
    d = new_browser(PHONE)
    STATE["operator_browser"] = d
    sign_in(d, STATE["operator"])
    check_page(d, "operator-home")
    # The console installs on the phone as a field app: its manifest has no
    # errors, opens on the search page, and its icons are served.
    m = d.execute_cdp_cmd("Page.getAppManifest", {})
    assert m["url"] == URL + "/console/manifest.webmanifest" and m["errors"] == [], m
    manifest = json.loads(m["data"])
    assert manifest["start_url"] == "/console/search" and manifest["display"] == "standalone"
    for icon in manifest["icons"]:
        status, headers, _ = fetch(d, icon["src"])
        kind = {k.lower(): v for k, v in headers.items()}["content-type"]
        assert status == 200 and kind == icon["type"], (icon, kind)
    go(d, "/console/search")
    # One collection: it is chosen; the photo inputs stay closed until the
    # case reference the policy requires is given.
    for i in ("take", "choose"):
        assert d.find_element(By.ID, i).get_attribute("disabled") == "true"
    assert d.find_element(By.ID, "case").get_attribute("required") == "true"
    assert small_targets(d) == []
    check_page(d, "operator-search")
    d.find_element(By.ID, "case").send_keys(CASE)
    d.find_element(By.ID, "purpose").send_keys("theft investigation")
    assert d.find_element(By.ID, "choose").get_attribute("disabled") is None
    probe = EXAMPLES / "obama-1080p.jpg"
    d.find_element(By.ID, "choose").send_keys(str(probe.resolve()))
    wait(d, lambda d: h1(d) in ("Search results", "The search was not run"))
    assert h1(d) == "Search results", d.find_element(By.TAG_NAME, "main").text
    cards = d.find_elements(By.CSS_SELECTOR, "ol.cards li.card")
    assert cards, d.page_source
    top = cards[0].text
    assert cards[0].find_element(By.TAG_NAME, "h3").text == "obama-240p.jpg", top
    sim = float(cards[0].find_element(By.CLASS_NAME, "big").text)
    assert sim >= 80, top
    # The false-match rate it means, in numbers and in words.
    n = 10 ** ((sim - 40) / 10)
    digits = int(__import__("math").floor(__import__("math").log10(n)))
    shown = round(n / 10 ** (digits - 1)) * 10 ** (digits - 1)
    assert f"1 in {shown:,}" in top, (sim, top)
    assert f"about 1 in {shown:,} different people would score this high" in top, top
    assert "Candidate, not an identification: needs review" in top, top
    assert "needs review by two different reviewers" in d.find_element(By.CSS_SELECTOR, "p.warn").text
    STATE["candidates"] = len(cards)
    assert small_targets(d) == []
    check_page(d, "operator-results")
    # The photo was scaled down in the browser before it was sent.
    search = [r["record"] for r in audit_records() if r["record"]["operation"] == "SearchFacesByImage"][-1]
    assert search["case"] == CASE and search["purpose"] == "theft investigation"
    assert search["probe_sha256"] != hashlib.sha256(probe.read_bytes()).hexdigest()
    assert len(search["candidates"]) == len(cards)
    # The probe waits for review on disk, and only for that.
    assert len(list((DATA_DIR / "probes").glob("*.img"))) == 1
    go(d, "/console/searches")
    assert "Candidate: needs review" in d.find_element(By.TAG_NAME, "main").text
    check_page(d, "operator-my-searches")
    # Operators never see enrolment photos.
    go(d, f"/console/collections/{COLLECTION}")
    assert small_targets(d) == []
    assert not d.find_elements(By.LINK_TEXT, "Photo")
    check_page(d, "operator-collection")
    face = search["candidates"][0]["face_id"]
    status, _, body = fetch(d, f"/console/collections/{COLLECTION}/faces/{face}/photo")
    assert status == 403 and b"operator role" in body, (status, body)
    STATE["face"] = face


def test_two_reviewers_confirm_in_their_own_sessions():
    d = new_browser(DESKTOP)
    sign_in(d, STATE["reviewer1"])
    check_page(d, "reviewer-home")
    go(d, "/console/review")
    items = d.find_elements(By.CSS_SELECTOR, "ul.cards li.card")
    assert len(items) == STATE["candidates"]
    check_page(d, "reviewer-queue")
    d.find_element(By.PARTIAL_LINK_TEXT, "Candidate obama-240p.jpg").click()
    wait(d, lambda d: h1(d) == "Review a candidate")
    # The probe beside the enrolment photo, both loaded.
    wait(d, lambda d: d.execute_script(
        "return Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length") == 2)
    widths = d.execute_script("return Array.from(document.images).map(i => [i.alt, i.naturalWidth])")
    assert ["The probe photo", 1280] in widths, widths
    assert ["The enrolment photo of the candidate", 427] in widths, widths
    check_page(d, "reviewer-item")
    review_url = d.current_url
    d.find_element(By.CSS_SELECTOR, "input[value=CONFIRM]").click()
    d.find_element(By.ID, "comment").send_keys("same ears, hairline and mole; probe sharp")
    d.find_element(By.XPATH, "//button[.='Record my decision']").click()
    wait(d, lambda d: d.find_elements(By.CLASS_NAME, "flash"))
    assert "1 more confirmation" in d.find_element(By.CLASS_NAME, "flash").text
    # The same reviewer cannot count twice.
    d.get(review_url)
    assert not d.find_elements(By.ID, "comment")
    assert "You decided CONFIRM" in d.find_element(By.TAG_NAME, "main").text
    # A second reviewer, in a second browser, decides without seeing the first.
    d2 = new_browser(DESKTOP)
    sign_in(d2, STATE["reviewer2"])
    d2.get(review_url)
    wait(d2, lambda d: h1(d) == "Review a candidate")
    assert "same ears" not in d2.page_source
    d2.find_element(By.CSS_SELECTOR, "input[value=CONFIRM]").click()
    d2.find_element(By.ID, "comment").send_keys("agree: same person")
    d2.find_element(By.XPATH, "//button[.='Record my decision']").click()
    wait(d2, lambda d: d.find_elements(By.CLASS_NAME, "flash"))
    assert "now CONFIRMED" in d2.find_element(By.CLASS_NAME, "flash").text
    # Other candidates of the search, if any, are rejected so the review closes.
    while True:
        go(d2, "/console/review")
        links = d2.find_elements(By.CSS_SELECTOR, "ul.cards h3 a")
        if not links:
            break
        links[0].click()
        wait(d2, lambda d: h1(d) == "Review a candidate")
        d2.find_element(By.CSS_SELECTOR, "input[value=REJECT]").click()
        d2.find_element(By.ID, "comment").send_keys("different person")
        d2.find_element(By.XPATH, "//button[.='Record my decision']").click()
        wait(d2, lambda d: d.find_elements(By.CLASS_NAME, "flash"))
    STATE["rejected"] = STATE["candidates"] - 1
    # The review closed: the probe photo is erased, from disk too.
    d.get(review_url)
    assert "erased when this review closed" in d.find_element(By.TAG_NAME, "main").text
    assert list((DATA_DIR / "probes").glob("*")) == []
    review_id = review_url.rsplit("/", 1)[1]
    status, _, _ = fetch(d, f"/console/review/{review_id}/probe")
    assert status == 404
    go(STATE["operator_browser"], "/console/searches")
    assert "Confirmed by review" in STATE["operator_browser"].find_element(By.TAG_NAME, "main").text


def test_auditor_report_counts_exactly_that_search_and_confirmation():
    d = new_browser(DESKTOP)
    STATE["auditor_browser"] = d
    sign_in(d, STATE["auditor"])
    check_page(d, "auditor-home")
    go(d, f"/console/audit?case={CASE}")
    ops = [td.text for td in d.find_elements(By.CSS_SELECTOR, "tbody tr td:nth-child(3)")]
    assert ops.count("SearchFacesByImage") == 1 and ops.count("DecideReviewItem") == 1 + STATE["candidates"], ops
    check_page(d, "auditor-audit")
    go(d, "/console/audit/verify")
    assert "The chain is intact" in d.find_element(By.TAG_NAME, "main").text
    check_page(d, "auditor-verify")
    go(d, "/console/report")
    main = d.find_element(By.TAG_NAME, "main")

    def total(label, section="Totals"):
        return d.find_element(By.XPATH, f'//section[h2="{section}"]//tr[th="{label}"]/td').text

    assert total("Searches run") == "1"
    assert total("Candidates returned") == str(STATE["candidates"])
    assert total("Candidates confirmed by review") == "1"
    assert total("Candidates rejected by review") == str(STATE["rejected"])
    assert total("Candidates still awaiting review") == "0"
    assert total("Reviewers' decisions") == str(2 + STATE["rejected"])
    assert total("Faces enrolled") == str(STATE["faces"])
    case_row = d.find_element(By.XPATH, f"//section[h2='Per case']//tr[th='{CASE}']")
    assert [td.text for td in case_row.find_elements(By.TAG_NAME, "td")][:3] == ["1", str(STATE["candidates"]), "1"]
    # SFace (the default) ships its `kenning eval fairness` reports
    # (recognisers/sface-2021dec/eval/), so the report shows the measured
    # differentials of the calibration the search used.
    assert "Calibration: sface-2021dec (fair)" in main.text
    assert "No measurement of this calibration's demographic differentials" not in main.text
    measured = d.find_elements(By.XPATH, "//h4[.='Calibration: sface-2021dec (fair)']/following-sibling::div[contains(@class,'table-wrap')][1]//tbody/tr")
    cells = [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in measured]
    assert any(c[0] == "sface-2021dec (fair) by gender x race" and c[1].startswith("Similarity 80") for c in cells), cells
    head = d.find_element(By.ID, "head-hash").text
    hashes = [r["hash"] for r in audit_records()]
    assert head in hashes
    shown = d.find_element(By.XPATH, "//dt[.='Records in the trail']/following-sibling::dd").text
    assert int(shown.replace(",", "")) == hashes.index(head) + 1
    check_page(d, "auditor-report")
    status, headers, pdf = fetch(d, "/console/report.pdf")
    # Making a report is itself recorded, with the head it was counted from.
    made = audit_records()[-1]["record"]
    assert made["operation"] == "GetAccountabilityReport"
    assert status == 200 and pdf.startswith(b"%PDF-1.4")
    assert made["details"]["Head"].encode() in pdf
    (SHOTS / "accountability-report.pdf").write_bytes(pdf)
    status, _, js = fetch(d, f"/console/report.json?case={CASE}")
    r = json.loads(js)
    assert r["Totals"]["Searches"] == 1 and r["Totals"]["CandidatesConfirmed"] == 1
    in_case = [r for r in audit_records() if r["record"].get("case") == CASE]
    status, _, jsonl = fetch(d, f"/console/audit/export?case={CASE}")
    assert status == 200
    assert [json.loads(l)["hash"] for l in jsonl.splitlines()] == [r["hash"] for r in in_case]
    # Auditors see neither probes nor enrolment photos.
    status, _, _ = fetch(d, f"/console/collections/{COLLECTION}/faces/{STATE['face']}/photo")
    assert status == 403


def test_policy_refusal_is_shown_and_recorded():
    d = STATE["operator_browser"]
    go(d, "/console/search")
    # Past the browser's check (as a client without the page's script
    # would be): the service refuses and records the refusal.
    d.execute_script("""
        const c = document.getElementById('case'); c.removeAttribute('required'); c.value = '';
        document.getElementById('choose').disabled = false;
    """)
    d.find_element(By.ID, "choose").send_keys(str((EXAMPLES / "biden.jpg").resolve()))
    wait(d, lambda d: h1(d) in ("Search results", "The search was not run"))
    assert h1(d) == "The search was not run"
    assert "requires a case reference" in d.find_element(By.CLASS_NAME, "error").text
    check_page(d, "operator-refused")
    last = audit_records()[-1]["record"]
    assert last["operation"] == "SearchFacesByImage" and last["outcome"] == "AccessDeniedException"
    assert last["details"]["PolicyRule"] == "RequireCase"


def test_csrf_and_origin_are_enforced():
    d = STATE["admin"]
    go(d, "/console/collections")
    d.find_element(By.ID, "id").send_keys("forged")
    d.execute_script("document.querySelector('form[action=\"/console/collections\"] input[name=csrf]').value = 'forged-token'")
    d.find_element(By.XPATH, "//button[.='Create collection']").click()
    wait(d, lambda d: h1(d) == "The form was not accepted")
    assert "security token" in d.find_element(By.TAG_NAME, "main").text
    check_page(d, "csrf-refused")
    # Without a token, or with the right token from another site: refused.
    go(d, "/console/collections")
    token = d.find_element(By.NAME, "csrf").get_attribute("value")
    status, _, _ = fetch(d, "/console/collections", b"id=forged2", {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 403
    status, _, _ = fetch(d, "/console/collections", f"id=forged3&csrf={token}".encode(),
                         {"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"})
    assert status == 403
    go(d, "/console/collections")
    assert "forged" not in d.find_element(By.CSS_SELECTOR, "ul.cards").text


def test_revoking_a_key_ends_its_session_at_once():
    d = new_browser(PHONE)
    sign_in(d, STATE["temp"])
    go(d, "/console/search")
    assert h1(d) == "Search"
    a = STATE["admin"]
    go(a, f"/console/keys/{STATE['temp'][0]}/revoke")
    a.find_element(By.XPATH, "//button[.='Revoke']").click()
    wait(a, lambda d: d.find_elements(By.CLASS_NAME, "flash"))
    go(d, "/console/search")
    assert "/console/signin" in d.current_url
    assert "was revoked" in d.find_element(By.TAG_NAME, "main").text


def test_sessions_expire_when_idle_and_keep_nothing_in_the_browser():
    d = new_browser(PHONE)
    sign_in(d, ROOT, SHORT_URL)
    c = {c["name"]: c for c in d.get_cookies()}["kenning_session"]
    assert c["httpOnly"] and c["sameSite"] == "Strict" and c["path"] == "/console"
    assert d.execute_script("return [localStorage.length, sessionStorage.length]") == [0, 0]
    assert ROOT[1] not in d.execute_script("return document.documentElement.outerHTML + document.cookie")
    time.sleep(4.5)
    d.get(SHORT_URL + "/console/keys")
    assert "/console/signin" in d.current_url
    assert "idle too long" in d.find_element(By.TAG_NAME, "main").text
    check_page(d, "signin-expired")
    # Sign-out ends the session in the service, not just in the browser.
    sign_in(d, ROOT, SHORT_URL)
    old = {c["name"]: c["value"] for c in d.get_cookies()}["kenning_session"]
    d.find_element(By.XPATH, "//button[.='Sign out']").click()
    wait(d, lambda d: "out=1" in d.current_url)
    req = urllib.request.Request(SHORT_URL + "/console/", headers={"Cookie": f"kenning_session={old}"})
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None
    try:
        urllib.request.build_opener(NoRedirect).open(req)
        raise AssertionError("a signed-out session still works")
    except urllib.error.HTTPError as e:
        assert e.code == 303 and "/console/signin" in e.headers["Location"]


def test_operator_searches_a_stored_video_and_follows_it_on_a_timeline():
    # The admin enrols the two people of the Hamilton clip in a collection
    # under review.
    a = STATE["admin"]
    go(a, "/console/collections")
    a.find_element(By.ID, "id").send_keys("hamilton")
    Select(a.find_element(By.ID, "reviewers")).select_by_value("1")
    a.find_element(By.ID, "image_source").send_keys(str((DATA / "video/reference").resolve()))
    a.find_element(By.XPATH, "//button[.='Create collection']").click()
    wait(a, lambda d: h1(d) == "Collection hamilton")
    refs = sorted((DATA / "video/reference").glob("*.png"))
    a.find_element(By.ID, "photos").send_keys("\n".join(str(p.resolve()) for p in refs))
    a.find_element(By.XPATH, "//button[.='Index']").click()
    wait(a, lambda d: "Indexed" in d.find_element(By.TAG_NAME, "main").text)
    assert f"Indexed {len(refs)} faces" in a.find_element(By.CLASS_NAME, "flash").text
    # The operator, on the phone, picks the clip from the service's bucket.
    d = STATE["operator_browser"]
    go(d, "/console/video")
    assert h1(d) == "Video" and "No jobs yet" in d.find_element(By.TAG_NAME, "main").text
    assert small_targets(d) == []
    check_page(d, "operator-video")
    # The operator uploads the clip from the phone into the uploads bucket;
    # the start form then has it chosen.
    clip = DATA / "video/short_hamilton_clip.mp4"
    sha = hashlib.sha256(clip.read_bytes()).hexdigest()

    def upload(answer):
        Select(d.find_element(By.ID, "bucket")).select_by_value("uploads")
        d.find_element(By.ID, "video-file").send_keys(str(clip.resolve()))
        d.find_element(By.XPATH, "//button[.='Upload']").click()
        wait(d, lambda d: d.find_elements(By.CLASS_NAME, answer) or d.find_elements(By.CLASS_NAME, "error"))

    upload("flash")
    flash = d.find_element(By.CLASS_NAME, "flash").text
    assert "Uploaded uploads/short_hamilton_clip.mp4" in flash and sha in flash, flash
    uploaded = pathlib.Path(os.environ["KENNING_UPLOADS"]) / clip.name
    assert hashlib.sha256(uploaded.read_bytes()).hexdigest() == sha
    rec = audit_records()[-1]["record"]
    assert rec["operation"] == "UploadVideo" and rec["probe_sha256"] == sha, rec
    assert rec["access_key"] == STATE["operator"][0]
    chosen = Select(d.find_element(By.ID, "video")).first_selected_option
    assert chosen.get_attribute("value") == "uploads/short_hamilton_clip.mp4"
    assert small_targets(d) == []
    check_page(d, "operator-video-uploaded")
    # A second file of that name never replaces the first from the console.
    go(d, "/console/video")
    upload("error")
    assert "already holds a video called short_hamilton_clip.mp4" in d.find_element(By.CLASS_NAME, "error").text
    go(d, "/console/video")
    Select(d.find_element(By.ID, "video")).select_by_value("uploads/short_hamilton_clip.mp4")
    Select(d.find_element(By.ID, "collection")).select_by_value("hamilton")
    d.find_element(By.ID, "case").send_keys("CASE-2026-0043")
    d.find_element(By.ID, "purpose").send_keys("stage door incident")
    d.find_element(By.XPATH, "//button[.='Start the search']").click()
    wait(d, lambda d: h1(d) == "Video job")
    job_url = d.current_url
    # The page follows the job by itself until it is done.
    wait(d, lambda d: d.find_elements(By.XPATH, "//h2[.='Who was seen when']"), timeout=600)
    main = d.find_element(By.TAG_NAME, "main").text
    assert "Done" in main and "CASE-2026-0043" in main, main
    matched = d.find_elements(By.CSS_SELECTOR, "ul.timeline li.matched")
    assert matched and "lin-manuel-miranda.png" in matched[0].text, main
    # Lin is on screen at 0.8-1.5 s and 3.6-7.9 s: the lane says so.
    lin = next(m.text for m in matched if "lin-manuel-miranda.png" in m.text)
    for stretch in re.findall(r"(\d+):(\d+\.\d)(?:–(\d+):(\d+\.\d))?", lin.split(" seen ")[1]):
        start = int(stretch[0]) * 60 + float(stretch[1])
        assert 0.8 <= start <= 7.9, lin
    bars = d.find_elements(By.CSS_SELECTOR, "ul.timeline li svg.lane rect")
    assert len(bars) >= len(matched)
    assert d.find_elements(By.CSS_SELECTOR, "ul.timeline li:not(.matched)"), "strangers are on the timeline too"
    cards = d.find_elements(By.CSS_SELECTOR, "ol.cards li.card")
    assert any("Candidate, not an identification: needs review" in c.text for c in cards), main
    assert small_targets(d) == []
    check_page(d, "operator-video-job")
    # One audit record of the search, with the video, its hash and the case.
    rec = [r["record"] for r in audit_records() if r["record"]["operation"] == "StartFaceSearch"]
    done = [r for r in rec if r.get("candidates") is not None]
    assert done and done[-1]["case"] == "CASE-2026-0043", rec
    assert done[-1]["probe_sha256"] == sha
    assert done[-1]["details"]["Video"] == {"Bucket": "uploads", "Name": "short_hamilton_clip.mp4"}
    # The admin sees every job, and forbids video searches of the collection.
    go(a, "/console/video")
    assert "short_hamilton_clip.mp4" in a.find_element(By.TAG_NAME, "tbody").text
    check_page(a, "admin-video")
    go(a, "/console/collections/hamilton")
    a.find_element(By.XPATH, "//summary[.='Change the policy']").click()
    box = a.find_element(By.NAME, "allow_video")
    assert box.is_selected()
    box.click()
    a.find_element(By.XPATH, "//button[.='Save policy']").click()
    wait(a, lambda d: d.find_elements(By.CLASS_NAME, "flash"))
    assert "Stored video may not be searched" in a.find_element(By.TAG_NAME, "main").text
    go(d, "/console/video")
    Select(d.find_element(By.ID, "video")).select_by_value("cams/short_hamilton_clip.mp4")
    Select(d.find_element(By.ID, "collection")).select_by_value("hamilton")
    d.find_element(By.ID, "case").send_keys("CASE-2026-0043")
    d.find_element(By.XPATH, "//button[.='Start the search']").click()
    wait(d, lambda d: h1(d) == "The search was not started")
    assert "forbids video searches" in d.find_element(By.CLASS_NAME, "error").text
    last = audit_records()[-1]["record"]
    assert last["operation"] == "StartFaceSearch" and last["details"]["PolicyRule"] == "AllowVideo", last
    r = new_browser(PHONE)
    sign_in(r, STATE["reviewer1"])
    assert not r.find_elements(By.LINK_TEXT, "Video")
    # The reviewer gets the video's candidates, each beside the part of the
    # frame its face was seen in, cut from the video when the page asks.
    go(r, "/console/review")
    r.find_element(By.PARTIAL_LINK_TEXT, "Candidate lin-manuel-miranda.png").click()
    wait(r, lambda d: h1(d) == "Review a candidate")
    alt = "The part of the video frame around the face that matched"
    wait(r, lambda d: d.execute_script(
        "return Array.from(document.images).some(i => i.alt === arguments[0] && i.complete && i.naturalWidth > 0)", alt))
    assert "cut again from the file each time it is shown" in r.find_element(By.TAG_NAME, "main").text
    # Beside it, Lin's enrolled photo from the collection's image source.
    wait(r, lambda d: d.execute_script(
        "return Array.from(document.images).filter(i => i.complete && i.naturalWidth > 0).length") == 2)
    check_page(r, "reviewer-video-item")
    review_id = r.current_url.rsplit("/", 1)[1]
    status, headers, frame = fetch(r, f"/console/review/{review_id}/probe")
    kind = {k.lower(): v for k, v in headers.items()}
    assert status == 200 and kind["content-type"] == "image/jpeg" and frame[:2] == b"\xff\xd8", (status, kind)
    assert "no-store" in kind["cache-control"]
    looked = audit_records()[-1]["record"]
    assert looked["operation"] == "GetReviewProbe" and looked["access_key"] == STATE["reviewer1"][0], looked
    at = looked["details"]["VideoFrame"]["Timestamp"]
    assert looked["details"]["VideoFrame"]["JobId"] == job_url.rsplit("/", 1)[1]
    assert 800 <= at <= 7900, looked
    # Nothing of it is kept: no image anywhere in the data directory.
    kept = [p for p in DATA_DIR.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".img")]
    assert kept == [], kept
    # Operators never see it.
    status, _, _ = fetch(d, f"/console/review/{review_id}/probe")
    assert status == 403
    # The frame is Lin's face: searched as a photo, it finds Lin.
    with tempfile.TemporaryDirectory(prefix="kenning-frame-") as tmp:
        photo = pathlib.Path(tmp) / "frame.jpg"
        photo.write_bytes(frame)
        go(a, "/console/search?collection=hamilton")
        a.find_element(By.ID, "case").send_keys("CASE-2026-0044")
        a.find_element(By.ID, "purpose").send_keys("check the reviewed frame")
        a.find_element(By.ID, "choose").send_keys(str(photo))
        wait(a, lambda d: h1(d) in ("Search results", "The search was not run"))
    top = a.find_elements(By.CSS_SELECTOR, "ol.cards li.card h3")
    assert top and top[0].text == "lin-manuel-miranda.png", a.find_element(By.TAG_NAME, "main").text
    status, _, _ = fetch(r, "/console/video")
    assert status == 403
    status, _, _ = fetch(r, job_url.replace(URL, ""))
    assert status == 403


def test_admin_chooses_what_similarity_keeps_equal():
    """The policy's Equalise field: every choice says what it costs, the
    one chosen is saved and shown in the policy's words, and the
    recogniser's default leaves the field out."""
    a = STATE["admin"]
    go(a, "/console/collections")
    a.find_element(By.ID, "id").send_keys("equalised")
    choices = a.find_elements(By.CSS_SELECTOR, "#equalise input[type=radio]")
    assert [c.get_attribute("value") for c in choices] == ["", "FalseMatches", "Misses", "Balanced"]
    assert choices[0].is_selected()
    offered = a.find_element(By.ID, "equalise").text
    for consequence in ("about 12% of genuine matches are missed",
                        "about 22% of genuine matches are missed",
                        "about 10 times the best's false matches"):
        assert consequence in offered, offered
    a.find_element(By.CSS_SELECTOR, "#equalise input[value=Misses]").click()
    a.find_element(By.XPATH, "//button[.='Create collection']").click()
    wait(a, lambda d: h1(d) == "Collection equalised")

    def said():
        return a.find_element(By.CSS_SELECTOR, "main ul").text

    def chosen():
        a.find_element(By.XPATH, "//summary[.='Change the policy']").click()
        return [c.get_attribute("value") for c in a.find_elements(By.CSS_SELECTOR, "#equalise input[type=radio]")
                if c.is_selected()]

    assert "Similarity keeps misses close" in said(), said()
    assert chosen() == ["Misses"]
    check_page(a, "admin-collection-policy")
    for value, words in [("FalseMatches", "Similarity keeps false matches equal"), ("", None)]:
        a.find_element(By.CSS_SELECTOR, f"#equalise input[value='{value}']").click()
        # The page before the save shows a flash too: wait for the new one.
        old = a.find_element(By.TAG_NAME, "main")
        a.find_element(By.XPATH, "//button[.='Save policy']").click()
        wait(a, EC.staleness_of(old))
        wait(a, lambda d: d.find_elements(By.CLASS_NAME, "flash"))
        if words:
            assert words in said(), said()
        else:
            assert "Similarity keeps" not in said() and "Similarity balances" not in said(), said()
        assert chosen() == [value]
    # What the server holds, as its audit trail records each policy set.
    held = [r["record"]["details"]["Policy"] for r in audit_records()
            if r["record"]["operation"] == "PutCollectionPolicy" and r["record"].get("collection") == "equalised"]
    assert [p.get("Equalise") for p in held[-2:]] == ["FalseMatches", None], held


def test_every_page_was_checked():
    assert len(PAGES_CHECKED) >= 20, PAGES_CHECKED
    assert TOO_WIDE == {}, TOO_WIDE
    names = {p.name for p in SHOTS.glob("*.png")}
    for page in PAGES_CHECKED:
        assert f"{page}-360x740.png" in names and f"{page}-1440x900.png" in names, page
