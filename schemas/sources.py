"""Where each department's exports are fetched from: the `[sources.<name>]` tables of the
settings, validated here (pydantic), used by `connectors.pull` (file sources) and the
sync's SQL reads (database sources).

A source is a URL plus credentials *by reference*:

* file sources: `sftp://user@host[:port]/path/` (fetched into the inbox by `residents
  pull`) or a local folder (`/srv/exports/低保/`, `file:///…`; copied the same way);
* database sources: any SQLAlchemy URL (`mysql+pymysql://reader@qzj:3306/exchange`,
  `postgresql+psycopg://…`, `oracle+oracledb://…`, `dm+dmPython://…`, `sqlite:///…`).

A password is never written in the settings: `password_env` names an environment
variable, `password_file` a file (a mounted secret) holding it; an SSH key is a
`key_file`. A URL that carries a password is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["SourceSpec", "SourceKind", "SQL_SCHEMES", "redact_url"]

SourceKind = Literal["sftp", "local", "sql"]
#: SQLAlchemy dialects a database source may use (the driver after `+` is free)
SQL_SCHEMES = ("sqlite", "mysql", "mariadb", "postgresql", "oracle", "dm", "mssql")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def redact_url(url: str) -> str:
    """The URL without any password (`user:***@host`), for messages and logs."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/:@]*):[^/@]*@", r"\1:***@", url)


class SourceSpec(BaseModel):
    """One declared source: `[sources.low_income] url = "sftp://exchange@10.1.2.3/exports/低保/"`."""

    # a mistyped URL may carry a password: validation errors never echo the input
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str = Field(description="来源名称（配置中的 [sources.<名称>]）")
    system: str = Field(description="来源系统：civil_affairs / low_income / floating_population / family_planning")
    url: str = Field(description="sftp://用户@主机[:端口]/目录/、本地目录，或数据库的 SQLAlchemy 地址（不含密码）")
    password_env: str | None = Field(None, description="保存密码的环境变量名")
    password_file: Path | None = Field(None, description="保存密码的文件（如挂载的密钥文件）")
    key_file: Path | None = Field(None, description="SSH 私钥文件（SFTP）")
    known_hosts: Path | None = Field(
        None, description="SFTP 主机公钥文件（known_hosts 格式）；设置后只接受其中的主机密钥")
    done_marker: str | None = Field(
        None, description="部门写完文件后放置的标记文件后缀（如 .ok：文件 X 完成时出现 X.ok）；不设则看两次大小与时间是否不变")
    settle_seconds: float = Field(5.0, ge=0, description="两次查看之间的间隔秒数（判断文件是否仍在写入）")
    timeout_s: float = Field(30.0, gt=0, description="连接与读取超时秒数")
    attempts: int = Field(4, ge=1, le=20, description="临时故障（断线、超时）时的最多尝试次数")
    retry_delay_s: float = Field(2.0, ge=0, description="首次重试前等待的秒数（之后每次加倍）")

    @field_validator("system")
    @classmethod
    def _known_system(cls, v: str) -> str:
        from schemas.mapping import source_systems  # here: `residents query`/`status` start fast

        if v not in source_systems():
            raise ValueError(f"未知的来源系统 {v!r}（应为 {' / '.join(source_systems())}，或在 mappings_dir 的映射文件中声明）")
        return v

    @model_validator(mode="before")
    @classmethod
    def _default_system(cls, data):  # [sources.low_income] names its system by default
        if isinstance(data, dict) and "system" not in data and "name" in data:
            data = {**data, "system": data["name"]}
        return data

    @model_validator(mode="after")
    def _check_url(self) -> "SourceSpec":
        parts = _split(self.url)
        if parts is not None and parts.password:
            raise ValueError(f"来源 {self.name}：密码不得写在地址中（{redact_url(self.url)}），"
                             "请用 password_env（环境变量名）或 password_file（密钥文件）")
        if self.kind == "sftp":
            if not parts or not parts.hostname or not parts.username:
                raise ValueError(f"来源 {self.name}：SFTP 地址应为 sftp://用户@主机[:端口]/目录/，而不是 {self.url!r}")
        elif self.kind == "sql":
            if self.done_marker or self.key_file or self.known_hosts:
                raise ValueError(f"来源 {self.name}：done_marker / key_file / known_hosts 只用于文件来源")
            from schemas.mapping import load_mappings

            with_tables = sorted({m.source_system for m in load_mappings() if m.format == "sql"})
            if self.system not in with_tables:
                raise ValueError(
                    f"来源 {self.name}：{self.system} 没有数据库表的映射（schemas/mappings/*.yaml 中 format: sql），"
                    f"无法从数据库读取；目前有表映射的来源系统：{'、'.join(with_tables)}")
        if self.password_env and self.password_file:
            raise ValueError(f"来源 {self.name}：password_env 与 password_file 只能设一个")
        return self

    # -- derived --------------------------------------------------------------------
    @property
    def scheme(self) -> str | None:
        m = _SCHEME.match(self.url)
        return m.group(1).lower() if m else None

    @property
    def kind(self) -> SourceKind:
        scheme = self.scheme
        if scheme is None or scheme == "file":
            return "local"
        if scheme == "sftp":
            return "sftp"
        if scheme.split("+")[0] in SQL_SCHEMES:
            return "sql"
        raise ValueError(f"来源 {self.name}：不支持的地址类型 {scheme}://（支持 sftp://、本地目录、"
                         f"{'、'.join(s + '://' for s in SQL_SCHEMES)}）")

    @property
    def is_file_source(self) -> bool:
        return self.kind in ("sftp", "local")

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)

    @property
    def host(self) -> str | None:
        parts = _split(self.url)
        return parts.hostname if parts else None

    @property
    def port(self) -> int | None:
        parts = _split(self.url)
        return parts.port if parts else None

    @property
    def username(self) -> str | None:
        parts = _split(self.url)
        return unquote(parts.username) if parts and parts.username else None

    @property
    def path(self) -> str:
        """The folder: the URL's path (SFTP, file://) or the plain local path."""
        if self.kind == "local" and self.scheme is None:
            return self.url
        parts = urlsplit(self.url)
        return unquote(parts.path) or "/"

    def password(self, env: Mapping[str, str]) -> str | None:
        """The password from the referenced environment variable or file (None when the
        source declares none). Raises `KeyError`/`OSError` naming the reference, never the value."""
        return password_by_reference(self.password_env, self.password_file, env,
                                     missing=f"来源 {self.name}：环境变量 {self.password_env} 未设置（应保存该来源的密码）")


def password_by_reference(password_env: str | None, password_file: Path | None, env: Mapping[str, str], *,
                          missing: str) -> str | None:
    """A password given by reference: the environment variable `password_env`, else the
    file `password_file`, else None. A named variable that is not set raises
    `KeyError(missing)`; an unreadable file `OSError`. The value is never in a message."""
    if password_env:
        if password_env not in env:
            raise KeyError(missing)
        return env[password_env]
    if password_file:
        return Path(password_file).read_text(encoding="utf-8").strip()
    return None


def _split(url: str):
    if not _SCHEME.match(url):
        return None
    try:
        return urlsplit(url)
    except ValueError:
        return None
