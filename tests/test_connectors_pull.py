"""connectors.pull against the real OpenSSH server of tests/servers.py (and a local folder).

A generated inbox is written into the SFTP user's folder and pulled over SFTP; a TCP
proxy in front of sshd cuts the first connection mid-file; a writer thread keeps a file
growing during the pull; a wrong password and a closed port fail alone, in Chinese.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError

from connectors.pull import MANIFEST, prune_archive, pull_sources
from schemas.sources import SourceSpec
from settings import Settings

FILE_SYSTEMS = ("civil_affairs", "low_income", "floating_population")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def remote(sftp_server):
    """A fresh folder on the SFTP server (written locally, read by the SFTP user)."""
    folder = Path(sftp_server["root"]) / f"t-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    os.chmod(folder, 0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def spec(sftp_server, folder: Path, name: str = "low_income", *, port: int | None = None, **kw) -> SourceSpec:
    url = f"sftp://{sftp_server['user']}@{sftp_server['host']}:{port or sftp_server['port']}{folder}/"
    kw.setdefault("key_file", sftp_server["key"])
    kw.setdefault("settle_seconds", 0.3)
    kw.setdefault("retry_delay_s", 0.1)
    return SourceSpec(name=name, url=url, **kw)


def pull(specs, tmp_path, env=None, **kw):
    return pull_sources(specs, tmp_path / "inbox", archive=tmp_path / "archive", env=env or {}, **kw)


def test_pull_a_generated_inbox_over_sftp_then_nothing_again(sftp_server, remote, tmp_path):
    from synth import generate

    generate(remote, households=40, seed=3, noise="realistic", days=2)
    specs = [spec(sftp_server, remote / s, s) for s in FILE_SYSTEMS]
    first = pull(specs, tmp_path)
    assert first.problems == []
    for s in FILE_SYSTEMS:
        want = {p.name: sha(p) for p in (remote / s).iterdir()}
        got = {p.name: sha(p) for p in (tmp_path / "inbox" / s).iterdir()}
        assert got == want and want
        kept = list((tmp_path / "archive" / s).rglob("*.*"))
        assert sorted(p.name for p in kept) == sorted(want)
        assert all(not os.stat(p).st_mode & 0o222 for p in kept)   # archive is read-only
    assert first.fetched == sum(len(list((remote / s).iterdir())) for s in FILE_SYSTEMS)
    assert not list((tmp_path / "inbox" / ".pull").rglob("*.part"))
    manifest = (tmp_path / "inbox" / MANIFEST).read_text(encoding="utf-8")
    assert "低保花名册" in manifest and "sha256" in manifest

    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "inbox").rglob("*") if p.is_file()}
    second = pull(specs, tmp_path)
    assert second.fetched == 0 and second.problems == []
    assert [s.already for s in second.sources] == [len(list((remote / s).iterdir())) for s in FILE_SYSTEMS]
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "inbox").rglob("*") if p.is_file()} == before


def test_a_new_version_of_a_file_is_fetched_again(sftp_server, remote, tmp_path):
    f = remote / "低保花名册_202611.xlsx"
    f.write_bytes(b"v1")
    assert pull([spec(sftp_server, remote)], tmp_path).fetched == 1
    f.write_bytes(b"version 2")
    os.utime(f, (time.time() + 5, time.time() + 5))
    r = pull([spec(sftp_server, remote)], tmp_path)
    assert r.sources[0].fetched == ["低保花名册_202611.xlsx"]
    assert (tmp_path / "inbox" / "low_income" / f.name).read_bytes() == b"version 2"


class CuttingProxy:
    """TCP proxy to sshd that drops its first connection after `cut_after` bytes from
    the server; later connections pass through."""

    def __init__(self, port: int, cut_after: int):
        self.target, self.cut_after = port, cut_after
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.target))
            limit = self.cut_after if self.connections == 1 else None
            threading.Thread(target=self._pipe, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, limit), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                sent += len(data)
                if limit is not None and sent >= limit:
                    break
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self) -> None:
        self.server.close()


def test_dropped_connection_mid_file_resumes_and_checks_out(sftp_server, remote, tmp_path):
    payload = os.urandom(6 * 1024 * 1024)
    (remote / "低保花名册_202611.xlsx").write_bytes(payload)
    proxy = CuttingProxy(int(sftp_server["port"]), cut_after=2 * 1024 * 1024)
    try:
        r = pull([spec(sftp_server, remote, port=proxy.port, settle_seconds=0)], tmp_path)
    finally:
        proxy.close()
    s = r.sources[0]
    assert s.error is None, s.error
    assert proxy.connections >= 2                      # the first connection was cut
    assert s.fetched == s.resumed == ["低保花名册_202611.xlsx"]   # continued, not restarted
    landed = tmp_path / "inbox" / "low_income" / "低保花名册_202611.xlsx"
    assert landed.read_bytes() == payload


def test_file_still_being_written_is_left_for_the_next_pull(sftp_server, remote, tmp_path):
    (remote / "低保花名册_202610.xlsx").write_bytes(b"done")
    growing = remote / "低保花名册_202611.xlsx"
    stop = threading.Event()

    def writer() -> None:
        with growing.open("ab") as fh:
            while not stop.is_set():
                fh.write(b"x" * 1000)
                fh.flush()
                time.sleep(0.05)

    t = threading.Thread(target=writer)
    t.start()
    try:
        time.sleep(0.2)
        r = pull([spec(sftp_server, remote, settle_seconds=1.0)], tmp_path)
    finally:
        stop.set()
        t.join()
    s = r.sources[0]
    assert s.fetched == ["低保花名册_202610.xlsx"] and s.still_writing == ["低保花名册_202611.xlsx"]
    assert not (tmp_path / "inbox" / "low_income" / growing.name).exists()
    s = pull([spec(sftp_server, remote)], tmp_path).sources[0]
    assert s.fetched == [growing.name] and s.still_writing == []
    assert (tmp_path / "inbox" / "low_income" / growing.name).read_bytes() == growing.read_bytes()


def test_done_marker_decides_when_a_file_is_complete(sftp_server, remote, tmp_path):
    (remote / "低保花名册_202611.xlsx").write_bytes(b"abc")
    s = pull([spec(sftp_server, remote, done_marker=".ok")], tmp_path).sources[0]
    assert s.fetched == [] and s.still_writing == ["低保花名册_202611.xlsx"]
    (remote / "低保花名册_202611.xlsx.ok").write_bytes(b"")
    s = pull([spec(sftp_server, remote, done_marker=".ok")], tmp_path).sources[0]
    assert s.fetched == ["低保花名册_202611.xlsx"]
    assert sorted(p.name for p in (tmp_path / "inbox" / "low_income").iterdir()) == ["低保花名册_202611.xlsx"]
    s = pull([spec(sftp_server, remote, done_marker=".ok")], tmp_path).sources[0]
    assert (s.fetched, s.already, s.still_writing) == ([], 1, [])     # the marker is not a file to fetch


def test_wrong_password_fails_at_once_in_chinese_and_never_shows_the_password(sftp_server, remote, tmp_path):
    (remote / "低保花名册_202611.xlsx").write_bytes(b"abc")
    bad = spec(sftp_server, remote, key_file=None, password_env="LOW_INCOME_SFTP_PASSWORD", attempts=3)
    good = spec(sftp_server, remote, "civil_affairs", key_file=None, password_env="CA_PW")
    r = pull([bad, good], tmp_path, env={"LOW_INCOME_SFTP_PASSWORD": "wrong-secret-123",
                                         "CA_PW": sftp_server["password"]})
    err = r.sources[0].error
    assert err is not None and err.reason == "auth_failed" and err.attempts == 1   # not retried
    assert "数据来源拒绝登录" in str(err) and "来源 low_income（低保）" in str(err)
    assert "wrong-secret-123" not in str(err) and "wrong-secret-123" not in repr(err.to_dict())
    assert r.sources[1].error is None and r.sources[1].fetched == ["低保花名册_202611.xlsx"]   # by password


def test_unreachable_host_is_retried_then_fails_alone(sftp_server, remote, tmp_path):
    (remote / "低保花名册_202611.xlsx").write_bytes(b"abc")
    with socket.create_server(("127.0.0.1", 0)) as s:
        closed_port = s.getsockname()[1]           # nothing listens there once closed
    delays: list[float] = []
    dead = spec(sftp_server, remote, "civil_affairs", port=closed_port, attempts=3, retry_delay_s=0.5)
    r = pull([dead, spec(sftp_server, remote)], tmp_path, sleep=lambda d: delays.append(d) or time.sleep(min(d, 0.3)))
    err = r.sources[0].error
    assert err is not None and err.reason == "unreachable" and err.attempts == 3
    assert delays[:2] == [0.5, 1.0]                 # exponential backoff
    assert str(err).startswith("无法连接数据来源（已尝试 3 次）：来源 civil_affairs（民政）")
    assert r.sources[1].fetched == ["低保花名册_202611.xlsx"]


def test_missing_password_variable_and_missing_folder(sftp_server, remote, tmp_path):
    no_env = spec(sftp_server, remote, key_file=None, password_env="NOT_SET_ANYWHERE")
    gone = spec(sftp_server, remote / "no-such-folder", "civil_affairs")
    r = pull([no_env, gone], tmp_path)
    assert r.sources[0].error.reason == "credentials_missing" and "NOT_SET_ANYWHERE" in str(r.sources[0].error)
    assert r.sources[1].error.reason == "not_found" and r.sources[1].error.attempts == 1


def test_local_folder_source_and_archive_retention(tmp_path):
    exports = tmp_path / "share"
    exports.mkdir()
    (exports / "火化信息_20261121.csv").write_text("a,b\n", encoding="utf-8")
    local = SourceSpec(name="civil_affairs", url=str(exports), settle_seconds=0)
    day1 = dt.date(2026, 1, 1)
    r = pull_sources([local], tmp_path / "inbox", archive=tmp_path / "archive", retention_days=30, today=day1)
    assert r.fetched == 1 and (tmp_path / "archive" / "civil_affairs" / "2026-01-01" / "火化信息_20261121.csv").exists()
    assert prune_archive(tmp_path / "archive", 30, today=day1 + dt.timedelta(days=30)) == []
    removed = prune_archive(tmp_path / "archive", 30, today=day1 + dt.timedelta(days=31))
    assert [p.name for p in removed] == ["2026-01-01"] and not (tmp_path / "archive" / "civil_affairs" / "2026-01-01").exists()
    assert (tmp_path / "inbox" / "civil_affairs" / "火化信息_20261121.csv").exists()   # the inbox copy stays


def test_sources_settings_are_validated_and_never_hold_a_password():
    s = Settings.model_validate({"sources": {
        "low_income": {"url": "sftp://exchange@10.1.2.3/exports/低保/", "password_env": "LOW_INCOME_PW"},
        "wis": {"system": "family_planning", "url": "mysql+pymysql://reader@qzj:3306/wis", "password_env": "WIS_PW"}}})
    li, wis = s.sources["low_income"], s.sources["wis"]
    assert (li.kind, li.system, li.host, li.username, li.path) == ("sftp", "low_income", "10.1.2.3", "exchange", "/exports/低保/")
    assert wis.kind == "sql" and s.sql_sources() == {"family_planning": wis} and s.file_sources() == [li]
    with pytest.raises(ValidationError) as e:
        Settings.model_validate({"sources": {"low_income": {"url": "sftp://exchange:topsecret@h/x/"}}})
    assert "密码不得写在地址中" in str(e.value) and "topsecret" not in str(e.value)
    with pytest.raises(ValidationError, match="未知的来源系统"):
        Settings.model_validate({"sources": {"lowincome": {"url": "/srv/x"}}})
    with pytest.raises(ValidationError, match="不支持的地址类型"):
        Settings.model_validate({"sources": {"low_income": {"url": "ftp://a@h/x/"}}})
    with pytest.raises(ValidationError, match="SFTP 地址应为"):
        Settings.model_validate({"sources": {"low_income": {"url": "sftp:///x/"}}})


def test_a_database_source_needs_table_mappings_for_its_system():
    with pytest.raises(ValidationError, match="low_income 没有数据库表的映射"):
        Settings.model_validate({"sources": {"low_income": {"url": "mysql+pymysql://reader@qzj/exchange"}}})


def test_server_tests_fail_in_ci_when_their_server_is_missing(tmp_path):
    """Locally a missing server skips its tests; with CI=true they fail."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESIDENTS_TEST_", "CI"))}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
           "tests/test_connectors_pull.py::test_done_marker_decides_when_a_file_is_complete",
           "tests/test_connectors_sql.py::test_mariadb_wrong_password_and_unreachable_host_in_chinese"]
    local = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert local.returncode == 0 and "2 skipped" in local.stdout, local.stdout
    ci = subprocess.run(cmd, cwd=root, env={**env, "CI": "true"}, capture_output=True, text=True, timeout=120)
    assert ci.returncode == 1 and "2 error" in ci.stdout, ci.stdout
    assert "SFTP (OpenSSH) tests must run in CI" in ci.stdout and "MariaDB tests must run in CI" in ci.stdout


def test_transfer_cut_in_one_pull_continues_in_the_next(sftp_server, remote, tmp_path):
    payload = os.urandom(5 * 1024 * 1024)
    (remote / "低保花名册_202611.xlsx").write_bytes(payload)
    proxy = CuttingProxy(int(sftp_server["port"]), cut_after=2 * 1024 * 1024)
    try:
        first = pull([spec(sftp_server, remote, port=proxy.port, settle_seconds=0, attempts=1)], tmp_path).sources[0]
    finally:
        proxy.close()
    assert first.error is not None and first.error.reason == "transfer_failed" and first.fetched == []
    assert "传输文件时连接反复中断" in str(first.error)
    part = next((tmp_path / "inbox" / ".pull" / "low_income").glob("*.part"))
    assert 0 < part.stat().st_size < len(payload)               # what arrived is kept
    assert not (tmp_path / "inbox" / "low_income").exists()      # nothing half-landed
    second = pull([spec(sftp_server, remote, settle_seconds=0)], tmp_path).sources[0]
    assert second.fetched == second.resumed == ["低保花名册_202611.xlsx"]
    assert (tmp_path / "inbox" / "low_income" / "低保花名册_202611.xlsx").read_bytes() == payload


def test_known_hosts_accepts_the_servers_key_and_refuses_another(sftp_server, remote, tmp_path):
    (remote / "低保花名册_202611.xlsx").write_bytes(b"abc")
    host = f"[{sftp_server['host']}]:{sftp_server['port']}"
    key_type, key_b64 = Path(sftp_server["host_key"]).read_text().split()[:2]
    good = tmp_path / "known_hosts"
    good.write_text(f"{host} {key_type} {key_b64}\n")
    s = pull([spec(sftp_server, remote, known_hosts=good)], tmp_path).sources[0]
    assert s.error is None and s.fetched == ["低保花名册_202611.xlsx"]
    import paramiko

    other = paramiko.Ed25519Key.from_private_key_file(sftp_server["key"])   # not the host's key
    bad = tmp_path / "known_hosts_other"
    bad.write_text(f"{host} {other.get_name()} {other.get_base64()}\n")
    s = pull([spec(sftp_server, remote, "civil_affairs", known_hosts=bad, attempts=3)], tmp_path).sources[0]
    assert s.error is not None and s.error.reason == "host_key_rejected" and s.error.attempts == 1
    assert s.fetched == [] and "主机密钥" in str(s.error)


def test_a_transfer_that_ends_early_keeps_what_arrived_for_the_next_pull(tmp_path):
    """A cut link can read as an end of file instead of an error (it depends on when
    paramiko notices): the bytes that arrived stay in the .part file and the next pull
    continues from them; only a file larger than announced starts over."""
    import contextlib
    import io

    from connectors.pull import _fetch, _partial, _Remote

    payload = os.urandom(300_000)
    remote = _Remote(rel="低保花名册_202611.xlsx", path="/x/低保花名册_202611.xlsx", size=len(payload), mtime=1.0)
    source = SourceSpec(name="low_income", url="sftp://u@h:22/x/")

    class Fs:
        def __init__(self, data: bytes):
            self.data = data

        def open(self, path: str, mode: str):
            return contextlib.closing(io.BytesIO(self.data))

    inbox = tmp_path / "inbox"
    with pytest.raises(OSError, match="ended early"):
        _fetch(Fs(payload[:120_000]), source, remote, inbox)
    part, _ = _partial(inbox, source, remote.rel)
    assert part.stat().st_size == 120_000                      # kept
    digest, resumed = _fetch(Fs(payload), source, remote, inbox)
    assert resumed and digest == hashlib.sha256(payload).hexdigest() and part.read_bytes() == payload
    part.unlink()
    with pytest.raises(OSError, match="size changed"):
        _fetch(Fs(payload + b"more"), source, remote, inbox)
    assert not part.exists()                                    # more than announced: start over
