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


def test_prefetch_is_a_hint_that_never_fails(tmp_path):
    present = tmp_path / "w.duckdb"
    present.write_bytes(b"x" * 10_000)
    readahead.prefetch(present, tmp_path / "missing.duckdb", tmp_path)  # a folder, a missing file: skipped


@pytest.mark.parametrize("size", [0, 4096, 3 * 1024 * 1024 + 17, (8 << 20) + 4096 * 3 + 5])
def test_a_durable_copy_writes_every_byte_past_the_page_cache(tmp_path, size):
    src, dst = tmp_path / "w.duckdb", tmp_path / "w.duckdb.building"
    src.write_bytes(_payload(size))
    dst.write_bytes(b"stale" * 100_000)
    readahead.copy_file(src, dst, durable=True)
    assert dst.read_bytes() == src.read_bytes()


def test_a_durable_copy_where_o_direct_is_refused_copies_all_the_same(tmp_path, monkeypatch):
    real_open = os.open

    def no_direct(path, flags, *args):
        if flags & getattr(os, "O_DIRECT", 0):
            raise OSError(errno.EINVAL, "O_DIRECT not supported")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", no_direct)
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_bytes(_payload(1_000_003))
    readahead.copy_file(src, dst, durable=True)
    assert dst.read_bytes() == src.read_bytes()


def test_the_durable_copy_path_is_taken_where_o_direct_works(tmp_path, monkeypatch):
    """On this file system (ext4 in CI) the O_DIRECT writer, not the fallback, copies."""
    if not readahead._copy_direct(_write(tmp_path / "probe", b"x" * 8192), tmp_path / "probe.copy"):
        pytest.skip("no O_DIRECT on this file system")
    monkeypatch.setattr(os, "copy_file_range", lambda *a: (_ for _ in ()).throw(AssertionError("fallback used")),
                        raising=False)
    src, dst = tmp_path / "a", tmp_path / "b"
    src.write_bytes(_payload(2_000_000))
    readahead.copy_file(src, dst, durable=True)
    assert dst.read_bytes() == src.read_bytes()


def _write(path, data: bytes):
    path.write_bytes(data)
    return path
