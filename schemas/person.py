"""The shared resident schema (统一人口基础信息): one person mention after mapping.

`PersonMention` is the single source of truth for a person record: field names,
Chinese labels, value kinds and code tables. The pipelines derive their column set
and normalisers from it; the warehouse derives DDL and `COMMENT ON` texts from it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

#: the departments whose mappings ship with the hub; any other `source_system` is
#: declared by its own mapping (with `source_system_label_zh`), see docs/MAPPINGS.md
BuiltinSourceSystem = Literal["civil_affairs", "low_income", "floating_population", "family_planning"]
BuiltinRole = Literal["man", "woman", "deceased", "head", "member", "registrant", "spouse", "child"]

SOURCE_SYSTEMS: tuple[str, ...] = BuiltinSourceSystem.__args__  # type: ignore[attr-defined]
ROLES: tuple[str, ...] = BuiltinRole.__args__  # type: ignore[attr-defined]

BUILTIN_SOURCE_SYSTEM_LABELS_ZH = {
    "civil_affairs": "民政",
    "low_income": "低保",
    "floating_population": "流动人口",
    "family_planning": "计生",
}

BUILTIN_ROLE_LABELS_ZH = {
    "man": "男方",
    "woman": "女方/育龄妇女",
    "deceased": "逝者",
    "head": "户主",
    "member": "家庭成员",
    "registrant": "登记人",
    "spouse": "配偶",
    "child": "子女",
}


class _DeclaredLabels(Mapping[str, str]):
    """Built-in labels plus those the loaded mappings declare (`source_system_label_zh`,
    `role_labels_zh`): looked up when asked, so a department added as a YAML file is
    named by its own label in reports, status, alerts and messages."""

    def __init__(self, builtin: dict[str, str], attribute: str) -> None:
        self._builtin, self._attribute = builtin, attribute

    def _all(self) -> dict[str, str]:
        from schemas.mapping import declared_labels  # lazy: schemas.mapping imports this module

        return {**self._builtin, **declared_labels(self._attribute)}

    def __getitem__(self, key: str) -> str:
        return self._all()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


#: source system → its Chinese label (民政, 低保 … and every declared department)
SOURCE_SYSTEM_LABELS_ZH: Mapping[str, str] = _DeclaredLabels(BUILTIN_SOURCE_SYSTEM_LABELS_ZH, "source_system")
#: role → its Chinese label (built-in roles and the roles mappings declare)
ROLE_LABELS_ZH: Mapping[str, str] = _DeclaredLabels(BUILTIN_ROLE_LABELS_ZH, "role")


def _f(label_zh: str, kind: str, *, code_table: str | None = None, **kw: Any) -> Any:
    """A schema field with its Chinese label, its value kind (which normaliser runs)
    and, for coded fields, the national code table it draws from."""
    extra = {"label_zh": label_zh, "kind": kind}
    if code_table:
        extra["code_table"] = code_table
    return Field(default=None, json_schema_extra=extra, **kw)


class Lineage(BaseModel):
    """Where a mention came from, exactly as the warehouse contract defines it."""

    model_config = ConfigDict(frozen=True)

    source_system: str = Field(json_schema_extra={"label_zh": "来源系统", "kind": "text"})
    source_object: str = Field(json_schema_extra={"label_zh": "来源对象（文件名或表名）", "kind": "text"})
    source_locator: str = Field(
        json_schema_extra={"label_zh": "来源位置（工作表!行号、CSV行号或主键）", "kind": "text"}
    )
    role: str = Field(json_schema_extra={"label_zh": "人员角色", "kind": "text"})


class PersonMention(Lineage):
    """One person mentioned by one source record, normalised to national codes."""

    document_type: str | None = _f("证件类型", "code", code_table="document_type")
    document_number: str | None = _f("证件号码（非居民身份证）", "text")
    citizen_id: str | None = _f("公民身份号码（已校验的18位）", "citizen_id")
    name: str | None = _f("姓名", "name")
    gender: str | None = _f("性别（GB/T 2261.1）", "code", code_table="gender")
    birth_date: dt.date | None = _f("出生日期", "date")
    ethnicity: str | None = _f("民族（GB 3304）", "code", code_table="ethnicity")
    nationality: str | None = _f("国籍", "text")
    marital_status: str | None = _f("婚姻状况（GB/T 2261.2）", "code", code_table="marital_status")
    phone: str | None = _f("联系电话", "phone")
    hukou_address: str | None = _f("户籍地址", "address")
    current_address: str | None = _f("现居住地址", "address")
    death_date: dt.date | None = _f("死亡日期", "date")
    relationship_to_head: str | None = _f("与户主关系（GB/T 4761）", "code", code_table="relationship")


def field_specs(model: type[BaseModel] = PersonMention) -> dict[str, dict[str, Any]]:
    """Field name → {label_zh, kind, code_table?, python type} for a schema model."""
    out: dict[str, dict[str, Any]] = {}
    for name, info in model.model_fields.items():
        extra = dict(info.json_schema_extra or {})  # type: ignore[arg-type]
        extra["annotation"] = info.annotation
        out[name] = extra
    return out


PERSON_FIELDS: tuple[str, ...] = tuple(
    n for n in PersonMention.model_fields if n not in Lineage.model_fields
)
LINEAGE_FIELDS: tuple[str, ...] = tuple(Lineage.model_fields)
