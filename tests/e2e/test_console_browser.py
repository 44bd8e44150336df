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
FINISH_TIMEOUT_MS = 120_000  # a generous cap: a loaded CI machine ran a 30-line bulk batch past 45 s

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
    # The landing page has rendered: a later navigation is not overwritten by its late answer
    expect(page.locator("h1")).to_have_text(re.compile(r"^(New batch|Admin)$"))


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
        expect(images.nth(index)).to_have_attribute("alt", re.compile(r"^a (red fox|blue owl)$"))
        page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=images.nth(index).element_handle())
    page.get_by_label("Status", exact=True).select_option("failed")  # the items table, failed only
    expect(page.get_by_role("region", name="Items").locator("tbody tr")).to_have_count(1)
    expect(page.get_by_role("region", name="Items")).to_contain_text("[[fail]]")
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


# ---------------------------------------------------------------------------------- past 100 items, the lightbox
def test_a_250_item_batch_shows_every_image_and_the_lightbox(browser: Any, runtime: Any) -> None:
    from batchgen_client import Client

    _, token = runtime.new_user(600)
    with Client(runtime.base_url, token) as client:
        prompts = [f"a lighthouse at dawn, take {n}" for n in range(250)]
        created = client.create_many("character", prompts, aspect_ratio="3:4", display_name="250 lighthouses")
        client.wait(created.id, interval=1, timeout=240)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    sign_in(page, runtime, token)
    page.goto(f"{runtime.base_url}/console/#/batch/{created.id}")
    expect(page.locator("#progress-text")).to_contain_text("250 of 250 done (100 %)")
    images = page.locator(".gallery img")
    expect(images).to_have_count(60)  # the first page
    more = page.get_by_role("button", name="Load more images")
    while more.is_visible():  # 60 a page: every image is reachable, not the first 100
        shown = images.count()
        more.click()
        expect(images).not_to_have_count(shown)
    expect(images).to_have_count(250)
    expect(images.nth(249)).to_have_attribute("alt", "a lighthouse at dawn, take 249")
    # Then each image keeps its 3:4 shape (no square crop)
    last = images.nth(249)
    page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=last.element_handle())
    shape = last.evaluate("(img) => [img.naturalWidth, img.naturalHeight, getComputedStyle(img).objectFit]")
    assert shape[0] * 4 == shape[1] * 3 and shape[2] == "contain", shape
    page.evaluate("() => window.scrollTo(0, 0)")
    page.screenshot(path=str(SCREENSHOTS / "console-250.png"))
    # The lightbox: prompt, model, size, cost, time
    page.get_by_role("button", name="Open a lighthouse at dawn, take 249").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator("#lightbox-prompt")).to_have_text("a lighthouse at dawn, take 249")
    expect(dialog.locator("#lightbox-model")).to_have_text("gemini-3.1-flash-image")
    expect(dialog.locator("#lightbox-size")).to_have_text(re.compile(r"^\d+ × \d+ px$"))
    expect(dialog.locator("#lightbox-cost")).to_have_text("2 credits (batch rate)")
    expect(dialog.locator("#lightbox-time")).to_contain_text("after the batch was created")
    expect(dialog.get_by_role("heading")).to_have_text("250 of 250")
    page.screenshot(path=str(SCREENSHOTS / "console-lightbox.png"))
    page.keyboard.press("ArrowLeft")
    expect(dialog.locator("#lightbox-prompt")).to_have_text("a lighthouse at dawn, take 248")
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    # Download all: the manifest link and the resumable CLI command
    expect(page.locator("#download-command")).to_have_text(f"batchgen download {created.id} ./{created.id}/")
    # The batch id appears once at the top (under the name), not twice
    top = page.locator("h1").inner_text() + page.locator("p.meta").inner_text()
    assert top.count(created.id) == 1, top
    context.close()


def test_retry_failed_and_the_id_once_in_an_unnamed_batch_title(page: Any, runtime: Any) -> None:
    from batchgen_client import Client

    _, token = runtime.new_user(20)
    with Client(runtime.base_url, token) as client:
        created = client.create("text", ["fine", "broken [[fail]]"])
        client.wait(created.id, interval=0.5, timeout=60)
    sign_in(page, runtime, token)
    page.goto(f"{runtime.base_url}/console/#/batch/{created.id}")
    expect(page.get_by_role("heading", name=f"Batch {created.id}")).to_be_visible()
    top = (
        page.locator("h1").inner_text()
        + page.locator("p.meta").inner_text()
        + "".join(page.locator("p.hint").all_inner_texts())
    )
    assert top.count(created.id) == 1, top
    page.get_by_role("button", name="Retry failed").click()
    expect(page.get_by_role("heading", name=re.compile(r"^Batch batch_"))).not_to_have_text(f"Batch {created.id}")
    expect(page.locator("#progress-text")).to_contain_text("1 of 1 done", timeout=FINISH_TIMEOUT_MS)


def test_on_a_phone_the_batches_table_shows_status_and_cost_without_scrolling(browser: Any, runtime: Any) -> None:
    from batchgen_client import Client

    _, token = runtime.new_user(5)
    Client(runtime.base_url, token).create("text", ["q"], display_name="phone batch with a long name to wrap")
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    sign_in(page, runtime, token)
    page.goto(f"{runtime.base_url}/console/#/batches")
    row = page.get_by_role("region", name="Your batches").locator("tbody tr").first
    expect(row.locator(".badge")).to_be_visible()
    expect(row.locator("td").last).to_be_visible()  # the cost
    assert row.locator("td").last.inner_text() == "0.5"
    wrap = page.get_by_role("region", name="Your batches")
    assert wrap.evaluate("(el) => el.scrollWidth <= el.clientWidth")
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth")
    page.screenshot(path=str(SCREENSHOTS / "console-batches-phone.png"))
    context.close()


def test_bulk_upload_page_takes_a_dropped_jsonl_file(page: Any, runtime: Any) -> None:
    _, token = runtime.new_user(50)
    sign_in(page, runtime, token)
    page.get_by_role("link", name="Bulk upload").click()
    lines = "".join(f'{{"id": "sku-{n}", "prompt": "slogan {n}"}}\n' for n in range(30))
    transfer = page.evaluate_handle(
        """(text) => { const t = new DataTransfer(); t.items.add(new File([text], "requests.jsonl")); return t; }""",
        lines,
    )
    page.dispatch_event("#bulk-drop", "drop", {"dataTransfer": transfer})
    expect(page.locator("#bulk-summary")).to_contain_text("30 requests")
    page.get_by_label("Type").select_option("text")
    page.get_by_role("button", name="Upload and create batch").click()
    expect(page.locator("#progress-text")).to_contain_text("30 of 30 done (100 %)", timeout=FINISH_TIMEOUT_MS)


def test_bulk_upload_page_takes_dropped_images(page: Any, runtime: Any) -> None:
    _, token = runtime.new_user(50)
    sign_in(page, runtime, token)
    page.get_by_role("link", name="Bulk upload").click()
    files = [{"name": f"img{n}.png", "data": base64.b64encode(make_png(f"img{n}")).decode()} for n in range(3)]
    transfer = page.evaluate_handle(
        """(files) => { const t = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
                t.items.add(new File([bytes], f.name, { type: "image/png" }));
            }
            return t; }""",
        files,
    )
    page.dispatch_event("#bulk-drop", "drop", {"dataTransfer": transfer})
    expect(page.locator("#bulk-summary")).to_contain_text("3 images")
    page.get_by_label("Shared prompt").fill("as a watercolour")
    page.get_by_role("button", name="Upload and create batch").click()
    expect(page.locator("#progress-text")).to_contain_text("3 of 3 done (100 %)", timeout=FINISH_TIMEOUT_MS)
    expect(page.locator(".gallery img")).to_have_count(3)


def test_webhooks_page_adds_an_endpoint_tests_it_and_shows_the_delivery(page: Any, runtime: Any) -> None:
    from tests.webhook_receiver import start_receiver

    receiver = start_receiver()
    try:
        _, token = runtime.new_user(1)
        sign_in(page, runtime, token)
        page.get_by_role("link", name="Webhooks").click()
        page.get_by_label("URL").fill(receiver.url)
        page.get_by_role("button", name="Add endpoint").click()
        expect(page.locator("#hook-secret")).to_contain_text("whsec_")
        page.get_by_role("button", name="Send test").click()
        receiver.wait_for(1, timeout=30, event_type="webhook.test")
        log = page.get_by_role("region", name="Delivery log")
        for _ in range(20):  # the log refreshes after a test; reload until the attempt is recorded
            if "webhook.test" in log.inner_text():
                break
            page.reload()
            page.wait_for_timeout(500)
        expect(log).to_contain_text("webhook.test")
        expect(log).to_contain_text("200")
    finally:
        receiver.stop()


def test_templates_and_scheduled_batches(page: Any, runtime: Any) -> None:
    _, token = runtime.new_user(20)
    sign_in(page, runtime, token)
    page.get_by_role("link", name="Templates").click()
    page.get_by_label("Name", exact=True).fill("Product shots")
    page.get_by_label("Type").select_option("text")
    page.get_by_label(re.compile("^Shared prompt")).fill("a slogan for {{product}}")
    page.get_by_label("Requests (one prompt per line)").fill("short\nlong")
    page.get_by_role("button", name="Save template").click()
    page.get_by_label("Variables for Product shots").fill("product=tea")
    page.get_by_role("button", name="Create batch").click()
    expect(page.locator("#progress-text")).to_contain_text("2 of 2 done (100 %)", timeout=FINISH_TIMEOUT_MS)
    # A batch scheduled off-peak shows on the Scheduled page and cancels with a full refund
    page.get_by_role("link", name="New batch").click()
    page.get_by_label("Prompts").fill("later")
    page.get_by_label("Type").select_option("text")
    page.get_by_label("Start", exact=True).select_option("off-peak")
    page.get_by_role("button", name="Create batch").click()
    expect(page.locator("p.meta")).to_contain_text("starts")
    page.get_by_role("link", name="Scheduled").click()
    scheduled = page.get_by_role("region", name="Scheduled batches")
    expect(scheduled).to_contain_text("01:00 UTC")
    scheduled.get_by_role("button", name="Cancel (full refund)").click()
    expect(scheduled).to_contain_text("Nothing scheduled")
