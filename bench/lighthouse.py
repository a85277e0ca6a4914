"""Accessibility and speed of the web pages, measured by Lighthouse against the local Chromium.

`bench/lighthouse` starts the real application as `./scripts/demo` does (`school-gateway
demo`: embedded PostgreSQL with the scale-1 demo data, kept in bench/.data/lighthouse) on a
free 127.0.0.1 port, signs each role in through the sign-in page and the development
identity provider (Playwright driving the same Chromium) to get its session cookie, and runs
Lighthouse (npm, pinned in bench/lighthouse-npm; mobile form factor and throttling, its
defaults) on that role's page with the cookie as an extra header. It prints the category
scores per page and writes Lighthouse's JSON reports under bench/.results/lighthouse/.

Nothing leaves 127.0.0.1: Chromium resolves every other host to nothing
(`--host-resolver-rules`), and the report's own list of requests is checked.
`--screenshots DIR` also writes the diary page at 1280 and 360 px (the README's picture).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.sync_api import Browser, Page, sync_playwright

from bench.driver.install import Tools, _npm_cli, node_binary
from bench.driver.procs import BenchError

ROOT = Path(__file__).resolve().parent.parent
NPM_DIR = ROOT / "bench" / "lighthouse-npm"
LIGHTHOUSE_CLI = NPM_DIR / "node_modules" / "lighthouse" / "cli" / "index.js"
_STAMP = NPM_DIR / "node_modules" / ".bench-lock-sha256"
DATA_DIR = ROOT / "bench" / ".data" / "lighthouse"
RESULTS_DIR = ROOT / "bench" / ".results" / "lighthouse"
CHROMIUM = os.environ.get("CHROME_PATH") or os.environ.get("CHROMIUM") or "/usr/bin/chromium"
HOST = "127.0.0.1"
# As tests/browser/conftest.py, plus: every host but 127.0.0.1 resolves to nothing.
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {HOST}",
]
CATEGORIES = ("performance", "accessibility", "best-practices")
ESIA_BUTTON = "Вход для пользователей старше 14,5 лет"
START_TIMEOUT_S = 600.0  # the first start generates the demo data
BARS = {"accessibility": 95, "performance": 90}  # issue 13, on the diary page
# The data set of the tests (tests.support.environment.TODAY, scale 1, seed 1): the same
# pages, figures and screenshot whatever the day of the run.
DATA_SET = {"scale": "1", "seed": "1", "today": "2026-11-27"}
_SEEDED = DATA_DIR.parent / "lighthouse-seeded"


@dataclass(frozen=True, slots=True)
class Target:
    """A page and the demo account whose page it is (fixtures/demo.py)."""

    path: str
    account: str


TARGETS = (
    Target("/diary", "parent-two-schools"),
    Target("/school", "school-admin"),
    Target("/analytics", "regional-analyst"),
)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/lighthouse", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--pages", default="diary,school,analytics", help="comma-separated (default all three)"
    )
    parser.add_argument("--runs", type=int, default=1, help="Lighthouse runs per page (median)")
    parser.add_argument("--screenshots", type=Path, help="write diary-1280.png/diary-360.png")
    parser.add_argument("--no-lighthouse", action="store_true", help="only the screenshots")
    return parser.parse_args(argv)


# --- tools -------------------------------------------------------------------------------


def install_lighthouse(tools: Tools) -> None:
    """`npm ci` in bench/lighthouse-npm when node_modules does not match its lock."""
    digest = hashlib.sha256((NPM_DIR / "package-lock.json").read_bytes()).hexdigest()
    if _STAMP.exists() and _STAMP.read_text().strip() == digest:
        return
    print("==> npm ci in bench/lighthouse-npm (Lighthouse, pinned)", flush=True)
    command = [str(tools.node), str(_npm_cli(tools.node)), "ci", "--no-audit", "--no-fund"]
    if subprocess.run(command, cwd=NPM_DIR, env=tools.node_env(), check=False).returncode:
        raise BenchError("npm ci failed in bench/lighthouse-npm")
    _STAMP.write_text(digest + "\n")


# --- the application ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def gateway_env() -> dict[str, str]:
    """The environment without the caller's database and gateway settings, on DATA_DIR."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DATABASE_", "SCHOOL_GATEWAY_"))
    }
    return env | {"SCHOOL_GATEWAY_DATA_DIR": str(DATA_DIR), "SCHOOL_GATEWAY_HOST": HOST}


def seed_data_set(log: Path) -> None:
    """`school-gateway seed` of DATA_SET into DATA_DIR unless it already holds it."""
    wanted = " ".join(f"{key}={value}" for key, value in DATA_SET.items())
    if _SEEDED.exists() and _SEEDED.read_text().strip() == wanted:
        return
    print(f"==> school-gateway seed ({wanted}) into {DATA_DIR}", flush=True)
    options = [f"--{key}={value}" for key, value in DATA_SET.items()]
    command = [str(ROOT / ".venv" / "bin" / "school-gateway"), "seed", *options, "--yes"]
    with log.open("w") as out:
        code = subprocess.run(command, env=gateway_env(), stdout=out, stderr=out).returncode
    if code != 0:
        raise BenchError(f"school-gateway seed failed (exit {code}): see {log}")
    _SEEDED.write_text(wanted + "\n")


@contextmanager
def demo_server(log: Path) -> Iterator[str]:
    """`school-gateway demo` on a free port with its own data folder; its base URL."""
    seed_data_set(log.with_name("seed.log"))
    port = free_port()
    env = gateway_env()
    command = [str(ROOT / ".venv" / "bin" / "school-gateway"), "demo", "--port", str(port)]
    url = f"http://{HOST}:{port}"
    print(f"==> school-gateway demo on {url} (data in {DATA_DIR}, log {log})", flush=True)
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=out)
        try:
            wait_healthy(url, process)
            yield url
        finally:
            # Ctrl+C, as a person stops the demo: it stops the embedded PostgreSQL it started
            # (on SIGTERM uvicorn re-raises the signal and the server would stay running).
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"school-gateway demo exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise BenchError("school-gateway demo did not become healthy")


# --- signing in and screenshots ----------------------------------------------------------


def launch(playwright: Any) -> Browser:
    browser: Browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        chromium_sandbox=False,
        args=[flag for flag in CHROMIUM_FLAGS if not flag.startswith("--headless")],
    )
    return browser


def sign_in(page: Page, url: str, target: Target) -> None:
    """The sign-in page → the development identity provider → the person's button."""
    page.goto(f"{url}/")
    page.get_by_role("link", name=ESIA_BUTTON).click()
    page.get_by_role("button", name=demo_person(target.account)).click()
    page.wait_for_url(f"{url}{target.path}**")


def demo_person(account: str) -> str:
    from fixtures.demo import demo_account

    return str(demo_account(account).full_name)


def session_cookie(browser: Browser, url: str, target: Target) -> str:
    """The `Cookie` header of a fresh sign-in of `target`'s account."""
    context = browser.new_context(locale="ru-RU")
    try:
        sign_in(context.new_page(), url, target)
        cookies = context.cookies(url)
    finally:
        context.close()
    return "; ".join(f"{cookie['name']}={cookie['value']}" for cookie in cookies)


def screenshots(browser: Browser, url: str, folder: Path) -> list[Path]:
    """The diary of the two-school parent at 1280 × 800 and 360 × 740 (full page at 360)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for width, height in ((1280, 800), (360, 740)):
        context = browser.new_context(
            viewport={"width": width, "height": height}, locale="ru-RU", device_scale_factor=1
        )
        try:
            page = context.new_page()
            sign_in(page, url, TARGETS[0])
            page.locator("#days .day").nth(6).wait_for(timeout=30_000)
            page.evaluate("document.fonts.ready")
            path = folder / f"diary-{width}.png"
            page.screenshot(path=str(path), full_page=False)
            written.append(path)
        finally:
            context.close()
    return written


# --- Lighthouse --------------------------------------------------------------------------


def run_lighthouse(tools: Tools, url: str, cookie: str, report: Path) -> dict[str, Any]:
    """One Lighthouse run (mobile defaults) of `url` with `cookie`; the parsed JSON report."""
    command = [
        str(tools.node),
        str(LIGHTHOUSE_CLI),
        url,
        "--output=json",
        f"--output-path={report}",
        f"--only-categories={','.join(CATEGORIES)}",
        f"--chrome-flags={' '.join(CHROMIUM_FLAGS)}",
        f"--extra-headers={json.dumps({'Cookie': cookie})}",
        "--no-enable-error-reporting",
        "--quiet",
    ]
    env = tools.node_env() | {"CHROME_PATH": CHROMIUM}
    result = subprocess.run(command, env=env, check=False, capture_output=True, text=True)
    if result.returncode != 0:
        raise BenchError(f"lighthouse failed on {url}:\n{result.stderr[-3000:]}")
    parsed: dict[str, Any] = json.loads(report.read_text())
    return parsed


def scores(report: dict[str, Any]) -> dict[str, int]:
    return {
        name: round(float(report["categories"][name]["score"] or 0) * 100) for name in CATEGORIES
    }


METRICS = {
    "first-contentful-paint": "FCP",
    "largest-contentful-paint": "LCP",
    "total-blocking-time": "TBT",
    "cumulative-layout-shift": "CLS",
    "speed-index": "SI",
}


def metrics(report: dict[str, Any]) -> str:
    """The performance metrics as Lighthouse displays them, on one line."""
    audits = report["audits"]
    shown = [f"{short} {audits[name].get('displayValue', '?')}" for name, short in METRICS.items()]
    return ", ".join(shown)


def foreign_requests(report: dict[str, Any]) -> list[str]:
    """URLs of the report's network requests to a host other than 127.0.0.1."""
    return [url for url in network(report) if urlsplit(url).hostname != HOST]


def network(report: dict[str, Any]) -> list[str]:
    """The http(s) URLs the page requested, from the report's network-requests audit."""
    items = report["audits"]["network-requests"]["details"]["items"]
    return [item["url"] for item in items if urlsplit(item["url"]).scheme in {"http", "https"}]


def shortfalls(report: dict[str, Any]) -> list[str]:
    """Audits of the categories that did not pass, with their titles."""
    failed = []
    for name in CATEGORIES:
        for ref in report["categories"][name]["auditRefs"]:
            audit = report["audits"][ref["id"]]
            weight = ref.get("weight", 0)
            if audit.get("score") is not None and audit["score"] < 0.9 and weight > 0:
                value = audit.get("displayValue", "")
                failed.append(f"{name}: {audit['id']} ({audit['score']:.2f}) {value}".rstrip())
    return failed


def median_run(
    tools: Tools, url: str, cookie: str, stem: str, runs: int
) -> tuple[dict[str, int], dict[str, Any], Path]:
    """`runs` Lighthouse runs; the run with the median performance score."""
    results = []
    for index in range(runs):
        report = RESULTS_DIR / f"{stem}-{index + 1}.json"
        parsed = run_lighthouse(tools, url, cookie, report)
        results.append((scores(parsed), parsed, report))
    results.sort(key=lambda result: result[0]["performance"])
    return results[len(results) // 2]


def measure(tools: Tools, browser: Browser, base: str, targets: list[Target], runs: int) -> int:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    print(f"{'page':<12}{'performance':>13}{'accessibility':>15}{'best practices':>16}")
    status = 0
    for target in targets:
        cookie = session_cookie(browser, base, target)
        stem = f"{stamp}-{target.path.strip('/')}"
        found, report, path = median_run(tools, base + target.path, cookie, stem, runs)
        print(
            f"{target.path:<12}{found['performance']:>13}{found['accessibility']:>15}"
            f"{found['best-practices']:>16}   {path.relative_to(ROOT)}",
            flush=True,
        )
        foreign = foreign_requests(report)
        count = len(network(report))
        print(f"    {metrics(report)}; {count} requests, {len(foreign)} not to {HOST}")
        for line in shortfalls(report):
            print(f"    {line}")
        if foreign:
            print(f"    requests to other hosts: {foreign}")
            status = 1
        final = report.get("finalDisplayedUrl", "")
        if urlsplit(final).path != target.path:
            print(f"    the page ended at {final}, not {target.path}: not signed in?")
            status = 1
        if target.path == "/diary":
            for name, bar in BARS.items():
                if found[name] < bar:
                    print(f"    below the bar: {name} {found[name]} < {bar}")
                    status = 1
    print(f"Lighthouse {lighthouse_version()}, {chromium_version()}, mobile (its defaults)")
    return status


def lighthouse_version() -> str:
    package = json.loads((LIGHTHOUSE_CLI.parent.parent / "package.json").read_text())
    return str(package["version"])


def chromium_version() -> str:
    result = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, check=False)
    return result.stdout.strip().split(" built")[0]


def main(argv: Sequence[str]) -> int:
    args = parse_args(argv)
    wanted = {name.strip("/ ") for name in args.pages.split(",")}
    targets = [target for target in TARGETS if target.path.strip("/") in wanted]
    tools = Tools(node=node_binary(), wrk=Path("/nonexistent"))
    if not args.no_lighthouse:
        install_lighthouse(tools)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    status = 0
    with demo_server(RESULTS_DIR / "server.log") as base, sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            if args.screenshots is not None:
                for path in screenshots(browser, base, args.screenshots):
                    print(f"wrote {path}")
            if not args.no_lighthouse:
                status = measure(tools, browser, base, targets, args.runs)
        finally:
            browser.close()
    return status


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as error:
        print(f"bench/lighthouse: {error}", file=sys.stderr)
        sys.exit(1)
