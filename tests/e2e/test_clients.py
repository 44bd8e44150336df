"""The Python client and the `batchgen` CLI against `make run`'s runtime.

The CLI runs in-process through typer's CliRunner (fast), and once as the installed console script.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from batchgen_client import Client, Conflict, InsufficientCredits, NotFound, Unauthorized
from batchgen_client.cli import app
from local.emulators.png import make_png

pytestmark = pytest.mark.e2e
FAST = ["--interval", "0.5"]
BATCH_ID = re.compile(r"created batch (\S+)")


def cli(runtime, token: str, *args: str, columns: int = 160):
    env = {"BATCHGEN_URL": runtime.base_url, "BATCHGEN_TOKEN": token, "COLUMNS": str(columns)}
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def created_id(result) -> str:
    match = BATCH_ID.search(result.output)
    assert match, result.output
    return match[1]


# ---------------------------------------------------------------------------------- CLI
def test_prompts_file_submit_watch_then_download_twice(runtime, tmp_path: Path):
    _, token = runtime.new_user(20)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red fox\n\na blue owl\n# a comment line\na broken one [[fail]]\n", encoding="utf-8")

    submitted = cli(runtime, token, "submit", str(prompts), "--type", "character", "--name", "cli e2e")
    assert submitted.exit_code == 0, submitted.output
    batch_id = created_id(submitted)
    assert "3 requests, 6 credits" in submitted.output

    watched = cli(runtime, token, "status", batch_id, "--watch", *FAST)
    assert watched.exit_code == 0, watched.output
    assert "completed" in watched.output and "2 succeeded, 1 failed of 3" in watched.output
    assert "3/3" in watched.output and "ETA" in watched.output  # done/total and the time left
    assert "[[fail]] marker" in watched.output  # the item's error, not swallowed as rich markup

    out = tmp_path / "results"
    first = cli(runtime, token, "download", batch_id, str(out))
    assert first.exit_code == 0 and "downloaded 2, skipped 0" in first.output, first.output
    files = sorted(out.iterdir())
    assert [f.suffix for f in files] == [".png", ".png"]
    assert all(f.read_bytes().startswith(b"\x89PNG") for f in files)
    second = cli(runtime, token, "download", batch_id, str(out))
    assert "downloaded 0, skipped 2" in second.output, second.output

    table = cli(runtime, token, "history")
    assert batch_id in table.output and "cli e2e" in table.output
    account = cli(runtime, token, "credits")
    assert "balance: 16 credits" in account.output and "+2" in account.output


def test_image_folder_becomes_an_image_edit_batch_with_wait_and_download(runtime, tmp_path: Path):
    _, token = runtime.new_user(10)
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("cat", "dog"):
        (folder / f"{name}.png").write_bytes(make_png(name))
    (folder / "notes.txt").write_text("not an image", encoding="utf-8")

    result = cli(
        runtime, token, "submit", str(folder), "--prompt", "as a watercolour", "--wait", "--download",
        str(tmp_path / "out"), *FAST,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 requests, 4 credits" in result.output and "downloaded 2" in result.output
    report = Client(runtime.base_url, token).status(created_id(result))
    assert report.type == "batch-image-edit" and [i.clientId for i in report.items] == ["cat", "dog"]


def test_small_jsonl_goes_inline_and_a_failed_job_exits_1(runtime, tmp_path: Path):
    _, token = runtime.new_user(10)
    lines = tmp_path / "requests.jsonl"
    lines.write_text(
        "\n".join(json.dumps({"id": f"line-{n}", "prompt": f"scene {n} [[job:failed]]"}) for n in (1, 2)) + "\n",
        encoding="utf-8",
    )
    result = cli(runtime, token, "submit", str(lines), "--type", "food", "--wait", *FAST)
    assert result.exit_code == 1, result.output
    assert "failed" in result.output
    report = Client(runtime.base_url, token).status(created_id(result))
    assert [i.clientId for i in report.items] == ["line-1", "line-2"] and report.refundedCredits == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "/no/such/file.txt"], "neither a file nor a folder"),
        (["submit", "{folder}"], "needs --prompt"),
        (["submit", "{prompts}", "--download", "x"], "--download needs --wait"),
        (["submit", "{prompts}", "--type", "video"], "invalid request"),
        (["submit", "{prompts}", "--quality", "8k"], "invalid request"),
        (["status"], "Missing argument"),
        (["frobnicate"], "No such command"),
    ],
)
def test_usage_errors_exit_2(runtime, tmp_path: Path, args: list[str], message: str):
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(make_png("a"))
    prompts = tmp_path / "p.txt"
    prompts.write_text("x\n", encoding="utf-8")
    filled = [arg.format(folder=folder, prompts=prompts) for arg in args]
    result = cli(runtime, runtime.user_token, *filled)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_missing_token_is_a_usage_error(runtime):
    result = CliRunner().invoke(app, ["credits"], env={"BATCHGEN_URL": runtime.base_url, "BATCHGEN_TOKEN": ""})
    assert result.exit_code == 2 and "BATCHGEN_TOKEN" in result.output


def test_401_402_404_messages(runtime, tmp_path: Path):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a\nb\n", encoding="utf-8")
    bad = cli(runtime, "not-a-jwt", "credits")
    assert bad.exit_code == 3 and "not signed in (401)" in bad.output and "BATCHGEN_TOKEN" in bad.output

    _, broke = runtime.new_user("1.5")
    poor = cli(runtime, broke, "submit", str(prompts), "--type", "product")
    assert poor.exit_code == 3, poor.output
    assert "not enough credits (402)" in poor.output and "Required 5, available 1.5" in poor.output

    missing = cli(runtime, runtime.user_token, "status", "batch_does_not_exist")
    assert missing.exit_code == 3 and "not found (404)" in missing.output


def test_cancel_from_the_cli(runtime, tmp_path: Path):
    _, token = runtime.new_user(10)
    batch = Client(runtime.base_url, token).create("text", ["a slow question"])
    cancelled = cli(runtime, token, "cancel", batch.id)
    assert cancelled.exit_code == 0 and "cancelled" in cancelled.output, cancelled.output
    status = cli(runtime, token, "status", batch.id)
    assert status.exit_code == 1  # a cancelled batch is not a success
    again = cli(runtime, token, "cancel", batch.id)
    assert again.exit_code == 3 and "(409)" in again.output


def test_the_installed_console_script(runtime):
    script = Path(sys.executable).with_name("batchgen")
    if not script.exists():
        pytest.skip(f"{script} is not installed (pip install -e '.[client]')")
    env = {"BATCHGEN_URL": runtime.base_url, "BATCHGEN_TOKEN": runtime.user_token, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([str(script), "credits"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "balance:" in done.stdout, done.stderr


# ---------------------------------------------------------------------------------- Python client
def test_python_client_round_trip(runtime, tmp_path: Path):
    _, token = runtime.new_user(10)
    with Client(runtime.base_url, token) as client:
        created = client.create("character", ["one", "two [[blocked]]"], display_name="py client")
        seen: list[str] = []
        final = client.wait(created.id, progress=lambda s: seen.append(s.status), interval=0.5, timeout=60)
        assert final.status == "completed" and seen[-1] == "completed"
        results = client.results(created.id)
        assert [r.status for r in results] == ["success", "failed"]
        assert client.download(created.id, tmp_path).failed.keys() == {"request-2"}
        assert created.id in [entry.id for entry in client.history(page_size=1, limit=5)]
        assert client.credits().balance == 8
        with pytest.raises(Conflict):
            client.cancel(created.id)


def test_python_client_errors_carry_the_api_body(runtime, tmp_path: Path):
    with pytest.raises(Unauthorized) as unauthorized:
        Client(runtime.base_url, "nope").credits()
    assert unauthorized.value.body["error"] and unauthorized.value.message
    _, token = runtime.new_user(1)
    client = Client(runtime.base_url, token)
    with pytest.raises(InsufficientCredits) as poor:
        client.create("product", ["a"])
    assert (poor.value.required, poor.value.available) == (2.5, 1)
    with pytest.raises(NotFound):
        client.status("batch_missing")


def test_bulk_files_go_through_upload_and_create_from_file(runtime, tmp_path: Path):
    """The client PUTs the file to the presigned URL and creates the batch from it; the CLI's
    `submit` of a .jsonl file longer than the inline limit does the same."""
    _, token = runtime.new_user(100)
    lines = tmp_path / "big.jsonl"
    lines.write_text("".join(json.dumps({"prompt": f"p{n}"}) + "\n" for n in range(25)), encoding="utf-8")
    client = Client(runtime.base_url, token)
    created = client.create_from_file("text", lines)
    assert created.status == "validating" and created.requestCount is None and created.jobs == []
    finished = client.wait(created.id, interval=0.5, timeout=90)
    assert finished.status == "completed" and finished.requestCount == 25 and finished.successCount == 25
    result = cli(runtime, token, "submit", str(lines), "--type", "text")
    assert result.exit_code == 0, result.output
    assert "created batch" in result.output


# ---------------------------------------------------------------------------------- past 100 items, bulk by itself
def test_a_250_prompt_text_file_goes_bulk_by_itself_and_downloads_250_images(runtime, tmp_path: Path):
    """More prompts than one inline create takes: the CLI says so, uploads them as one JSONL file, and
    the download reads the results manifest: every image, not the first 100."""
    _, token = runtime.new_user(600)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"a lighthouse at dawn, take {n}\n" for n in range(250)), encoding="utf-8")
    out = tmp_path / "results"
    result = cli(runtime, token, "submit", str(prompts), "--type", "character", "--wait", "--download", str(out), *FAST)
    assert result.exit_code == 0, result.output
    assert "250 requests: more than the 20 one create takes inline" in result.output
    assert "250 succeeded, 0 failed of 250" in result.output and "None" not in result.output
    assert "downloaded 250, skipped 0" in result.output
    files = sorted(out.iterdir())
    assert len(files) == 250 and all(f.read_bytes().startswith(b"\x89PNG") for f in files)
    assert files[-1].name.startswith("0250-request-250-")  # request order, every position

    # The manifest, as `batchgen results ID > results.jsonl` writes it
    batch_id = created_id(result)
    manifest = cli(runtime, token, "results", batch_id)
    lines = [json.loads(line) for line in manifest.stdout.splitlines()]
    assert manifest.exit_code == 0 and len(lines) == 250 and lines[249]["clientId"] == "request-250"
    with Client(runtime.base_url, token) as client:
        assert sum(1 for _ in client.results(batch_id)) == 250  # the Python client reads past 100 too
        assert sum(1 for _ in client.items(batch_id)) == 250


def test_a_failed_bulk_batch_says_why_and_never_prints_none(runtime, tmp_path: Path):
    _, token = runtime.new_user(1)
    lines = tmp_path / "many.jsonl"
    lines.write_text("".join(json.dumps({"prompt": f"p{n}"}) + "\n" for n in range(30)), encoding="utf-8")
    submitted = cli(runtime, token, "submit", str(lines), "--type", "character", "--wait", *FAST)
    assert submitted.exit_code == 1, submitted.output
    assert "30 requests: more than the 20" in submitted.output
    assert "None" not in submitted.output
    shown = cli(runtime, token, "status", created_id(submitted))
    assert "no request ran" in shown.output and "reason:" in shown.output, shown.output
    assert "costs 60 credits but your balance is 1" in shown.output
    assert "None" not in shown.output


def test_history_reads_at_80_columns_and_every_listing_has_json(runtime, tmp_path: Path):
    _, token = runtime.new_user(10)
    prompts = tmp_path / "p.txt"
    prompts.write_text("one\ntwo [[fail]]\n", encoding="utf-8")
    batch_id = created_id(cli(runtime, token, "submit", str(prompts), "--name", "eighty columns", "--wait", *FAST))
    table = cli(runtime, token, "history", columns=80)
    assert table.exit_code == 0, table.output
    assert batch_id in table.output and "eighty columns" in table.output and "1/1/2" in table.output
    assert "…" not in table.output and max(len(line) for line in table.output.splitlines()) <= 80
    listed = json.loads(cli(runtime, token, "history", "--json").stdout)
    assert [entry["id"] for entry in listed] == [batch_id]
    assert json.loads(cli(runtime, token, "credits", "--json").stdout)["balance"] == 8
    failed = [
        json.loads(line)
        for line in cli(runtime, token, "items", batch_id, "--status", "failed", "--json").stdout.splitlines()
    ]
    assert [item["clientId"] for item in failed] == ["request-2"] and "[[fail]]" in failed[0]["error"]


def test_retry_and_delete_from_the_cli(runtime, tmp_path: Path):
    _, token = runtime.new_user(10)
    prompts = tmp_path / "p.txt"
    prompts.write_text("fine\nbroken [[fail]]\n", encoding="utf-8")
    first = created_id(cli(runtime, token, "submit", str(prompts), "--type", "text", "--wait", *FAST))
    retried = cli(runtime, token, "retry", first, "--wait", *FAST)
    assert "retrying the unsuccessful items of " + first in retried.output, retried.output
    assert retried.exit_code == 1  # the same prompt fails again: nothing succeeded
    assert "0 succeeded, 1 failed of 1" in retried.output
    deleted = cli(runtime, token, "delete", first)
    assert deleted.exit_code == 0 and f"deleted batch {first}" in deleted.output
    assert cli(runtime, token, "status", first).exit_code == 3


def test_help_shows_no_bool_metavars_and_names_the_default_type(runtime, tmp_path: Path):
    for command in ("submit", "status", "history", "retry", "delete", "items"):
        shown = cli(runtime, runtime.user_token, command, "--help", columns=100)
        assert shown.exit_code == 0 and "<bool>" not in shown.output, shown.output
    assert "text-to-image otherwise" in cli(runtime, runtime.user_token, "submit", "--help").output
    prompts = tmp_path / "p.txt"
    prompts.write_text("x\n", encoding="utf-8")
    _, token = runtime.new_user(2)
    defaulted = cli(runtime, token, "submit", str(prompts))
    assert "type: text-to-image (the default for this input" in defaulted.output
