"""Local accounts of the one-window page: name, role, bcrypt password hash.

Stored in one JSON file (`Settings.resolved_web_users()`, default
`<warehouse>.web_users.json`), written atomically and owner-only (0600). Passwords are
hashed with bcrypt (cost 12, a salt per password); the file never holds a password.
Two roles: `officer` (工作人员) sees identities; `analyst` (分析人员) sees only the
de-identified pages.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import bcrypt

ROLES = {"officer": "工作人员", "analyst": "分析人员"}
MIN_PASSWORD_CHARS = 8
_NAME = re.compile(r"^[\w.\-\u4e00-\u9fff]{1,40}$")
#: compared against when the user does not exist, so a wrong name costs as long as a wrong password
_DUMMY_HASH = bcrypt.hashpw(b"not a password", bcrypt.gensalt(rounds=12))


class AccountError(ValueError):
    """An account operation that cannot be done (structured: user, why)."""

    def __init__(self, user: str, why: str) -> None:
        self.user, self.why = user, why
        super().__init__(f"账号 {user}：{why}")


@dataclass(frozen=True)
class Account:
    name: str
    role: str


def _load(path: Path) -> dict[str, dict[str, str]]:
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise AccountError("-", f"账号文件 {path} 无法读取（{exc}）") from None
    return data.get("users", {}) if isinstance(data, dict) else {}


def _save(path: Path, users: dict[str, dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"users": users}, fh, ensure_ascii=False, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _hash(password: str) -> str:
    raw = password.encode("utf-8")
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError("-", f"密码至少 {MIN_PASSWORD_CHARS} 个字符")
    if len(raw) > 72:  # bcrypt reads at most 72 bytes
        raise AccountError("-", "密码太长（bcrypt 最多 72 字节，约 24 个汉字或 72 个字母数字）")
    return bcrypt.hashpw(raw, bcrypt.gensalt(rounds=12)).decode("ascii")


def add_user(path: Path, name: str, password: str, role: str, *, replace: bool = False) -> Account:
    if not _NAME.match(name or ""):
        raise AccountError(name, "账号名只能由 1–40 个汉字、字母、数字、点、下划线或连字符组成")
    if role not in ROLES:
        raise AccountError(name, f"未知角色 {role}，可选：{'、'.join(f'{k}（{v}）' for k, v in ROLES.items())}")
    users = _load(path)
    if name in users and not replace:
        raise AccountError(name, "已存在（修改密码或角色请用 residents web-user passwd / add --replace）")
    try:
        hashed = _hash(password)
    except AccountError as exc:
        raise AccountError(name, exc.why) from None
    users[name] = {"role": role, "password_hash": hashed,
                   "created_at": dt.datetime.now().isoformat(timespec="seconds")}
    _save(path, users)
    return Account(name, role)


def set_password(path: Path, name: str, password: str) -> None:
    users = _load(path)
    if name not in users:
        raise AccountError(name, "不存在")
    try:
        users[name]["password_hash"] = _hash(password)
    except AccountError as exc:
        raise AccountError(name, exc.why) from None
    _save(path, users)


def remove_user(path: Path, name: str) -> None:
    users = _load(path)
    if users.pop(name, None) is None:
        raise AccountError(name, "不存在")
    _save(path, users)


def list_users(path: Path) -> list[tuple[str, str, str]]:
    return [(n, ROLES.get(u.get("role", ""), u.get("role", "")), u.get("created_at", ""))
            for n, u in sorted(_load(path).items())]


def authenticate(path: Path, name: str, password: str) -> Account | None:
    """The account when the password matches, else None (same cost either way)."""
    user = _load(path).get(name or "")
    stored = user["password_hash"].encode("ascii") if user else _DUMMY_HASH
    try:
        ok = bcrypt.checkpw((password or "").encode("utf-8")[:72], stored)
    except ValueError:
        ok = False
    return Account(name, user["role"]) if ok and user else None
