"""warehouse.readahead: the page-cache hint and the copy of a working copy."""

from __future__ import annotations

import errno
import os

import pytest

from warehouse import readahead


def _payload(n: int = 3 * 1024 * 1024 + 17) -> bytes:
    return bytes((i * 7919) % 251 for i in range(n))


def test_copy_file_copies_every_byte_and_replaces_the_target(tmp_path):
    src, dst = tmp_path / "a.duckdb", tmp_path / "a.duckdb.building"
    src.write_bytes(_payload())
    dst.write_bytes(b"stale working copy, longer than nothing" * 1000)
    readahead.copy_file(src, dst)
    assert dst.read_bytes() == src.read_bytes()


@pytest.mark.parametrize("code", [errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL])
def test_copy_file_falls_back_when_the_kernel_refuses_copy_file_range(tmp_path, monkeypatch, code):
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "copy_file_range", refuse, raising=False)
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_bytes(_payload(100_000))
    readahead.copy_file(src, dst)
    assert dst.read_bytes() == src.read_bytes()


def test_copy_file_does_not_hide_a_failure_after_part_was_copied(tmp_path, monkeypatch):
    real = os.copy_file_range
    calls = []

    def fail_second(fin, fout, count, *args):
        calls.append(count)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fin, fout, min(count, 4096))

    monkeypatch.setattr(os, "copy_file_range", fail_second)
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_bytes(_payload(100_000))
    with pytest.raises(OSError) as info:
        readahead.copy_file(src, dst)
    assert info.value.errno == errno.ENOSPC


def test_prefetch_asks_the_kernel_to_read_each_file_and_skips_what_it_cannot_open(tmp_path, monkeypatch):
    present = tmp_path / "w.duckdb"
    present.write_bytes(b"x" * 10_000)
    asked = []
    real = os.posix_fadvise

    def record(fd, offset, length, advice):
        asked.append((os.fstat(fd).st_ino, offset, length, advice))
        return real(fd, offset, length, advice)

    monkeypatch.setattr(os, "posix_fadvise", record)
    readahead.prefetch(present, tmp_path / "missing.duckdb")  # a missing file: skipped, no error
    assert asked == [(present.stat().st_ino, 0, 0, os.POSIX_FADV_WILLNEED)]


def test_start_writeback_submits_the_whole_file_and_leaves_it_as_it_is(tmp_path, monkeypatch):
    import ctypes
    import threading

    submitted = []

    class FakeLibc:
        def sync_file_range(self, fd, offset, nbytes, flags):
            submitted.append((os.fstat(fd).st_ino, offset, nbytes, flags))
            return 0

    path = tmp_path / "w.duckdb.building"
    path.write_bytes(_payload(2_000_000))
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: _Loaded(FakeLibc()))
    readahead.start_writeback(path)
    readahead.start_writeback(tmp_path / "missing")  # nothing to open: silently nothing
    for t in [t for t in threading.enumerate() if t.name == "residents-writeback"]:
        t.join(timeout=30)
    assert submitted == [(path.stat().st_ino, 0, 0, 2)]  # SYNC_FILE_RANGE_WRITE, whole file
    assert path.read_bytes() == _payload(2_000_000)


def test_start_writeback_with_the_real_call_leaves_the_file_as_it_is(tmp_path):
    import threading

    path = tmp_path / "w.duckdb.building"
    path.write_bytes(_payload(2_000_000))
    readahead.start_writeback(path)
    for t in [t for t in threading.enumerate() if t.name == "residents-writeback"]:
        t.join(timeout=30)
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())
    assert path.read_bytes() == _payload(2_000_000)


class _Loaded:
    """A loaded library whose function accepts argtypes/restype like a ctypes one."""

    def __init__(self, impl):
        self._impl = impl

    def __getattr__(self, name):
        fn = getattr(self._impl, name)

        def call(*args):
            return fn(*args)

        return call
