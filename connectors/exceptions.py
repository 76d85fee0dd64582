"""Structured connector errors.

Every error carries its context as fields (source system, source object, path, sheet,
row, column, value, plus subclass-specific details) and *builds* its message from
them, in Chinese for officers and English for developers::

    文件无法读取：文件 婚姻登记_20261121.xlsx（民政/civil_affairs），工作表 婚姻登记 ... |
    unreadable file: file 婚姻登记_20261121.xlsx (civil_affairs), sheet 婚姻登记 ...

`to_dict()` gives the same context as plain data (for reports and the quarantine).
A bad *file* raises one of these; problems found during discovery are collected
as instances (not raised) in `DiscoveryResult.problems`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

__all__ = [
    "ConnectorError",
    "UnreadableFileError",
    "EncodingDetectionError",
    "HeaderNotFoundError",
    "MissingColumnsError",
    "WrongFolderError",
    "UnrecognizedFileError",
    "InvalidFileDateError",
    "TableNotFoundError",
    "SourceError",
    "InboxNotFoundError",
    "SourceUnavailableError",
]

from schemas.person import SOURCE_SYSTEM_LABELS_ZH as _SYSTEM_ZH  # noqa: E402  (built-in and declared departments)


def _short(value: Any, limit: int = 80) -> str:
    """`repr` of a value, cut to `limit` characters for messages (bytes as hex)."""
    text = f"0x{value.hex(' ')}" if isinstance(value, (bytes, bytearray)) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ConnectorError(Exception):
    """A file, sheet, row or cell the connectors cannot read.

    Subclasses set `code` and override `reason_zh` / `reason_en`; the location part of
    the message is built here from the context fields.
    """

    code: ClassVar[str] = "connector_error"

    def __init__(
        self,
        source_system: str | None,
        source_object: str | None,
        path: str | Path | None,
        sheet: str | None = None,
        row: int | str | None = None,
        column: str | None = None,
        value: Any = None,
        *,
        detail: str | None = None,
    ) -> None:
        self.source_system = source_system
        self.source_object = source_object
        self.path = str(path) if path is not None else None
        self.sheet = sheet
        self.row = row
        self.column = column
        self.value = value
        self.detail = detail
        super().__init__(self.message)

    # -- message -------------------------------------------------------------------
    def reason_zh(self) -> str:
        return "读取失败"

    def reason_en(self) -> str:
        return "cannot read the source"

    def _where_zh(self) -> str:
        parts = []
        if self.source_object or self.path:
            name = self.source_object or Path(self.path or "").name
            system = ""
            if self.source_system:
                system = f"（{_SYSTEM_ZH.get(self.source_system, self.source_system)}/{self.source_system}）"
            parts.append(f"文件 {name}{system}")
        if self.sheet is not None:
            parts.append(f"工作表 {self.sheet}")
        if self.row is not None:
            parts.append(f"第 {self.row} 行")
        if self.column is not None:
            parts.append(f"列 {self.column}")
        if self.value is not None:
            parts.append(f"值 {_short(self.value)}")
        return "，".join(parts)

    def _where_en(self) -> str:
        parts = []
        if self.source_object or self.path:
            name = self.source_object or Path(self.path or "").name
            system = f" ({self.source_system})" if self.source_system else ""
            parts.append(f"file {name}{system}")
        if self.sheet is not None:
            parts.append(f"sheet {self.sheet}")
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.column is not None:
            parts.append(f"column {self.column}")
        if self.value is not None:
            parts.append(f"value {_short(self.value)}")
        if self.path:
            parts.append(f"path {self.path}")
        return ", ".join(parts)

    @property
    def message(self) -> str:
        zh = f"{self.reason_zh()}：{self._where_zh()}" if self._where_zh() else self.reason_zh()
        en = f"{self.reason_en()}: {self._where_en()}" if self._where_en() else self.reason_en()
        if self.detail:
            en = f"{en} ({self.detail})"
        return f"{zh} | {en}"

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """The structured context, JSON-friendly, including the built message."""
        out = {
            "error_code": self.code,
            "source_system": self.source_system,
            "source_object": self.source_object,
            "path": self.path,
            "sheet": self.sheet,
            "row": self.row,
            "column": self.column,
            "value": None if self.value is None else str(self.value),
            "detail": self.detail,
        }
        out.update(self._extra())
        out["message"] = self.message
        return out

    @property
    def context(self) -> dict[str, Any]:
        """Alias of `to_dict()` (the structured context)."""
        return self.to_dict()

    def _extra(self) -> dict[str, Any]:
        return {}

    def __reduce__(self):  # keep pickling (xdist, multiprocessing) working
        return (_rebuild, (type(self), self.__dict__.copy()))


def _rebuild(cls: type, state: dict[str, Any]) -> ConnectorError:
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    Exception.__init__(obj, obj.message)
    return obj


class UnreadableFileError(ConnectorError):
    """Empty, truncated, corrupt or password-protected file (not a readable xlsx/csv)."""

    code = "unreadable_file"

    def __init__(self, *args: Any, reason: str = "corrupt", **kw: Any) -> None:
        self.reason = reason  # empty | truncated | password_protected | not_xlsx | corrupt
        super().__init__(*args, **kw)

    _ZH = {
        "empty": "文件为空",
        "truncated": "文件不完整（可能被截断）",
        "password_protected": "文件已加密（设置了密码），无法读取",
        "not_xlsx": "文件不是有效的 xlsx 工作簿",
        "corrupt": "文件已损坏，无法读取",
    }
    _EN = {
        "empty": "empty file",
        "truncated": "truncated file",
        "password_protected": "password-protected (encrypted) workbook",
        "not_xlsx": "not a valid xlsx workbook",
        "corrupt": "corrupt file",
    }

    def reason_zh(self) -> str:
        return self._ZH.get(self.reason, "文件无法读取")

    def reason_en(self) -> str:
        return self._EN.get(self.reason, "unreadable file")

    def _extra(self) -> dict[str, Any]:
        return {"reason": self.reason}


class EncodingDetectionError(ConnectorError):
    """A text file that decodes in none of the accepted encodings, or mixes them.

    `offset` is the byte offset where decoding failed, `row` the physical line;
    `tried` the encodings attempted; `mixed` is set when the file decodes partly in
    one encoding and partly in another.
    """

    code = "encoding_error"

    def __init__(
        self,
        *args: Any,
        offset: int | None = None,
        tried: Sequence[str] = (),
        mixed: tuple[str, str] | None = None,
        **kw: Any,
    ) -> None:
        self.offset = offset
        self.tried = tuple(tried)
        self.mixed = mixed
        super().__init__(*args, **kw)

    def reason_zh(self) -> str:
        if self.mixed:
            return (f"文件编码混杂：文件按 {self.mixed[0]} 编码，但该行是 {self.mixed[1]} 编码"
                    + (f"（字节偏移 {self.offset}）" if self.offset is not None else ""))
        return (f"无法识别文件编码（已尝试 {'、'.join(self.tried)}），"
                f"在字节偏移 {self.offset} 处解码失败")

    def reason_en(self) -> str:
        if self.mixed:
            return (f"mixed encodings: the file is {self.mixed[0]} but this line is {self.mixed[1]}"
                    + (f" (byte offset {self.offset})" if self.offset is not None else ""))
        return (f"cannot detect the encoding (tried {', '.join(self.tried)}); "
                f"decoding failed at byte offset {self.offset}")

    def _extra(self) -> dict[str, Any]:
        return {"offset": self.offset, "tried": list(self.tried),
                "mixed": list(self.mixed) if self.mixed else None}


class HeaderNotFoundError(ConnectorError):
    """No row among the first `searched_rows` rows of any sheet matches the mapping."""

    code = "header_not_found"

    def __init__(self, *args: Any, searched_rows: int | None = None,
                 expected: Sequence[str] = (), **kw: Any) -> None:
        self.searched_rows = searched_rows
        self.expected = tuple(expected)
        super().__init__(*args, **kw)

    def reason_zh(self) -> str:
        rows = f"前 {self.searched_rows} 行" if self.searched_rows else "表头区域"
        exp = f"（应包含如：{'、'.join(self.expected)}）" if self.expected else ""
        return f"未找到表头：{rows}中没有与映射相符的列名{exp}"

    def reason_en(self) -> str:
        rows = f"the first {self.searched_rows} rows" if self.searched_rows else "the header area"
        exp = f" (expected e.g. {', '.join(self.expected)})" if self.expected else ""
        return f"header not found: no row in {rows} matches the mapping's column names{exp}"

    def _extra(self) -> dict[str, Any]:
        return {"searched_rows": self.searched_rows, "expected": list(self.expected)}


class MissingColumnsError(ConnectorError):
    """Required columns absent from the header. `missing` maps field → aliases tried."""

    code = "missing_columns"

    def __init__(self, *args: Any, missing: dict[str, Sequence[str]] | None = None,
                 labels: dict[str, str] | None = None,
                 found: Sequence[str] = (), **kw: Any) -> None:
        self.missing = {k: tuple(v) for k, v in (missing or {}).items()}
        self.labels = dict(labels or {})
        self.found = tuple(found)
        super().__init__(*args, **kw)

    def _fields(self, sep: str, open_: str, close: str) -> str:
        out = []
        for field, aliases in self.missing.items():
            label = self.labels.get(field)
            name = f"{label}/{field}" if label else field
            out.append(f"{name}{open_}{sep.join(aliases)}{close}")
        return "; ".join(out)

    def reason_zh(self) -> str:
        return f"缺少必需列 {self._fields('、', '（已尝试列名：', '）')}"

    def reason_en(self) -> str:
        found = f"; headers found: {', '.join(self.found)}" if self.found else ""
        return f"missing required columns {self._fields(', ', ' (aliases tried: ', ')')}{found}"

    def _extra(self) -> dict[str, Any]:
        return {"missing": {k: list(v) for k, v in self.missing.items()}, "found": list(self.found)}


class WrongFolderError(ConnectorError):
    """A file whose name belongs to another source system's folder."""

    code = "wrong_folder"

    def __init__(self, *args: Any, folder: str | None = None,
                 expected_folder: str | None = None, **kw: Any) -> None:
        self.folder = folder
        self.expected_folder = expected_folder
        super().__init__(*args, **kw)

    def reason_zh(self) -> str:
        return (f"文件放错了文件夹：位于 {self.folder or '收件箱根目录'}，"
                f"应放在 {self.expected_folder}")

    def reason_en(self) -> str:
        return (f"file in the wrong folder: found in {self.folder or 'the inbox root'}, "
                f"belongs in {self.expected_folder}")

    def _extra(self) -> dict[str, Any]:
        return {"folder": self.folder, "expected_folder": self.expected_folder}


class UnrecognizedFileError(ConnectorError):
    """A file whose name matches no mapping of the folder's source system."""

    code = "unrecognized_file"

    def reason_zh(self) -> str:
        return "无法识别的文件（文件名与任何数据源映射都不匹配）"

    def reason_en(self) -> str:
        return "unrecognised file (its name matches no source mapping)"


class OutsideInboxError(ConnectorError):
    """A symbolic link in the inbox whose target lies outside the inbox: refused without
    being opened (nothing of the target is read, hashed or quoted; only the link's name)."""

    code = "outside_inbox"

    def reason_zh(self) -> str:
        return "拒绝读取：该文件是指向收件箱以外的符号链接（请把导出文件本身放入收件箱）"

    def reason_en(self) -> str:
        return "refused: a symbolic link that points outside the inbox"


class InvalidFileDateError(ConnectorError):
    """A recognised export whose name carries no parsable (or an impossible) date.

    `date_text` is the date-like part of the name when there is one (`20260230`).
    """

    code = "invalid_file_date"

    def __init__(self, *args: Any, date_text: str | None = None, **kw: Any) -> None:
        self.date_text = date_text
        super().__init__(*args, **kw)

    def reason_zh(self) -> str:
        if self.date_text:
            return f"文件名中的日期无效（{self.date_text} 不是真实日期）"
        return "文件名中没有可识别的导出日期（应为 _YYYYMMDD、_YYYY-MM-DD 或 _YYYYMM）"

    def reason_en(self) -> str:
        if self.date_text:
            return f"invalid date in the file name ({self.date_text} is not a real date)"
        return "no export date in the file name (expected _YYYYMMDD, _YYYY-MM-DD or _YYYYMM)"

    def _extra(self) -> dict[str, Any]:
        return {"date_text": self.date_text}


class TableNotFoundError(ConnectorError):
    """The mapping's table is not in the source database."""

    code = "table_not_found"

    def reason_zh(self) -> str:
        return "数据库中没有该表"

    def reason_en(self) -> str:
        return "table not found in the database"


class SourceError(ConnectorError):
    """A declared source (`[sources.<name>]`) that cannot be fetched from.

    `reason`: `unreachable` (no connection: refused, timed out, unknown host),
    `auth_failed` (wrong password or key), `not_found` (the folder or database is not
    there), `credentials_missing` (the referenced environment variable or file is not
    set), `transfer_failed` (the connection kept dropping), `host_key_rejected` (the
    server's key is not in the declared known_hosts). `url` is the source's URL
    without any password; `attempts` how often it was tried.
    """

    code = "source_error"

    def __init__(self, source_system: str | None, source_name: str, url: str, *,
                 reason: str = "unreachable", attempts: int = 1, **kw: Any) -> None:
        self.source_name = source_name
        self.url = url
        self.reason = reason
        self.attempts = attempts
        super().__init__(source_system, None, None, **kw)

    _ZH = {
        "unreachable": "无法连接数据来源",
        "auth_failed": "数据来源拒绝登录（用户名、密码或密钥不正确）",
        "not_found": "数据来源中没有该目录或数据库",
        "credentials_missing": "数据来源的登录凭据未配置",
        "transfer_failed": "从数据来源传输文件时连接反复中断",
        "host_key_rejected": "数据来源的主机密钥与 known_hosts 中记录的不符（可能连到了别的服务器），已拒绝连接",
    }
    _EN = {
        "unreachable": "cannot connect to the source",
        "auth_failed": "the source refused the login (user name, password or key is wrong)",
        "not_found": "folder or database not found on the source",
        "credentials_missing": "the source's credentials are not configured",
        "transfer_failed": "the connection kept dropping while transferring from the source",
        "host_key_rejected": "the source's host key is not the one in known_hosts (another server?); refused",
    }

    def reason_zh(self) -> str:
        tried = f"（已尝试 {self.attempts} 次）" if self.attempts > 1 else ""
        return self._ZH.get(self.reason, "无法从数据来源获取数据") + tried

    def reason_en(self) -> str:
        tried = f" (tried {self.attempts} times)" if self.attempts > 1 else ""
        return self._EN.get(self.reason, "cannot fetch from the source") + tried

    def _where_zh(self) -> str:
        system = _SYSTEM_ZH.get(self.source_system or "", self.source_system or "")
        return f"来源 {self.source_name}（{system}），地址 {self.url}"

    def _where_en(self) -> str:
        return f"source {self.source_name} ({self.source_system}), url {self.url}"

    def _extra(self) -> dict[str, Any]:
        return {"source_name": self.source_name, "url": self.url, "reason": self.reason,
                "attempts": self.attempts}
class InboxNotFoundError(ConnectorError, FileNotFoundError):
    """The inbox folder does not exist (a configuration error: nothing can be read)."""

    code = "inbox_not_found"

    def reason_zh(self) -> str:
        return f"收件箱目录不存在：{self.path}"

    def reason_en(self) -> str:
        return f"inbox folder not found: {self.path}"

    def _where_zh(self) -> str:
        return ""

    def _where_en(self) -> str:
        return ""


class SourceUnavailableError(ConnectorError):
    """A source that could not be read after retries: a file the process may not open
    (permission denied, vanished, I/O error), or a database that is locked or refuses
    connections. `attempts` is how many times it was tried; `detail` the last error."""

    code = "source_unavailable"
    transient = True  # not a fault of the content: tried again by the next run

    def __init__(self, *args: Any, kind: str = "io", attempts: int = 1, **kw: Any) -> None:
        self.kind = kind          # permission | io | locked | unreachable | database
        self.attempts = attempts
        super().__init__(*args, **kw)

    _ZH = {"permission": "没有读取权限（Permission denied）", "io": "读取时发生输入输出错误",
           "locked": "数据库被其他程序锁定", "unreachable": "无法连接数据库", "database": "数据库读取失败"}
    _EN = {"permission": "permission denied", "io": "I/O error while reading",
           "locked": "database locked by another program", "unreachable": "database unreachable",
           "database": "database read failed"}

    def reason_zh(self) -> str:
        tries = f"（已尝试 {self.attempts} 次）" if self.attempts > 1 else ""
        return f"{self._ZH.get(self.kind, '无法读取')}{tries}"

    def reason_en(self) -> str:
        tries = f" (tried {self.attempts} times)" if self.attempts > 1 else ""
        return f"{self._EN.get(self.kind, 'cannot read')}{tries}"

    def for_object(self, source_object: str | None) -> "SourceUnavailableError":
        """The same fault reported for another object of the same source (a database's
        other table, not tried again)."""
        return SourceUnavailableError(self.source_system, source_object, self.path, kind=self.kind,
                                      attempts=self.attempts, detail=self.detail)

    def _extra(self) -> dict[str, Any]:
        return {"kind": self.kind, "attempts": self.attempts}
