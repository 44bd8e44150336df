"""`batchgen`: the batch service from a terminal.

Exit codes a script can rely on: 0 the batch completed (or the command did what it was asked), 1 the
batch ended failed, expired or cancelled, 2 a usage error (bad arguments, no URL/token, a request the
API calls invalid), 3 the API refused or could not be reached (401, 402, 403, 404, 409, 429, 5xx).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from batchgen.models.api import BatchStatusResponse
from batchgen_client.client import ENV_TOKEN, ENV_URL, IMAGE_SUFFIXES, Client, image_data_url, is_finished
from batchgen_client.errors import (
    ApiError,
    BatchgenError,
    ConfigurationError,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    Unauthorized,
    Unsupported,
    WaitTimeout,
)

MAX_BATCH_REQUESTS_FALLBACK = 20


class Exit(IntEnum):
    COMPLETED = 0
    UNSUCCESSFUL = 1
    USAGE = 2
    API = 3


app = typer.Typer(
    name="batchgen",
    help="Batch image generation from the terminal. Configure with BATCHGEN_URL and BATCHGEN_TOKEN (or --url/--token).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)


@dataclass
class Settings:
    url: str | None
    token: str | None

    def client(self) -> Client:
        return Client(self.url, self.token)


@app.callback()
def configure(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(envvar=ENV_URL, help="API base URL, e.g. http://127.0.0.1:3001")] = None,
    token: Annotated[str | None, typer.Option(envvar=ENV_TOKEN, help="Bearer token (JWT)", show_default=False)] = None,
) -> None:
    ctx.obj = Settings(url, token)


def fail(message: str, code: Exit) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(int(code))


def explain(error: BatchgenError) -> NoReturn:
    """One readable line per failure, always quoting the API's own message."""
    if isinstance(error, ConfigurationError):
        fail(str(error), Exit.USAGE)
    if isinstance(error, Unauthorized):
        fail(f"not signed in (401): {error.message} Check BATCHGEN_TOKEN or --token.", Exit.API)
    if isinstance(error, InsufficientCredits):
        fail(
            f"not enough credits (402): {error.message} Required {error.required}, available {error.available}.",
            Exit.API,
        )
    if isinstance(error, Unsupported):
        fail(f"not supported by this service: {error.message}", Exit.API)
    if isinstance(error, NotFound):
        fail(f"not found (404): {error.message}", Exit.API)
    if isinstance(error, InvalidRequest):
        details = "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in error.details[:5])
        fail(f"invalid request (400): {error.message}" + (f" ({details})" if details else ""), Exit.USAGE)
    if isinstance(error, ApiError):
        fail(f"{error.error} ({error.status_code}): {error.message}", Exit.API)
    if isinstance(error, WaitTimeout):
        fail(str(error), Exit.API)
    fail(str(error), Exit.API)


def outcome(batch: BatchStatusResponse) -> Exit:
    return Exit.COMPLETED if batch.status == "completed" else Exit.UNSUCCESSFUL


# ---------------------------------------------------------------------------------- inputs
def read_requests(source: Path, prompt: str | None, max_inline: int) -> tuple[list[dict[str, Any]], bool]:
    """(requests, is_bulk) from a prompts file, an image folder or a JSONL file."""
    if source.is_dir():
        images = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not images:
            fail(f"{source} holds no .png, .jpg, .jpeg or .webp image.", Exit.USAGE)
        if not prompt:
            fail("an image folder needs --prompt (what to do with every image).", Exit.USAGE)
        return [{"id": p.stem[:128], "imageBase64": image_data_url(p)} for p in images], False
    if not source.is_file():
        fail(f"{source} is neither a file nor a folder.", Exit.USAGE)
    lines = [line.strip() for line in source.read_text(encoding="utf-8").splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        fail(f"{source} has no requests.", Exit.USAGE)
    if source.suffix.lower() != ".jsonl":
        return [{"prompt": line} for line in lines], False
    if len(lines) > max_inline:
        return [], True
    requests: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        try:
            entry = json.loads(line)
        except ValueError:
            fail(f"{source}:{number} is not valid JSON.", Exit.USAGE)
        if not isinstance(entry, dict):
            fail(f"{source}:{number} is not a JSON object.", Exit.USAGE)
        requests.append(entry)
    return requests, False


# ---------------------------------------------------------------------------------- progress
class Watcher:
    """A live rich progress bar per item state, fed by `Client.wait(progress=...)`."""

    STATES = (("completed", "green"), ("failed", "red"), ("processing", "yellow"), ("pending", "blue"))

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description:>11}"),
            BarColumn(bar_width=None),
            MofNCompleteColumn(),
            TextColumn("{task.fields[note]}"),
            console=console,
        )
        self.tasks = {
            state: self.progress.add_task(f"[{color}]{state}", total=1, note="") for state, color in self.STATES
        }
        self.live = Live(self.progress, console=console, transient=False, refresh_per_second=8)

    def __enter__(self) -> Watcher:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)
        if not self.live.console.is_terminal:
            self.live.console.line()  # piped output: the bars' last frame ends without a newline

    def __call__(self, batch: BatchStatusResponse) -> None:
        summary = batch.summary.model_dump()
        total = max(summary["total"], 1)
        for state, task in self.tasks.items():
            note = f"batch {batch.status}" if state == "completed" else ""
            self.progress.update(task, completed=summary[state], total=total, note=note)


def follow(
    client: Client, batch_id: str, *, interval: float, timeout: float | None, quiet: bool
) -> BatchStatusResponse:
    """Waits with live bars (when piped, rich prints the bars' final state once)."""
    if quiet:
        return client.wait(batch_id, interval=interval, timeout=timeout)
    with Watcher(out) as watcher:
        return client.wait(batch_id, progress=watcher, interval=interval, timeout=timeout)


def print_batch(batch: BatchStatusResponse) -> None:
    color = {"completed": "green", "failed": "red", "cancelled": "yellow", "expired": "red"}.get(batch.status, "blue")
    out.print(
        f"batch [bold]{batch.id}[/] [{color}]{batch.status}[/]: {batch.successCount} succeeded, "
        f"{batch.failCount} failed of {batch.requestCount}; cost {batch.creditCost}, refunded {batch.refundedCredits}",
        highlight=False,
    )
    for error in batch.errors:
        out.print(f"  [red]✗[/] {escape(error)}", highlight=False)


def save(client: Client, batch_id: str, directory: Path) -> None:
    report = client.download(batch_id, directory)
    out.print(
        f"downloaded {len(report.downloaded)}, skipped {len(report.skipped)} already there, "
        f"{len(report.failed)} without a result -> {directory}",
        highlight=False,
    )


# ---------------------------------------------------------------------------------- commands
@app.command()
def submit(
    ctx: typer.Context,
    source: Annotated[
        Path,
        typer.Argument(
            help="A text file (one prompt per line), a folder of images (image-edit, with --prompt), or a .jsonl "
            "file (one {id?, prompt?, imageBase64?} per line). A JSONL of at most MAX_BATCH_REQUESTS lines is "
            "sent inline; a longer one as a bulk upload, where the service supports bulk batches.",
            show_default=False,
        ),
    ],
    batch_type: Annotated[
        str | None, typer.Option("--type", "-t", help="character, food, product, text-to-image, image-edit, text")
    ] = None,
    prompt: Annotated[str | None, typer.Option(help="Shared prompt put before each request's prompt")] = None,
    quality: Annotated[str | None, typer.Option(help="1k, 2k or 4k")] = None,
    aspect_ratio: Annotated[str | None, typer.Option("--aspect-ratio", help="e.g. 1:1, 16:9")] = None,
    model: Annotated[str | None, typer.Option(help="Gemini model or alias (default per type)")] = None,
    negative_prompt: Annotated[str | None, typer.Option("--negative-prompt")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Display name")] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the batch to its end (exit code from its outcome)")
    ] = False,
    download: Annotated[Path | None, typer.Option(help="With --wait: save the results into this folder")] = None,
    interval: Annotated[float, typer.Option(help="Seconds between status reads")] = 2.0,
    timeout: Annotated[float | None, typer.Option(help="Give up waiting after this many seconds")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars")] = False,
) -> None:
    """Create a batch; with --wait, follow it to the end (and --download its results)."""
    if download is not None and not wait:
        fail("--download needs --wait (or run `batchgen download ID DIR` later).", Exit.USAGE)
    batch_type = batch_type or ("image-edit" if source.is_dir() else "text-to-image")
    try:
        with ctx.obj.client() as client:
            max_inline = MAX_BATCH_REQUESTS_FALLBACK
            if source.suffix.lower() == ".jsonl":
                max_inline = client.catalog().maxBatchRequests
            requests, bulk = read_requests(source, prompt, max_inline)
            options: dict[str, Any] = dict(
                prompt=prompt,
                model=model,
                quality=quality,
                aspect_ratio=aspect_ratio,
                negative_prompt=negative_prompt,
                display_name=name,
            )
            if bulk:
                created = client.create_from_file(batch_type, source, **options)
            else:
                created = client.create(batch_type, requests, **options)
            out.print(
                f"created batch [bold]{created.id}[/] ({created.requestCount} requests, {created.creditCost} credits)",
                highlight=False,
            )
            if not wait:
                return
            batch = follow(client, created.id, interval=interval, timeout=timeout, quiet=quiet)
            print_batch(batch)
            if download is not None:
                save(client, created.id, download)
    except ValidationError as exc:
        fail(f"invalid request: {_first_error(exc)}", Exit.USAGE)
    except BatchgenError as exc:
        explain(exc)
    raise typer.Exit(int(outcome(batch)))


@app.command()
def status(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Argument(metavar="ID", show_default=False)],
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Live progress until the batch ends")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the status body as JSON")] = False,
    interval: Annotated[float, typer.Option(help="Seconds between status reads")] = 2.0,
) -> None:
    """Show a batch (exit code 0 completed, 1 failed/expired/cancelled; while running, 0)."""
    try:
        with ctx.obj.client() as client:
            batch = follow(client, batch_id, interval=interval, timeout=None, quiet=as_json) if watch else None
            batch = batch or client.status(batch_id)
    except BatchgenError as exc:
        explain(exc)
    if as_json:
        print(batch.model_dump_json(indent=2))
    else:
        print_batch(batch)
    raise typer.Exit(int(outcome(batch)) if is_finished(batch) else 0)


@app.command("wait")
def wait_command(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Argument(metavar="ID", show_default=False)],
    download: Annotated[Path | None, typer.Option(help="Save the results into this folder")] = None,
    interval: Annotated[float, typer.Option(help="Seconds between status reads")] = 2.0,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds (exit 3)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars")] = False,
) -> None:
    """Wait for a batch to end; exit 0 if it completed, 1 otherwise."""
    try:
        with ctx.obj.client() as client:
            batch = follow(client, batch_id, interval=interval, timeout=timeout, quiet=quiet)
            print_batch(batch)
            if download is not None:
                save(client, batch_id, download)
    except BatchgenError as exc:
        explain(exc)
    raise typer.Exit(int(outcome(batch)))


@app.command("download")
def download_command(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Argument(metavar="ID", show_default=False)],
    directory: Annotated[Path, typer.Argument(metavar="DIR", show_default=False)],
    concurrency: Annotated[int, typer.Option(min=1, max=32, help="Parallel downloads")] = 4,
) -> None:
    """Save a batch's images (and texts) into DIR; files already there are skipped."""
    try:
        with ctx.obj.client() as client:
            report = client.download(batch_id, directory, concurrency=concurrency)
    except BatchgenError as exc:
        explain(exc)
    out.print(
        f"downloaded {len(report.downloaded)}, skipped {len(report.skipped)} already there, "
        f"{len(report.failed)} without a result -> {directory}",
        highlight=False,
    )


@app.command()
def history(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="Only batches in this state")] = None,
    batch_type: Annotated[str | None, typer.Option("--type", help="Only batches of this type")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many batches (across pages)")] = 20,
) -> None:
    """Your batches, newest first."""
    table = Table("created", "status", "type", "ok/failed/all", "cost", "refunded", "name")
    table.add_column("id", no_wrap=True)
    try:
        with ctx.obj.client() as client:
            for entry in client.history(status=status, type=batch_type, page_size=min(limit, 100), limit=limit):
                table.add_row(
                    entry.createdAt[:16].replace("T", " "),
                    entry.status,
                    entry.type.removeprefix("batch-"),
                    f"{entry.successCount}/{entry.failCount}/{entry.requestCount}",
                    str(entry.creditCost),
                    str(entry.refundedCredits),
                    escape(entry.displayName or ""),
                    entry.id,
                )
    except BatchgenError as exc:
        explain(exc)
    out.print(table)


@app.command()
def credits(ctx: typer.Context) -> None:
    """Your balance and latest ledger entries."""
    try:
        with ctx.obj.client() as client:
            account = client.credits()
    except BatchgenError as exc:
        explain(exc)
    out.print(f"balance: [bold]{account.balance}[/] credits", highlight=False)
    table = Table("at", "change", "reason", "batch")
    for entry in account.ledger:
        table.add_row(entry.at[:19].replace("T", " "), f"{entry.delta:+}", escape(entry.reason), entry.batchId or "")
    out.print(table)


@app.command()
def cancel(ctx: typer.Context, batch_id: Annotated[str, typer.Argument(metavar="ID", show_default=False)]) -> None:
    """Cancel a batch: every item not yet succeeded is refunded."""
    try:
        with ctx.obj.client() as client:
            batch = client.cancel(batch_id)
    except BatchgenError as exc:
        explain(exc)
    print_batch(batch)


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "request"
    return f"{where}: {first.get('msg', 'invalid')}"


def main() -> None:
    """Console-script entry point (`[project.scripts] batchgen`)."""
    app()


if __name__ == "__main__":
    main()
