"""The responses file is read as it downloads: lines cut across chunks, a bounded hand-over (never the
whole file in memory or on /tmp), errors surfaced to the reader, an early stop ends the download."""

from __future__ import annotations

import threading

import pytest

from batchgen.adapters.gemini import LinePipe, stream_lines


def chunked(data: bytes, size: int):
    def download(name: str, destination: LinePipe) -> None:
        for start in range(0, len(data), size):
            destination.write(data[start : start + size])

    return download


def test_lines_cut_across_chunks_come_out_whole_and_in_order():
    lines = [f'{{"key":"gen_{n}","text":"{"x" * n}"}}'.encode() for n in range(50)]
    data = b"\n".join(lines)  # no newline at the end: the last line still counts
    for size in (1, 7, 64, 10_000):
        assert list(stream_lines("files/r", chunked(data, size))) == lines


def test_the_download_waits_for_the_reader_holding_a_few_lines_at_most():
    written = []
    release = threading.Event()

    def download(name: str, destination: LinePipe) -> None:
        for n in range(100):
            destination.write(b"%d\n" % n)
            written.append(n)
        release.set()

    reader = stream_lines("files/r", download)
    assert next(reader) == b"0"
    assert not release.wait(0.5)  # the writer is held back by the bounded queue
    assert len(written) <= 8
    assert [int(line) for line in reader] == list(range(1, 100))


def test_a_failed_download_raises_in_the_reader_after_the_lines_before_it():
    def download(name: str, destination: LinePipe) -> None:
        destination.write(b"a\nb\n")
        raise ConnectionError("reset by peer")

    reader = stream_lines("files/r", download)
    assert [next(reader), next(reader)] == [b"a", b"b"]
    with pytest.raises(ConnectionError):
        next(reader)


def test_a_reader_that_stops_early_ends_the_download():
    finished = threading.Event()

    def download(name: str, destination: LinePipe) -> None:
        try:
            for n in range(10_000):
                destination.write(b"%d\n" % n)
        finally:
            finished.set()

    reader = stream_lines("files/r", download)
    assert next(reader) == b"0"
    reader.close()  # a collect handing over
    assert finished.wait(5)
