"""Screenshots of the main pages for the docs, taken from a running server with the demo
project (`./scripts/run`), signed in as its first admin, in Debian's Chromium.

    uv run python scripts/screenshots.py --url http://127.0.0.1:8000 --data-dir ~/.promptloop

Writes docs/images/ui-*.png. Run on the same machine as the server: the sign-in link is made
on the server's database, as `promptloop` does for the first admin.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

from promptloop.services import auth, local
from promptloop.settings import Settings

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# (file name, path under the server, what the page must show before the picture is taken)
PAGES = [
    ("prompts", "/p/demo/prompts", "h1"),
    ("editor", "/p/demo/prompts/orders/extract", "form"),
    ("history", "/p/demo/prompts/orders/extract/-/history", "h1"),
    ("deploy", "/p/demo/prompts/orders/extract/-/deploy", "h1"),
    ("playground", "/p/demo/playground?prompt=orders/extract", "form"),
    ("logs", "/p/demo/logs", "h1"),
    ("monitoring", "/p/demo/monitoring", "h1"),
    ("datasets", "/p/demo/datasets", "h1"),
    ("evaluators", "/p/demo/evaluators", "h1"),
    ("evaluations", "/p/demo/evaluations", "h1"),
    ("review", "/p/demo/review", "h1"),
    ("fine-tunes", "/p/demo/fine-tunes", "h1"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--data-dir", type=Path, default=Path.home() / ".promptloop")
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    token = local.sign_in_link(Settings(data_dir=args.data_dir), email=auth.FIRST_ADMIN_EMAIL)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(f"{args.url}/sign-in/link?token={token}")
        page.get_by_role("button").first.click()
        page.wait_for_load_state()
        extra: list[tuple[str, str, str]] = []
        page.goto(f"{args.url}/p/demo/evaluations")
        run_link = page.locator("a[href*='/evaluations/']").filter(has_not_text="New").first
        if run_link.count():
            extra.append(("evaluation-run", run_link.get_attribute("href") or "", "h1"))
        page.goto(f"{args.url}/p/demo/logs")
        log_link = page.locator("a[href*='/logs/']").first
        if log_link.count():
            extra.append(("log", log_link.get_attribute("href") or "", "h1"))
        for name, path, ready in PAGES + extra:
            response = page.goto(f"{args.url}{path}")
            status = response.status if response else 0
            page.locator(ready).first.wait_for(timeout=10_000)
            page.wait_for_timeout(300)  # charts draw after load
            target = args.out / f"ui-{name}.png"
            page.screenshot(path=str(target), full_page=False)
            print(f"{status} {path} -> {target}")
        browser.close()


if __name__ == "__main__":
    main()
