"""Declarative source mappings: one YAML file per source object in `schemas/mappings/`.

A mapping says which header aliases feed which field, how values are normalised (by
*kind* and code table), how a source row becomes person mentions (granularity and
roles), which relationships it states, and how the source is loaded (load semantics).
A renamed header or a new department is a change of these files, not of code; the
pipelines execute every mapping the same way.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.person import PERSON_FIELDS, ROLES, SOURCE_SYSTEMS

MAPPINGS_DIR = Path(__file__).parent / "mappings"

Kind = Literal[
    "text", "citizen_id", "document_type", "name", "date", "timestamp", "month",
    "code", "phone", "address", "amount", "int", "flag",
]
Granularity = Literal["person_row", "household_rows", "couple_row", "parent_table", "child_table"]
LoadSemantics = Literal["event", "snapshot", "delta_upsert", "watermark"]
SourceFormat = Literal["xlsx", "csv", "sql"]


def normalize_header(text: str) -> str:
    """Header text as compared with aliases: NFKC, no whitespace, ASCII parentheses."""
    s = unicodedata.normalize("NFKC", str(text))
    return re.sub(r"\s+", "", s)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Model):
    """One field of a source record and the header texts that may carry it."""

    field: str
    aliases: tuple[str, ...]
    label_zh: str | None = None
    kind: Kind = "text"
    code_table: str | None = None
    required: bool = False   # the header must be present, else the whole file fails
    not_null: bool = False   # the value must be present, else the row is rejected
    household: bool = False  # a household-level cell, merged over the member rows
    # address columns: which person–address link the address states, and the fields of
    # the same record that bound its validity (`$period` = the export's period)
    address_kind: Literal["hukou", "residence", "household", "last"] | None = None
    valid_from: str | None = None
    valid_to: str | None = None

    @property
    def header(self) -> str:
        return self.aliases[0]


class RoleRule(_Model):
    """Role chosen per row from a column's normalised code (roster head vs member)."""

    field: str
    codes: tuple[str, ...]
    role: str
    otherwise: str


class PersonSpec(_Model):
    """How one person mention is taken out of a source row."""

    role: str | None = None
    role_rule: RoleRule | None = None
    fields: dict[str, str]                 # person field -> column field of this mapping
    constants: dict[str, str] = Field(default_factory=dict)
    present_if_any: tuple[str, ...] = ()   # mention exists only if one of these columns has a value

    @model_validator(mode="after")
    def _check(self) -> "PersonSpec":
        if (self.role is None) == (self.role_rule is None):
            raise ValueError("a person spec needs exactly one of role / role_rule")
        roles = [self.role] if self.role else [self.role_rule.role, self.role_rule.otherwise]  # type: ignore[union-attr]
        for r in roles:
            if r not in ROLES:
                raise ValueError(f"unknown role {r!r}")
        for f in list(self.fields) + list(self.constants):
            if f not in PERSON_FIELDS:
                raise ValueError(f"unknown person field {f!r}")
        return self

    @property
    def roles(self) -> tuple[str, ...]:
        if self.role:
            return (self.role,)
        return (self.role_rule.role, self.role_rule.otherwise)  # type: ignore[union-attr]


class RelationshipSpec(_Model):
    """A relationship a record states between two of its mentions."""

    kind: Literal["spouse", "parent_child", "household_member"]
    from_role: str
    to_role: str


class ParentLink(_Model):
    """A child table's link to its parent table (T_ZN.YLFN_ID → T_YLFN)."""

    source_object: str
    foreign_key: str          # column field in this mapping
    parent_role: str          # role of the parent's mention (woman)
    relationship: Literal["parent_child"] = "parent_child"


class SourceMapping(_Model):
    source_system: str
    source_object: str                 # logical object: 婚姻登记, 火化信息, 低保花名册, 流动人口登记, T_YLFN, T_ZN
    label_zh: str
    staging_table: str                 # name of its typed staging table in the warehouse
    format: SourceFormat
    file_prefixes: tuple[str, ...] = ()   # export file names start with one of these
    file_extensions: tuple[str, ...] = ()
    table: str | None = None              # SQL table name
    primary_key: str | None = None        # SQL primary key column field
    granularity: Granularity
    load_semantics: LoadSemantics
    record_key: str                       # field that identifies a source record
    household_key: str | None = None      # roster: the household's key field
    event_time: str | None = None         # field ordering events (更新时间, 登记日期)
    watermark: str | None = None          # SQL change timestamp field (GXSJ)
    delete_flag: str | None = None        # SQL soft-delete flag field (SCBZ)
    delete_flag_values: tuple[str, ...] = ("1",)
    header_search_rows: int = 10
    total_row_markers: tuple[str, ...] = ("合计", "总计", "小计")
    parent: ParentLink | None = None
    address_context: dict[str, str] = Field(default_factory=dict)  # town/community → column field
    columns: tuple[ColumnSpec, ...]
    persons: tuple[PersonSpec, ...]
    relationships: tuple[RelationshipSpec, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> "SourceMapping":
        if self.source_system not in SOURCE_SYSTEMS:
            raise ValueError(f"unknown source_system {self.source_system!r}")
        fields = [c.field for c in self.columns]
        dup = {f for f in fields if fields.count(f) > 1}
        if dup:
            raise ValueError(f"duplicate column fields {sorted(dup)}")
        known = set(fields)
        refs = [self.record_key, self.household_key, self.event_time, self.watermark,
                self.delete_flag, self.primary_key]
        refs += [f for p in self.persons for f in p.fields.values()]
        refs += [f for p in self.persons for f in p.present_if_any]
        refs += [p.role_rule.field for p in self.persons if p.role_rule]
        refs += list(self.address_context.values())
        refs += [f for c in self.columns for f in (c.valid_from, c.valid_to) if f and not f.startswith("$")]
        for c in self.columns:
            if (c.kind == "address") != (c.address_kind is not None):
                raise ValueError(f"{self.source_object}.{c.field}: address columns need address_kind (and only they)")
        if self.parent:
            refs.append(self.parent.foreign_key)
        missing = sorted({r for r in refs if r and r not in known})
        if missing:
            raise ValueError(f"{self.source_object}: fields {missing} are not declared columns")
        aliases = [normalize_header(a) for c in self.columns for a in c.aliases]
        dup_alias = {a for a in aliases if aliases.count(a) > 1}
        if dup_alias:
            raise ValueError(f"{self.source_object}: alias used twice {sorted(dup_alias)}")
        return self

    # -- lookups used by connectors and pipelines ---------------------------------
    @functools.cached_property
    def alias_index(self) -> dict[str, ColumnSpec]:
        """normalised header text → column spec."""
        return {normalize_header(a): c for c in self.columns for a in c.aliases}

    def column(self, field: str) -> ColumnSpec:
        for c in self.columns:
            if c.field == field:
                return c
        raise KeyError(field)

    @property
    def required_columns(self) -> tuple[ColumnSpec, ...]:
        return tuple(c for c in self.columns if c.required)

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(r for p in self.persons for r in p.roles)

    def roles_using(self, column_field: str) -> tuple[str, ...]:
        """Roles of the person mentions that take a value from this column."""
        return tuple(r for p in self.persons if column_field in p.fields.values() for r in p.roles)

    def match_headers(self, headers: list[str]) -> dict[str, str]:
        """source header → field, for the headers this mapping knows (first match wins)."""
        out: dict[str, str] = {}
        taken: set[str] = set()
        for h in headers:
            spec = self.alias_index.get(normalize_header(h))
            if spec is not None and spec.field not in taken:
                out[h] = spec.field
                taken.add(spec.field)
        return out

    def matches_file(self, file_name: str) -> bool:
        name = unicodedata.normalize("NFKC", file_name)
        return name.lower().endswith(tuple(e.lower() for e in self.file_extensions)) and any(
            name.startswith(p) for p in self.file_prefixes
        )


@functools.lru_cache(maxsize=None)
def load_mappings(directory: str | None = None) -> tuple[SourceMapping, ...]:
    """Every mapping in `schemas/mappings/` (or `directory`), validated."""
    root = Path(directory) if directory else MAPPINGS_DIR
    out = []
    for path in sorted(root.glob("*.yaml")):
        with path.open(encoding="utf-8") as fh:
            out.append(SourceMapping.model_validate(yaml.safe_load(fh)))
    return tuple(out)


def mapping_for(source_object: str, directory: str | None = None) -> SourceMapping:
    for m in load_mappings(directory):
        if m.source_object == source_object:
            return m
    raise KeyError(f"no mapping for source object {source_object!r}")


def mappings_for_system(source_system: str, directory: str | None = None) -> tuple[SourceMapping, ...]:
    return tuple(m for m in load_mappings(directory) if m.source_system == source_system)
