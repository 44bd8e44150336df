"""The web console in a real headless Chromium (Debian's package) driven by Playwright, against the runtime.

Writes `build/console-batch.png` (and a phone-sized one) of a finished batch page. Skipped only when
no Chromium is installed on this machine; `.ci/run` installs it, so CI always runs these.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from local.emulators.png import make_png

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FINISH_TIMEOUT_MS = 45_000

if not Path(CHROMIUM).exists():
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; CI installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')")
expect = sync_api.expect


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert not errors, f"JavaScript errors in the console: {errors}"


def sign_in(page: Any, runtime: Any, token: str) -> None:
    """The link the local runtime prints: the token travels in the fragment only."""
    page.goto(f"{runtime.base_url}/console/#token={token}")


def drop_images(page: Any, names: list[str]) -> None:
    """Drags PNG files onto the drop zone, as a person would from a file manager."""
    files = [{"name": f"{name}.png", "data": base64.b64encode(make_png(name)).decode()} for name in names]
    transfer = page.evaluate_handle(
        """(files) => {
            const transfer = new DataTransfer();
            for (const file of files) {
                const bytes = Uint8Array.from(atob(file.data), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], file.name, { type: "image/png" }));
            }
            return transfer;
        }""",
        files,
    )
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})


def test_sign_in_create_watch_gallery_and_errors(page: Any, runtime: Any) -> None:
    user_id, token = runtime.new_user(20)
    # Given a signed-in user on the new-batch page
    sign_in(page, runtime, token)
    expect(page.get_by_role("heading", name="New batch")).to_be_visible()
    expect(page.locator("#who")).to_have_text(user_id)
    assert "token=" not in page.url  # the fragment is dropped once read
    # When they type three prompts, one of them failing, the price shows before submitting
    page.get_by_label("Prompts").fill("a red fox\na blue owl\na broken one [[fail]]")
    page.get_by_label("Type").select_option("character")
    expect(page.locator("#price")).to_contain_text("3 requests × 2 = 6 credits")
    page.get_by_label("Quality").select_option("4k")
    expect(page.locator("#price")).to_contain_text("3 requests × 4.5 = 13.5 credits")  # 4K: 2.25 x 1K
    expect(page.locator("#price")).to_contain_text("Balance 20, 6.5 after")
    page.get_by_label("Quality").select_option("1k")
    page.get_by_label("Name (optional)").fill("browser batch")
    page.get_by_role("button", name="Create batch").click()
    # Then the batch page's progress bar reaches 100 %, with two images and one error
    expect(page.get_by_role("heading", name="browser batch")).to_be_visible()
    expect(page.locator("#progress-text")).to_contain_text("3 of 3 done (100 %)", timeout=FINISH_TIMEOUT_MS)
    assert page.locator("#progress").evaluate("(bar) => [bar.value, bar.max]") == [3, 3]
    images = page.locator(".gallery img")
    expect(images).to_have_count(2)
    for index in range(2):
        expect(images.nth(index)).to_have_attribute("alt", re.compile(r"Result for request-\d"))
        page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=images.nth(index).element_handle())
    expect(page.locator(".errors li")).to_have_count(1)
    expect(page.locator(".errors li")).to_contain_text("[[fail]]")
    expect(page.get_by_role("button", name="Cancel batch")).to_be_hidden()
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "console-batch.png"), full_page=True)
    # And on a phone-sized screen the page fits without sideways scrolling
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(SCREENSHOTS / "console-batch-phone.png"), full_page=True)
    # And the batch is in the list and the refund in the ledger
    page.get_by_role("link", name="Batches").click()
    expect(page.get_by_role("link", name="browser batch")).to_be_visible()
    page.get_by_role("link", name="Credits").click()
    expect(page.locator("#balance")).to_have_text("16")


def test_dropped_images_make_an_image_edit_batch_that_can_be_cancelled(page: Any, runtime: Any) -> None:
    _, token = runtime.new_user(10)
    sign_in(page, runtime, token)
    expect(page.get_by_role("heading", name="New batch")).to_be_visible()
    drop_images(page, ["cat", "dog"])
    expect(page.get_by_role("list", name="Selected images").locator("img")).to_have_count(2)
    expect(page.get_by_label("Type")).to_have_value("image-edit")
    expect(page.locator("#price")).to_contain_text("2 requests × 2 = 4 credits")
    page.get_by_label("Shared prompt (optional, put before every request)").fill("as a watercolour")
    page.get_by_role("button", name="Create batch").click()
    cancel = page.get_by_role("button", name="Cancel batch")
    cancel.click()
    expect(page.locator(".badge").first).to_have_text("cancelled")
    expect(cancel).to_be_hidden()
    page.get_by_role("link", name="Credits").click()
    expect(page.locator("#balance")).to_have_text("10")


def test_api_errors_show_their_message(page: Any, runtime: Any) -> None:
    # A bad token, typed in and submitted with the keyboard
    page.goto(f"{runtime.base_url}/console/")
    page.get_by_label("Access token").fill("not-a-token")
    page.get_by_label("Access token").press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("token")
    # Too few credits: the price warns, and the API's 402 message is shown
    _, token = runtime.new_user(1)
    sign_in(page, runtime, token)
    page.get_by_label("Prompts").fill("one\ntwo")
    expect(page.locator("#price")).to_contain_text("not enough credits")
    page.get_by_role("button", name="Create batch").click()
    expect(page.get_by_role("alert")).to_contain_text("credits")
    # An unknown batch: the 404 message
    page.goto(f"{runtime.base_url}/console/#/batch/batch_nope")
    expect(page.get_by_role("alert")).to_contain_text("batch_nope")


def test_admin_sees_every_batch_and_grants_credits(page: Any, runtime: Any) -> None:
    user_id, token = runtime.new_user(5)
    from batchgen_client import Client

    batch = Client(runtime.base_url, token).create("text", ["question for the admin page"])
    sign_in(page, runtime, runtime.admin_token)
    expect(page.get_by_role("heading", name="Admin")).to_be_visible()
    expect(page.get_by_role("link", name="Admin")).to_be_visible()
    expect(page.get_by_role("link", name="New batch")).to_be_hidden()  # admins cannot create batches
    expect(page.get_by_role("region", name="Every user's batches")).to_contain_text(batch.id)
    page.get_by_label("User id").fill(user_id)
    page.get_by_label("Amount (negative debits)").fill("7.5")
    page.get_by_label("Reason").fill("browser grant")
    page.get_by_role("button", name="Grant credits").click()
    expect(page.locator("#grant-result")).to_have_text(f"{user_id} now has 12 credits.")  # 5 - 0.5 + 7.5
    # What Gemini bills: per day for the user, and per batch on its page (admins only)
    Client(runtime.base_url, token).wait(batch.id)
    page.get_by_label("Account", exact=True).fill(user_id)
    page.get_by_role("button", name="Show usage").click()
    usage = page.get_by_role("region", name="Gemini usage per day")
    expect(usage).to_contain_text(datetime.now(UTC).date().isoformat())
    expect(usage).to_contain_text("0/0/0")  # a text batch: no images
    page.get_by_role("link", name=batch.id).click()
    expect(page.locator("#gemini-billing")).to_contain_text("Gemini bills: no images;")
    expect(page.locator("#gemini-billing")).to_contain_text("for 0.5 credits charged.")
    # A user token never shows the admin link, nor what Gemini bills
    sign_in(page, runtime, token)
    expect(page.get_by_role("heading", name="New batch")).to_be_visible()
    expect(page.get_by_role("link", name="Admin")).to_be_hidden()
    page.goto(f"{runtime.base_url}/console/#/batch/{batch.id}")
    expect(page.locator("#progress-text")).to_contain_text("1 of 1 done")
    expect(page.locator("#gemini-billing")).to_be_hidden()


def test_the_printed_console_link_signs_in(page: Any, runtime: Any) -> None:
    printed = dict(
        match.groups() for line in runtime.output.lines if (match := re.match(r"^\s+(user|admin)\s+(http\S+)$", line))
    )
    assert printed["user"].startswith(f"{runtime.base_url}/console/#token=")
    assert "batchgen submit prompts.txt --wait --download results/" in runtime.output.text()
    page.goto(printed["user"])
    expect(page.get_by_role("heading", name="New batch")).to_be_visible()
    expect(page.locator("#who")).to_have_text(runtime.user_id)
    page.goto(printed["admin"])
    expect(page.get_by_role("heading", name="Admin")).to_be_visible()
