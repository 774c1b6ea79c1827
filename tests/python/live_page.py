"""The live page in a real browser: headless Chromium (the system's, never a downloaded one) driven by Playwright.

Usage: live_page.py CHROMIUM BASE_URL TOKEN LOGS SCREENSHOT_DIR

Against a server fed by the mock CT logs (LOGS of them), with access tokens on, the page opened as /?token=TOKEN
(which it passes on to its stream and to /stats): the feed fills, the rate chart and the per-log table
update, the drop counters show numbers, pause stops the feed, a bad filter shows the server's reason, a filter
narrows the feed (every shown row matches), a phone-sized viewport has no horizontal scroll, and nothing fails: no
console error, no page error, no failed or refused request, no request off the server. Prints one line per check
and `PASS` last, or `FAIL reason`; saves SCREENSHOT_DIR/live-page.png (desktop) and live-page-phone.png.
"""

import collections
import re
import sys
import time

from playwright.sync_api import sync_playwright

WAIT_MS = 20_000  # every wait of the page
BAD_FILTER = "domian=example.com"


class Watch:
    """Everything a page did that could go wrong: console errors, exceptions, failed or refused requests, and
    requests anywhere but the server."""

    def __init__(self, page, base):
        self.problems = []
        self.expected_refusal = None  # the one 400 the bad-filter check asks for, by URL
        page.on("console", self.console)
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url} {r.failure}"))
        page.on("response", self.response)
        page.on("request", lambda r: r.url.startswith((base, "data:"))
                or self.problems.append(f"external request: {r.url}"))

    def console(self, message):
        if message.type != "error":
            return
        # Chromium logs every 4xx answer as a console error: the bad filter's is the page asking on purpose.
        if self.expected_refusal and message.location.get("url") == self.expected_refusal:
            return
        self.problems.append(f"console error: {message.text} at {message.location}")

    def response(self, response):
        if response.status >= 400 and response.url != self.expected_refusal:
            self.problems.append(f"HTTP {response.status}: {response.url}")


def rows(page):
    return page.eval_on_selector_all("#feed .names", "spans => spans.map(s => s.textContent)")


def domains(row):
    return [name for name in row.split(", ") if name]


def log_table(page):
    return page.eval_on_selector_all(
        "#logs tr", "trs => trs.map(tr => [...tr.children].map(td => td.textContent))"
    )


def keyword_narrowing(shown):
    """A keyword some shown rows match and others do not: the most common last label of their names."""
    labels = collections.Counter(
        "." + label for row in shown for label in {d.rsplit(".", 1)[-1].lower() for d in domains(row)}
    )
    for label, _ in labels.most_common():
        if any(label not in row.lower() for row in shown):
            return label
    raise AssertionError(f"no keyword narrows these rows: {shown[:5]}")


def check(name, condition, detail=""):
    if not condition:
        raise AssertionError(f"{name}: {detail}")
    print(f"ok {name} {detail}".rstrip(), flush=True)


def desktop(browser, base, token, logs, screenshot):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(WAIT_MS)
    watch = Watch(page, base)
    page.goto(f"{base}/?token={token}")

    page.wait_for_function("document.querySelectorAll('#feed li').length >= 20")
    check("the feed fills", True, f"{len(rows(page))} rows")

    page.wait_for_function(f"document.querySelectorAll('#logs tr').length === {logs}")
    first = log_table(page)
    check("the per-log table lists every log", all(row[1].startswith("usable") for row in first), str(first))
    page.wait_for_function(
        "sizes => [...document.querySelectorAll('#logs tr')].some((tr, i) => tr.children[2].textContent !== sizes[i])",
        arg=[row[2] for row in first],
    )
    check("the per-log table updates", True, str(log_table(page)))

    page.wait_for_function(
        "parseFloat(document.getElementById('rate').textContent) > 0"
        " && document.getElementById('chart').getAttribute('points').trim().split(' ').length >= 2"
    )
    check("the rate and its chart update", True, page.inner_text("#rate") + "/s")

    counters = {c: page.inner_text("#" + c) for c in ("dropped", "skipped", "rejected", "clients", "received")}
    check("the counters are numbers", all(re.fullmatch(r"[\d,]+", v) for v in counters.values()), str(counters))
    cards = page.eval_on_selector_all(".card", "cards => cards.map(c => c.innerText.trim())")
    check("no counter ends in a dangling comma", not any(c.endswith(",") for c in cards), str(cards))

    page.click("#pause")
    page.wait_for_timeout(300)  # the frame already queued draws
    still = rows(page)
    page.wait_for_timeout(2500)
    check("pause stops the feed", rows(page) == still, page.inner_text("#held"))
    check("pause counts what it holds back", re.match(r"[1-9][\d,]* not shown", page.inner_text("#held")))
    page.click("#pause")
    page.wait_for_function("first => document.querySelector('#feed .names').textContent !== first", arg=still[0])
    check("resume restarts it", True)

    watch.expected_refusal = f"{base}/?{BAD_FILTER}&token={token}"
    page.fill("#query", BAD_FILTER)
    page.click("#filter button")
    page.wait_for_function("document.getElementById('refused').textContent !== ''")
    refused = page.inner_text("#refused")
    check("a bad filter shows the server's reason", 'unknown parameter "domian"' in refused, refused)

    shown = rows(page)
    keyword = keyword_narrowing(shown)
    page.fill("#query", f"keyword={keyword}")
    page.click("#filter button")
    page.wait_for_function("document.getElementById('state').textContent === 'live, filtered'")
    page.wait_for_function("document.querySelectorAll('#feed li').length >= 10")
    filtered = rows(page)
    misses = [row for row in filtered if keyword not in row.lower()]
    check(f"keyword={keyword} narrows the feed", not misses and page.inner_text("#refused") == "",
          f"{len(filtered)} rows match, misses: {misses[:3]}")
    check("the page's address keeps the filter and the token", page.url == f"{base}/?keyword={keyword}&token={token}",
          page.url)

    page.screenshot(path=f"{screenshot}/live-page.png")
    return watch


def phone(browser, base, token, screenshot):
    page = browser.new_page(viewport={"width": 360, "height": 740}, is_mobile=True, device_scale_factor=2)
    page.set_default_timeout(WAIT_MS)
    watch = Watch(page, base)
    page.goto(f"{base}/?token={token}")
    page.wait_for_function("document.querySelectorAll('#feed li').length >= 10"
                           " && document.querySelectorAll('#logs tr').length > 0"
                           " && parseFloat(document.getElementById('rate').textContent) > 0")
    width = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    check("a phone-sized viewport has no horizontal scroll", width[0] <= width[1], f"scroll/client width {width}")
    page.screenshot(path=f"{screenshot}/live-page-phone.png")
    return watch


def main():
    chromium, base, token, logs, screenshot = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3], int(sys.argv[4]), sys.argv[5]
    started = time.monotonic()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, timeout=WAIT_MS)
        try:
            watches = [desktop(browser, base, token, logs, screenshot), phone(browser, base, token, screenshot)]
            problems = [p for watch in watches for p in watch.problems]
            check("nothing failed: no console error, no failed or external request", not problems, str(problems))
        finally:
            browser.close()
    print(f"PASS in {time.monotonic() - started:.1f} s", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # one line the Rust test shows, whatever failed
        print(f"FAIL {type(error).__name__}: {error}".replace("\n", " "), flush=True)
        sys.exit(1)
