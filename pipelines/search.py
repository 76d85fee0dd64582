"""What an officer typed into a search box, normalised with the same normalisers the
sync uses (so a search finds a person however a department wrote them).

`parse_search` turns the text into a `SearchKey`: a citizen ID in any disguise
(15-digit, lowercase x, full-width digits, spaces, Excel's apostrophe) becomes the
valid 18-character ID; a name in Simplified or Traditional characters or in pinyin
becomes its simplified form and pinyin keys; a phone its canonical number; an address
its parsed levels. `kind="auto"` guesses which of these the text is.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import pandas as pd

SEARCH_KINDS = {"auto": "自动识别", "citizen_id": "身份证号", "name": "姓名", "phone": "电话", "address": "地址"}

#: address levels compared when searching by address (those the text names must all match)
ADDRESS_LEVELS = {"community": "社区/村", "road": "街路巷", "house_number": "门牌号", "estate": "小区",
                  "building": "楼栋", "unit": "单元", "room": "室", "rural_group": "组"}

_ID_LIKE = re.compile(r"^[0-9xX*\s'`\"=\-]+$")
_PHONE_LIKE = re.compile(r"^[0-9+\s\-()（）]+$")
_ADDRESS_MARKS = re.compile(r"[0-9]|[路街道巷号栋幢楼单元室区村组社里弄]")


class SearchTextError(ValueError):
    """A search text that cannot be used as the chosen kind (structured: kind, text, why)."""

    def __init__(self, kind: str, text: str, why: str) -> None:
        self.kind, self.text, self.why = kind, text, why
        super().__init__(f"无法按{SEARCH_KINDS.get(kind, kind)}查找“{text}”：{why}")


@dataclass
class SearchKey:
    kind: str
    text: str
    citizen_id: str | None = None
    id_error: str | None = None
    name: str | None = None
    name_pinyin: list[str] = field(default_factory=list)
    phone: str | None = None
    address: dict[str, str] = field(default_factory=dict)
    address_text: str | None = None

    def describe(self) -> str:
        """The normalised key in words (shown above the results and written to the audit log)."""
        if self.kind == "citizen_id":
            return f"身份证号 {self.citizen_id}"
        if self.kind == "name":
            return f"姓名 {self.name or self.text}（拼音 {'/'.join(self.name_pinyin)}）"
        if self.kind == "phone":
            return f"电话 {self.phone}"
        parts = "，".join(f"{ADDRESS_LEVELS.get(k, k)} {v}" for k, v in self.address.items())
        return f"地址 {parts or self.address_text}"


def _guess(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).strip()
    compact = re.sub(r"[\s\-]", "", t)
    if _ID_LIKE.match(t) and len(re.sub(r"[^0-9xX]", "", t)) in (15, 18):
        return "citizen_id"
    if _PHONE_LIKE.match(t) and 7 <= len(re.sub(r"\D", "", compact)) <= 14:
        return "phone"
    if _ADDRESS_MARKS.search(t) and len(t) >= 4:
        return "address"
    return "name"


def parse_search(text: str, kind: str = "auto", *, district: object | None = None) -> SearchKey:
    """Normalise `text` as `kind` (or the kind it looks like); raises SearchTextError
    when it is not usable (an invalid ID, an empty name…)."""
    from pipelines.normalize.ids import normalize_citizen_ids
    from pipelines.normalize.names import normalize_names
    from pipelines.normalize.phones import normalize_phones

    text = (text or "").strip()
    if not text:
        raise SearchTextError(kind, text, "请输入要查找的内容")
    if kind not in SEARCH_KINDS:
        raise SearchTextError(kind, text, f"未知的查找方式，可选：{'、'.join(SEARCH_KINDS)}")
    if kind == "auto":
        kind = _guess(text)
    raw = pd.Series([text], dtype=object)
    if kind == "citizen_id":
        out = normalize_citizen_ids(raw).iloc[0]
        if pd.isna(out["value"]):
            from pipelines.errors import describe

            raise SearchTextError(kind, text, describe(out["error"]).message_zh if out["error"] else "不是身份证号")
        return SearchKey(kind, text, citizen_id=str(out["value"]))
    if kind == "phone":
        out = normalize_phones(raw).iloc[0]
        if pd.isna(out["value"]):
            raise SearchTextError(kind, text, "不是有效的手机号或带区号的固定电话")
        return SearchKey(kind, text, phone=str(out["value"]))
    if kind == "name":
        out = normalize_names(raw).iloc[0]
        if pd.isna(out["simplified"]):
            raise SearchTextError(kind, text, "不是有效的姓名")
        keys = [k for k in dict.fromkeys([out["pinyin"], out["pinyin_alt"]]) if isinstance(k, str) and k]
        simplified = str(out["simplified"])
        return SearchKey(kind, text, name=None if out["script"] == "latin" else simplified, name_pinyin=keys)
    from pipelines.normalize.address import parse_addresses
    from pipelines.normalize.address_rules import clean_text

    parsed = parse_addresses(raw, default_district=district).iloc[0]  # type: ignore[arg-type]
    levels = {lvl: str(parsed[lvl]) for lvl in ADDRESS_LEVELS if lvl in parsed and isinstance(parsed[lvl], str)
              and parsed[lvl]}
    cleaned = clean_text(text)
    if not levels and not cleaned:
        raise SearchTextError(kind, text, "无法识别的地址")
    return SearchKey("address", text, address=levels, address_text=cleaned)
