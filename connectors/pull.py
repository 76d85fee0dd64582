"""Fetch new export files from each declared file source into the inbox (`residents pull`,
and the first stage of the nightly sync).

For every `[sources.<name>]` whose URL is an SFTP folder or a local folder:

* **list** the folder (recursively; hidden files, Excel lock files and done-markers are
  not exports);
* **never fetch again** what the manifest (`<inbox>/.pull/manifest.json`) records as
  fetched with the same size and modification time;
* **skip files still being written**: with `done_marker` (`.ok`) only files whose marker
  is there; otherwise a file is fetched when its size and time are the same in two looks
  `settle_seconds` apart (a file that changes between them is left for the next pull);
* **land atomically**: download into `<inbox>/.pull/<name>/…part`, check the byte count,
  take its sha256, then rename into `<inbox>/<system>/…` (discovery ignores `.pull/`);
* **resume** a transfer cut by a dropped connection: reconnect and continue from the
  partial file's length (also in the next pull, when the remote file is unchanged);
* **retry** transient errors (refused/dropped/timed-out connections) with exponential
  backoff; a wrong password or a missing folder is not retried;
* **archive** each fetched file read-only under `<archive>/<system>/<YYYY-MM-DD>/` and
  delete archive days older than the retention;
* **fail alone**: one source that cannot be reached becomes a `SourceError` (Chinese
  and English message, URL without password) in the result; the others are pulled.

fsspec and paramiko are imported only here, only when a pull runs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import socket
import stat
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from connectors.exceptions import SourceError
from connectors.retry import retry
from schemas.sources import SourceSpec

__all__ = ["PullResult", "SourcePull", "pull_sources", "pull_source", "prune_archive", "MANIFEST"]

MANIFEST = Path(".pull") / "manifest.json"
_CHUNK = 1 << 20


@dataclass
class SourcePull:
    """What one pull did for one source."""

    source: str
    system: str
    url: str                                              # without password
    fetched: list[str] = field(default_factory=list)      # relative paths landed in the inbox
    resumed: list[str] = field(default_factory=list)      # of those, continued after a cut
    already: int = 0                                      # files the manifest already has
    still_writing: list[str] = field(default_factory=list)
    error: SourceError | None = None


@dataclass
class PullResult:
    sources: list[SourcePull] = field(default_factory=list)

    @property
    def problems(self) -> list[SourceError]:
        return [s.error for s in self.sources if s.error is not None]

    @property
    def fetched(self) -> int:
        return sum(len(s.fetched) for s in self.sources)


@dataclass(frozen=True)
class _Remote:
    rel: str          # path relative to the source folder (POSIX)
    path: str         # full remote path
    size: int
    mtime: float


# --------------------------------------------------------------------------------------
def pull_sources(sources: Sequence[SourceSpec], inbox: str | Path, *, archive: str | Path,
                 retention_days: int = 0, env: Mapping[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep, today: dt.date | None = None) -> PullResult:
    """Pull every file source; one failing source is recorded, never raised."""
    inbox, archive = Path(inbox), Path(archive)
    env = {} if env is None else env
    result = PullResult()
    for spec in sources:
        if not spec.is_file_source:
            continue
        result.sources.append(pull_source(spec, inbox, archive=archive, env=env, sleep=sleep, today=today))
    if retention_days and result.sources:
        prune_archive(archive, retention_days, today=today)
    return result


def pull_source(spec: SourceSpec, inbox: Path, *, archive: Path, env: Mapping[str, str],
                sleep: Callable[[float], None] = time.sleep, today: dt.date | None = None) -> SourcePull:
    out = SourcePull(spec.name, spec.system, spec.redacted_url)
    session = _Session(spec, env, sleep)
    manifest_path = inbox / MANIFEST
    manifest = _load_manifest(manifest_path)
    seen = manifest.setdefault(spec.name, {})
    try:
        first = session.call(lambda fs: _listing(fs, spec))
        markers = set(_markers(first, spec))
        files = {r: f for r, f in first.items() if r not in markers}
        new = {r: f for r, f in files.items() if not _known(seen.get(r), f)}
        out.already = len(files) - len(new)
        ready = _ready(spec, session, first, new, out, sleep)
        for remote in ready:
            digest, resumed = session.call_transfer(lambda fs, r=remote: _fetch(fs, spec, r, inbox))
            _land(spec, remote, inbox, archive, today or dt.date.today())
            seen[remote.rel] = {"size": remote.size, "mtime": remote.mtime, "sha256": digest,
                                "fetched_at": dt.datetime.now().isoformat(timespec="seconds")}
            _save_manifest(manifest_path, manifest)
            out.fetched.append(remote.rel)
            if resumed:
                out.resumed.append(remote.rel)
    except SourceError as exc:
        out.error = exc
    finally:
        session.close()
    return out


# -- which files ------------------------------------------------------------------------
def _known(entry: dict[str, Any] | None, f: _Remote) -> bool:
    return entry is not None and entry.get("size") == f.size and entry.get("mtime") == f.mtime


def _markers(files: dict[str, _Remote], spec: SourceSpec) -> list[str]:
    if not spec.done_marker:
        return []
    return [r for r in files if r.endswith(spec.done_marker)]


def _ready(spec: SourceSpec, session: "_Session", first: dict[str, _Remote], new: dict[str, _Remote],
           out: SourcePull, sleep: Callable[[float], None]) -> list[_Remote]:
    """The new files that are complete: marked done, or unchanged across two looks."""
    if not new:
        return []
    if spec.done_marker:
        done = [f for r, f in new.items() if r + spec.done_marker in first]
        out.still_writing += sorted(r for r in new if r + spec.done_marker not in first)
        return sorted(done, key=lambda f: f.rel)
    sleep(spec.settle_seconds)
    second = session.call(lambda fs: _listing(fs, spec))
    ready = []
    for rel, f in sorted(new.items()):
        if second.get(rel) == f:
            ready.append(f)
        else:
            out.still_writing.append(rel)
    return ready


def _listing(fs: Any, spec: SourceSpec) -> dict[str, _Remote]:
    root = spec.path.rstrip("/") or "/"
    if not fs.isdir(root):
        raise FileNotFoundError(root)
    found = fs.find(root, detail=True)
    out: dict[str, _Remote] = {}
    for path, info in found.items():
        if info.get("type") != "file":
            continue
        rel = str(PurePosixPath(path).relative_to(PurePosixPath(root)))
        parts = PurePosixPath(rel).parts
        if any(p.startswith(".") for p in parts) or parts[-1].startswith("~$") or parts[-1].endswith(".part"):
            continue
        out[rel] = _Remote(rel, path, int(info["size"]), _mtime(info))
    return out


def _mtime(info: dict[str, Any]) -> float:
    value = info.get("mtime", info.get("modified"))
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return float(value or 0.0)


# -- transfer -------------------------------------------------------------------------
def _partial(inbox: Path, spec: SourceSpec, rel: str) -> tuple[Path, Path]:
    base = inbox / ".pull" / spec.name / rel
    return base.with_name(base.name + ".part"), base.with_name(base.name + ".part.json")


def _fetch(fs: Any, spec: SourceSpec, remote: _Remote, inbox: Path) -> tuple[str, bool]:
    """Download (or continue) `remote` into its .part file; returns (sha256, resumed)."""
    part, state = _partial(inbox, spec, remote.rel)
    part.parent.mkdir(parents=True, exist_ok=True)
    expected = {"size": remote.size, "mtime": remote.mtime}
    offset = 0
    if part.exists() and state.exists() and json.loads(state.read_text()) == expected:
        offset = part.stat().st_size
    if offset > remote.size:
        offset = 0
    if offset == 0:
        part.unlink(missing_ok=True)
    state.write_text(json.dumps(expected))
    with fs.open(remote.path, "rb") as src, part.open("ab") as dst:
        if offset:
            src.seek(offset)
        while block := src.read(_CHUNK):
            dst.write(block)
            dst.flush()
        os.fsync(dst.fileno())
    got = part.stat().st_size
    if got > remote.size:
        part.unlink(missing_ok=True)  # the file grew under us: start over next time
        raise OSError(f"size changed during transfer: expected {remote.size} bytes, got {got}")
    if got < remote.size:
        # the connection ended early (a cut link can read as an end of file): what arrived
        # is kept and the next pull continues it, if the state file still matches the
        # remote's size and time (a file changed since starts over)
        raise OSError(f"transfer ended early: {got} of {remote.size} bytes")
    return _sha256(part), offset > 0


def _land(spec: SourceSpec, remote: _Remote, inbox: Path, archive: Path, today: dt.date) -> None:
    """Rename the finished .part into the inbox; keep a read-only copy in the archive."""
    part, state = _partial(inbox, spec, remote.rel)
    dest = inbox / spec.system / remote.rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    kept = archive / spec.system / today.isoformat() / remote.rel
    kept.parent.mkdir(parents=True, exist_ok=True)
    if kept.exists():  # the same name fetched twice in one day (a new version): keep both
        kept = kept.with_name(f"{kept.stem}.{time.time_ns()}{kept.suffix}")
    shutil.copyfile(part, kept)
    os.chmod(kept, stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    os.replace(part, dest)
    state.unlink(missing_ok=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)
    return h.hexdigest()


def prune_archive(archive: Path, retention_days: int, *, today: dt.date | None = None) -> list[Path]:
    """Delete archive days (`<system>/<YYYY-MM-DD>/`) older than `retention_days`."""
    cutoff = (today or dt.date.today()) - dt.timedelta(days=retention_days)
    removed = []
    for day in sorted(archive.glob("*/*")):
        try:
            date = dt.date.fromisoformat(day.name)
        except ValueError:
            continue
        if day.is_dir() and date < cutoff:
            for p in day.rglob("*"):
                os.chmod(p, 0o700 if p.is_dir() else 0o600)
            shutil.rmtree(day)
            removed.append(day)
    return removed


# -- manifest ---------------------------------------------------------------------------
def _load_manifest(path: Path) -> dict[str, dict[str, dict[str, Any]]]:
    if not path.exists():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def _save_manifest(path: Path, manifest: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


# -- connections ------------------------------------------------------------------------
class _Session:
    """One source's file system, reconnected after a dropped connection."""

    def __init__(self, spec: SourceSpec, env: Mapping[str, str], sleep: Callable[[float], None]):
        self.spec, self.env, self.sleep = spec, env, sleep
        self.fs: Any = None

    def _connect(self) -> Any:
        if self.fs is None:
            self.fs = _open_fs(self.spec, self.env)
        return self.fs

    def _drop(self) -> None:
        fs, self.fs = self.fs, None
        if fs is not None and hasattr(fs, "client"):
            try:
                fs.client.close()
            except Exception:  # noqa: BLE001 - the connection is already gone
                pass

    def close(self) -> None:
        self._drop()

    def _run(self, fn: Callable[[Any], Any], reason: str) -> Any:
        spec = self.spec
        connected = False

        def attempt() -> Any:
            nonlocal connected
            fs = self._connect()
            connected = True
            try:
                return fn(fs)
            except BaseException as exc:
                if _transient(exc):
                    self._drop()
                raise

        try:
            return retry(attempt, attempts=spec.attempts, delay_s=spec.retry_delay_s, transient=_transient,
                         on_retry=lambda n, exc: self._drop(), sleep=self.sleep)
        except SourceError:
            raise
        except BaseException as exc:  # noqa: BLE001 - classified into a SourceError
            code = _classify(exc, reason if connected else "unreachable")
            raise SourceError(spec.system, spec.name, spec.redacted_url, reason=code,
                              attempts=getattr(exc, "attempts", 1),
                              detail=f"{type(exc).__name__}: {exc}") from exc

    def call(self, fn: Callable[[Any], Any]) -> Any:
        return self._run(fn, "unreachable")

    def call_transfer(self, fn: Callable[[Any], Any]) -> Any:
        return self._run(fn, "transfer_failed")


def _open_fs(spec: SourceSpec, env: Mapping[str, str]) -> Any:
    try:
        password = spec.password(env)
    except (KeyError, OSError) as exc:
        raise SourceError(spec.system, spec.name, spec.redacted_url, reason="credentials_missing",
                          detail=str(exc.args[0] if isinstance(exc, KeyError) else exc)) from None
    if spec.kind == "local":
        from fsspec.implementations.local import LocalFileSystem

        return LocalFileSystem()
    if spec.key_file is not None and not spec.key_file.is_file():
        raise SourceError(spec.system, spec.name, spec.redacted_url, reason="credentials_missing",
                          detail=f"key file not found: {spec.key_file}")
    from fsspec.implementations.sftp import SFTPFileSystem

    kwargs: dict[str, Any] = dict(
        port=spec.port or 22, username=spec.username, timeout=spec.timeout_s, banner_timeout=spec.timeout_s,
        auth_timeout=spec.timeout_s, look_for_keys=False, allow_agent=False, skip_instance_cache=True)
    if password is not None:
        kwargs["password"] = password
    if spec.key_file is not None:
        kwargs["key_filename"] = str(spec.key_file)
    if spec.known_hosts is not None:
        kwargs["host_key_policy"] = _KnownHostsPolicy(spec.known_hosts)
    fs = SFTPFileSystem(spec.host, **kwargs)
    fs.ftp.get_channel().settimeout(spec.timeout_s)
    return fs


def _KnownHostsPolicy(path: Path) -> Any:  # noqa: N802 - a paramiko policy instance
    """Accept only the host keys listed in `path` (known_hosts format)."""
    import paramiko

    class Policy(paramiko.MissingHostKeyPolicy):
        def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
            known = paramiko.HostKeys(str(path)).lookup(hostname) or {}
            if known.get(key.get_name()) != key:
                raise HostKeyRejected(f"host key of {hostname} is not in {path}")

    return Policy()


class HostKeyRejected(Exception):
    """The SFTP server's host key is not in the source's known_hosts file."""


def _transient(exc: BaseException) -> bool:
    """Worth another attempt: dropped, refused or timed-out connections. Not: a refused
    login, a missing folder, a permission problem, our own SourceError."""
    import paramiko

    if isinstance(exc, (SourceError, HostKeyRejected, paramiko.AuthenticationException,
                        paramiko.BadHostKeyException)):
        return False
    if isinstance(exc, (FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError)):
        return False
    return isinstance(exc, (paramiko.SSHException, EOFError, ConnectionError, TimeoutError, socket.timeout, OSError))


def _classify(exc: BaseException, default: str) -> str:
    import paramiko

    if isinstance(exc, paramiko.AuthenticationException):
        return "auth_failed"
    if isinstance(exc, (HostKeyRejected, paramiko.BadHostKeyException)):
        return "host_key_rejected"
    if isinstance(exc, (FileNotFoundError, NotADirectoryError)):
        return "not_found"
    if isinstance(exc, (paramiko.ssh_exception.NoValidConnectionsError, socket.gaierror, ConnectionRefusedError)):
        return "unreachable"
    return default
