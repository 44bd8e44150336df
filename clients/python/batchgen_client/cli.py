"""`batchgen`: the batch service from a terminal.

Exit codes a script can rely on: 0 the batch completed (or the command did what it was asked), 1 the
batch ended failed, expired or cancelled, 2 a usage error (bad arguments, no URL/token, a request the
API calls invalid), 3 the API refused or could not be reached (401, 402, 403, 404, 409, 429, 5xx).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from batchgen.models.api import BatchStatusResponse, CreateBatchResponse
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

ERRORS_SHOWN = 10  # failed items listed under a batch; `batchgen items ID --status failed` lists them all


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
    rich_markup_mode=None,
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
@dataclass
class Source:
    """What `submit` read: the requests, or (a long JSONL file) the file itself, sent as it is."""

    requests: list[dict[str, Any]]
    count: int
    jsonl: Path | None = None  # a .jsonl file sent unread as a bulk upload


def read_requests(source: Path, prompt: str | None, max_inline: int) -> Source:
    """The requests of a prompts file, an image folder or a JSONL file, whatever their number."""
    if source.is_dir():
        images = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not images:
            fail(f"{source} holds no .png, .jpg, .jpeg or .webp image.", Exit.USAGE)
        if not prompt:
            fail("an image folder needs --prompt (what to do with every image).", Exit.USAGE)
        return Source([{"id": p.stem[:128], "imageBase64": image_data_url(p)} for p in images], len(images))
    if not source.is_file():
        fail(f"{source} is neither a file nor a folder.", Exit.USAGE)
    if source.suffix.lower() == ".jsonl":
        return read_jsonl(source, max_inline)
    with source.open(encoding="utf-8") as handle:
        lines = [line.strip() for line in handle]
    prompts = [line for line in lines if line and not line.startswith("#")]
    if not prompts:
        fail(f"{source} has no requests.", Exit.USAGE)
    return Source([{"prompt": line} for line in prompts], len(prompts))


def read_jsonl(source: Path, max_inline: int) -> Source:
    """A JSONL file: parsed when it fits inline; a longer one is only counted and goes up as it is (the
    service validates every line and names the bad ones)."""
    count = 0
    with source.open(encoding="utf-8") as handle:
        for line in handle:
            count += bool(line.strip())
    if not count:
        fail(f"{source} has no requests.", Exit.USAGE)
    if count > max_inline:
        return Source([], count, jsonl=source)
    requests: list[dict[str, Any]] = []
    with source.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                fail(f"{source}:{number} is not valid JSON.", Exit.USAGE)
            if not isinstance(entry, dict):
                fail(f"{source}:{number} is not a JSON object.", Exit.USAGE)
            requests.append(entry)
    return Source(requests, count)


# ---------------------------------------------------------------------------------- progress
class Watcher:
    """One live bar for a batch: items done of all, the rate since the watch began and the time left;
    while a bulk batch's file is read, the bytes read of the file (when its size is known)."""

    def __init__(self, console: Console, file_bytes: int | None = None) -> None:
        self.file_bytes = file_bytes
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=None),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(compact=True),
            TextColumn("{task.fields[note]}"),
            console=console,
        )
        self.task = self.progress.add_task("starting", total=None, rate="", note="")
        self.live = Live(self.progress, console=console, transient=False, refresh_per_second=4)
        self.started: tuple[float, int] | None = None

    def __enter__(self) -> Watcher:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)
        if not self.live.console.is_terminal:
            self.live.console.line()  # piped output: the bar's last frame ends without a newline

    def __call__(self, batch: BatchStatusResponse) -> None:
        if batch.status == "validating" and batch.validation is not None:
            read = batch.validation
            total = self.file_bytes or None
            note = f"{read.requestsRead:,} requests read"
            self.progress.update(self.task, description="validating", completed=read.bytesRead, total=total,
                                 rate="", note=note)  # fmt: skip
            return
        summary = batch.summary
        done = summary.completed + summary.failed + summary.cancelled
        now = time.monotonic()
        if self.started is None or done < self.started[1]:
            self.started = (now, done)
        began, done_then = self.started
        rate = (done - done_then) / (now - began) if now > began else 0.0
        note = f"{batch.status}: {summary.completed} ok, {summary.failed} failed"
        if summary.cancelled:
            note += f", {summary.cancelled} cancelled"
        self.progress.update(
            self.task,
            description="items",
            completed=done,
            total=max(summary.total, 1),
            rate=f"{rate * 60:.0f}/min" if rate else "",
            note=note,
        )


def follow(
    client: Client,
    batch_id: str,
    *,
    interval: float,
    timeout: float | None,
    quiet: bool,
    file_bytes: int | None = None,
) -> BatchStatusResponse:
    """Waits with a live bar (when piped, rich prints the bar's final state once)."""
    if quiet:
        return client.wait(batch_id, interval=interval, timeout=timeout)
    with Watcher(out, file_bytes) as watcher:
        return client.wait(batch_id, progress=watcher, interval=interval, timeout=timeout)


def shown(value: object, missing: str = "-") -> str:
    """A value for a person: never "None"."""
    return missing if value is None else str(value)


def print_batch(batch: BatchStatusResponse) -> None:
    color = {"completed": "green", "failed": "red", "cancelled": "yellow", "expired": "red"}.get(batch.status, "blue")
    summary = batch.summary
    counts = f"{summary.completed} succeeded, {summary.failed} failed"
    if summary.cancelled:
        counts += f", {summary.cancelled} cancelled"
    if batch.status == "validating":
        read = batch.validation
        counts = "the input file is being read" + (f" ({read.requestsRead:,} requests so far)" if read else "")
    elif summary.total == 0:
        counts = "no request ran"
    else:
        counts += f" of {summary.total}"
    out.print(
        f"batch [bold]{batch.id}[/] [{color}]{batch.status}[/] ({batch.type.removeprefix('batch-')}): {counts}; "
        f"cost {shown(batch.creditCost)}, refunded {shown(batch.refundedCredits)}",
        highlight=False,
    )
    if batch.failureReason:
        out.print(f"  [red]reason:[/] {escape(batch.failureReason)}", highlight=False)
    for error in batch.errors[:ERRORS_SHOWN]:
        out.print(f"  [red]✗[/] {escape(error)}", highlight=False)
    hidden = batch.failCount - min(len(batch.errors), ERRORS_SHOWN)
    if hidden > 0 and batch.errors:
        out.print(f"  … and {hidden} more: batchgen items {batch.id} --status failed", highlight=False)


def save(client: Client, batch_id: str, directory: Path, concurrency: int = 4) -> None:
    report = client.download(batch_id, directory, concurrency=concurrency)
    out.print(
        f"downloaded {len(report.downloaded)}, skipped {len(report.skipped)} already there, "
        f"{len(report.failed)} without a result -> {directory}",
        highlight=False,
    )


def print_json(value: Any) -> None:
    """JSON for scripts, on stdout (no rich markup, no wrapping)."""
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


BatchId = Annotated[str, typer.Argument(metavar="ID", show_default=False)]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON (the API's own bodies) instead of a table")]
Interval = Annotated[float, typer.Option(metavar="SECONDS", help="Seconds between status reads")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar")]


# ---------------------------------------------------------------------------------- commands
@app.command()
def submit(
    ctx: typer.Context,
    source: Annotated[
        Path,
        typer.Argument(
            metavar="SOURCE",
            help="A text file (one prompt per line), a folder of images (image-edit, with --prompt), or a .jsonl "
            "file (one {id?, prompt?, imageBase64?} per line). Any number of requests: above the service's "
            "inline limit (MAX_BATCH_REQUESTS, 20) they go up as one bulk file by themselves.",
            show_default=False,
        ),
    ],
    batch_type: Annotated[
        str | None,
        typer.Option(
            "--type",
            "-t",
            metavar="TYPE",
            help="character, food, product, text-to-image, image-edit or text; it sets the price and model. "
            "Default: image-edit for a folder of images, text-to-image otherwise (printed when used)",
            show_default=False,
        ),
    ] = None,
    prompt: Annotated[str | None, typer.Option(metavar="TEXT", help="Shared prompt put before each request's")] = None,
    quality: Annotated[str | None, typer.Option(metavar="1k|2k|4k", help="Quality (4k costs 2x)")] = None,
    aspect_ratio: Annotated[str | None, typer.Option("--aspect-ratio", metavar="W:H", help="e.g. 1:1, 3:4")] = None,
    model: Annotated[str | None, typer.Option(metavar="MODEL", help="Gemini model or alias (default per type)")] = None,
    negative_prompt: Annotated[str | None, typer.Option("--negative-prompt", metavar="TEXT")] = None,
    name: Annotated[str | None, typer.Option("--name", metavar="TEXT", help="Display name")] = None,
    # A tier/deadline choice (batch, flex, auto) joins these options when the service offers it.
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the batch to its end (exit code from its outcome)")
    ] = False,
    download: Annotated[
        Path | None, typer.Option(metavar="DIR", help="With --wait: save the results into this folder")
    ] = None,
    interval: Interval = 2.0,
    timeout: Annotated[float | None, typer.Option(metavar="SECONDS", help="Give up waiting after this long")] = None,
    quiet: Quiet = False,
) -> None:
    """Create a batch from any number of prompts or images; with --wait, follow it to the end."""
    if download is not None and not wait:
        fail("--download needs --wait (or run `batchgen download ID DIR` later).", Exit.USAGE)
    if batch_type is None:
        batch_type = "image-edit" if source.is_dir() else "text-to-image"
        out.print(f"type: {batch_type} (the default for this input; choose another with --type)", highlight=False)
    try:
        with ctx.obj.client() as client:
            created, file_bytes = send(client, source, batch_type, prompt, dict(
                prompt=prompt, model=model, quality=quality, aspect_ratio=aspect_ratio,
                negative_prompt=negative_prompt, display_name=name,
            ))  # fmt: skip
            if not wait:
                return
            batch = follow(client, created.id, interval=interval, timeout=timeout, quiet=quiet, file_bytes=file_bytes)
            print_batch(batch)
            if download is not None:
                save(client, created.id, download)
    except ValidationError as exc:
        fail(f"invalid request: {_first_error(exc)}", Exit.USAGE)
    except BatchgenError as exc:
        explain(exc)
    raise typer.Exit(int(outcome(batch)))


def send(
    client: Client, source: Path, batch_type: str, prompt: str | None, options: dict[str, Any]
) -> tuple[CreateBatchResponse, int | None]:
    """Creates the batch inline, or as a bulk upload above the inline limit (saying so); returns it and
    the uploaded file's size (the progress bar's total while the service reads it)."""
    max_inline = client.catalog().maxBatchRequests
    read = read_requests(source, prompt, max_inline)
    if read.count <= max_inline:
        created = client.create(batch_type, read.requests, **options)
        out.print(
            f"created batch [bold]{created.id}[/] ({created.requestCount} requests, {created.creditCost} credits)",
            highlight=False,
        )
        return created, None
    out.print(
        f"{read.count:,} requests: more than the {max_inline} one create takes inline, so they go up as one bulk "
        "file (POST /batch/uploads) and the service validates and charges them there",
        highlight=False,
    )
    with tempfile.TemporaryDirectory(prefix="batchgen-") as folder:
        path = read.jsonl or write_jsonl(read.requests, Path(folder) / "requests.jsonl")
        file_bytes = path.stat().st_size
        created = client.create_from_file(batch_type, path, **options)
    out.print(
        f"created batch [bold]{created.id}[/] ({read.count:,} requests, validating: the cost is charged once "
        "every line is read)",
        highlight=False,
    )
    return created, file_bytes


def write_jsonl(requests: list[dict[str, Any]], path: Path) -> Path:
    with path.open("w", encoding="utf-8") as handle:
        for entry in requests:
            handle.write(json.dumps(entry) + "\n")
    return path


@app.command()
def status(
    ctx: typer.Context,
    batch_id: BatchId,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Live progress until the batch ends")] = False,
    as_json: JsonFlag = False,
    interval: Interval = 2.0,
) -> None:
    """Show a batch (exit code 0 completed, 1 failed/expired/cancelled; while running, 0)."""
    try:
        with ctx.obj.client() as client:
            batch = follow(client, batch_id, interval=interval, timeout=None, quiet=as_json) if watch else None
            batch = batch or client.status(batch_id)
    except BatchgenError as exc:
        explain(exc)
    if as_json:
        print_json(batch.model_dump(mode="json"))
    else:
        print_batch(batch)
    raise typer.Exit(int(outcome(batch)) if is_finished(batch) else 0)


@app.command("wait")
def wait_command(
    ctx: typer.Context,
    batch_id: BatchId,
    download: Annotated[Path | None, typer.Option(metavar="DIR", help="Save the results into this folder")] = None,
    interval: Interval = 2.0,
    timeout: Annotated[float | None, typer.Option(metavar="SECONDS", help="Give up after this long (exit 3)")] = None,
    quiet: Quiet = False,
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
    batch_id: BatchId,
    directory: Annotated[Path, typer.Argument(metavar="DIR", show_default=False)],
    concurrency: Annotated[int, typer.Option(min=1, max=32, metavar="N", help="Parallel downloads")] = 4,
) -> None:
    """Save every image (and text) of a batch into DIR, however many; files already there are skipped."""
    try:
        with ctx.obj.client() as client:
            save(client, batch_id, directory, concurrency)
    except BatchgenError as exc:
        explain(exc)


@app.command()
def results(
    ctx: typer.Context,
    batch_id: BatchId,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write here instead of stdout")
    ] = None,
) -> None:
    """The ended batch's results manifest, JSONL: one {clientId, generationId, status, imageUrl, text, error}
    per item in request order (`batchgen results ID > results.jsonl`)."""
    try:
        with ctx.obj.client() as client:
            lines = client.manifest_lines(batch_id)
            if output is None:
                for line in lines:
                    sys.stdout.buffer.write(line + b"\n")
                sys.stdout.flush()
            else:
                with output.open("wb") as handle:
                    count = sum(handle.write(line + b"\n") > 0 for line in lines)
                err.print(f"{count} items -> {output}", highlight=False)
    except BatchgenError as exc:
        explain(exc)


@app.command()
def items(
    ctx: typer.Context,
    batch_id: BatchId,
    item_status: Annotated[
        str | None, typer.Option("--status", metavar="STATE", help="Only items in this state, e.g. failed")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Every item of a batch in request order, a page at a time (e.g. --status failed for the reasons)."""
    table = Table("#", "item", "status", "result or reason", box=box.SIMPLE, expand=True)
    try:
        with ctx.obj.client() as client:
            for number, entry in enumerate(client.items(batch_id, status=item_status), start=1):
                if as_json:
                    sys.stdout.write(entry.model_dump_json() + "\n")
                    continue
                result = entry.imageUrl or entry.text or entry.error or ""
                table.add_row(str(number), escape(entry.clientId), entry.status, escape(result))
    except BatchgenError as exc:
        explain(exc)
    if not as_json:
        out.print(table)


@app.command()
def history(
    ctx: typer.Context,
    batch_status: Annotated[str | None, typer.Option("--status", metavar="STATE", help="Only this state")] = None,
    batch_type: Annotated[str | None, typer.Option("--type", metavar="TYPE", help="Only this type")] = None,
    limit: Annotated[int, typer.Option(min=1, metavar="N", help="At most this many batches (across pages)")] = 20,
    as_json: JsonFlag = False,
) -> None:
    """Your batches, newest first."""
    # Two lines a batch (name over id, state over type), so the table reads at 80 columns.
    table = Table(box=box.SIMPLE, pad_edge=False)
    table.add_column("batch", overflow="fold", min_width=30)
    table.add_column("status", no_wrap=True)
    table.add_column("ok/fail/all", justify="right", no_wrap=True)
    table.add_column("cost", justify="right", no_wrap=True)
    table.add_column("created", no_wrap=True)
    entries: list[dict[str, Any]] = []
    try:
        with ctx.obj.client() as client:
            for entry in client.history(status=batch_status, type=batch_type, page_size=min(limit, 100), limit=limit):
                entries.append(entry.model_dump(mode="json"))
                label = escape(entry.displayName) + "\n" if entry.displayName else ""
                table.add_row(
                    f"{label}[dim]{entry.id}[/]",
                    f"{entry.status}\n[dim]{entry.type.removeprefix('batch-')}[/]",
                    f"{entry.successCount}/{entry.failCount}/{entry.requestCount}",
                    str(entry.creditCost),
                    entry.createdAt[5:16].replace("T", " "),
                )
    except BatchgenError as exc:
        explain(exc)
    if as_json:
        print_json(entries)
    else:
        out.print(table)


@app.command()
def credits(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Your balance and latest ledger entries."""
    try:
        with ctx.obj.client() as client:
            account = client.credits()
    except BatchgenError as exc:
        explain(exc)
    if as_json:
        print_json(account.model_dump(mode="json"))
        return
    out.print(f"balance: [bold]{account.balance}[/] credits", highlight=False)
    table = Table(box=box.SIMPLE, pad_edge=False)
    for name in ("at (UTC)", "change", "reason"):
        table.add_column(name, no_wrap=True)
    table.add_column("batch", overflow="fold")
    for entry in account.ledger:
        table.add_row(entry.at[5:16].replace("T", " "), f"{entry.delta:+}", escape(entry.reason), entry.batchId or "")
    out.print(table)


@app.command()
def cancel(ctx: typer.Context, batch_id: BatchId) -> None:
    """Cancel a batch: every item not yet succeeded is refunded."""
    try:
        with ctx.obj.client() as client:
            batch = client.cancel(batch_id)
    except BatchgenError as exc:
        explain(exc)
    print_batch(batch)


@app.command()
def retry(
    ctx: typer.Context,
    batch_id: BatchId,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the new batch to its end")] = False,
    download: Annotated[Path | None, typer.Option(metavar="DIR", help="With --wait: save its results")] = None,
    interval: Interval = 2.0,
    quiet: Quiet = False,
) -> None:
    """A new batch of an ended batch's failed and cancelled items (charged at the batch rate)."""
    try:
        with ctx.obj.client() as client:
            created = client.retry(batch_id)
            out.print(f"created batch [bold]{created.id}[/] retrying the unsuccessful items of {batch_id}")
            if not wait:
                return
            batch = follow(client, created.id, interval=interval, timeout=None, quiet=quiet)
            print_batch(batch)
            if download is not None:
                save(client, created.id, download)
    except BatchgenError as exc:
        explain(exc)
    raise typer.Exit(int(outcome(batch)))


@app.command()
def delete(
    ctx: typer.Context,
    batch_id: BatchId,
    purge_images: Annotated[bool, typer.Option("--purge-images", help="Also remove its images from the CDN")] = False,
) -> None:
    """Delete an ended batch (and with --purge-images its images)."""
    try:
        with ctx.obj.client() as client:
            client.delete(batch_id, purge_images=purge_images)
    except BatchgenError as exc:
        explain(exc)
    out.print(f"deleted batch {batch_id}" + (" (its images are being removed)" if purge_images else ""))


def _first_error(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ())) or "request"
    return f"{where}: {first.get('msg', 'invalid')}"


def main() -> None:
    """Console-script entry point (`[project.scripts] batchgen`)."""
    app()


if __name__ == "__main__":
    main()
