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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.person import (BUILTIN_ROLE_LABELS_ZH, BUILTIN_SOURCE_SYSTEM_LABELS_ZH, PERSON_FIELDS, ROLES,
                            SOURCE_SYSTEMS)

if TYPE_CHECKING:
    from schemas.codes import CodeTable

MAPPINGS_DIR = Path(__file__).parent / "mappings"
_IDENT = re.compile(r"[a-z][a-z0-9_]{0,62}")
#: column names the warehouse adds to a mapping's staging and fact tables
RESERVED_FIELDS = ("person_id", "role", "export_id", "export_date", "period", "source_system", "source_object",
                   "source_locator")

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


class Bad(ValueError):
    """A mapping value a validator rejects, with the key (relative to the model checked)."""

    def __init__(self, key: str, detail: str) -> None:
        self.key, self.detail = key, detail
        super().__init__(detail)


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

    @model_validator(mode="after")
    def _check(self) -> "ColumnSpec":
        from schemas.codes import CODE_TABLES

        if not self.aliases:
            raise Bad("aliases", f"列 {self.field} 须至少有一个表头别名（aliases）")
        if (self.kind == "code") != (self.code_table is not None):
            raise Bad("code_table", f"列 {self.field}：kind 为 code 的列须声明 code_table（且只有它们）；"
                             f"允许的 code_table：{' / '.join(CODE_TABLES)}，或本映射 code_tables 中声明的代码表")
        return self  # a code_table the mapping declares itself is checked by SourceMapping

    @property
    def header(self) -> str:
        return self.aliases[0]


class DeclaredCodeTable(_Model):
    """A department's own vocabulary (残疾等级, 残疾类别 …), declared in its mapping:
    `codes` code → Chinese label, `aliases` other texts seen in exports → code. Values are
    mapped like the national tables' (a code, its label or an alias); anything else is an
    unusable value reported as `code_unknown_<name>`."""

    label_zh: str
    codes: dict[str, str]
    aliases: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> "DeclaredCodeTable":
        if not self.codes:
            raise Bad("codes", "代码表须至少有一个代码（codes: {代码: 中文名}）")
        unknown = sorted(t for t, c in self.aliases.items() if c not in self.codes)
        if unknown:
            raise Bad("aliases", f"别名 {unknown} 指向未声明的代码；允许：{' / '.join(self.codes)}")
        return self


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
    # household_rows only: `household` = one mention per household (at its first row), taken
    # from household columns (户主姓名/户主身份证号); with `unless_listed` only when no row of
    # the household already is that person (a row with this role, the same valid ID or name)
    per: Literal["row", "household"] = "row"
    unless_listed: bool = False

    @model_validator(mode="after")
    def _check(self) -> "PersonSpec":
        if (self.role is None) == (self.role_rule is None):
            raise Bad("role", "一个人员规则必须且只能有 role 或 role_rule 之一")
        for f in list(self.fields) + list(self.constants):
            if f not in PERSON_FIELDS:
                raise Bad("fields", f"未知的人员字段 {f!r}；允许：{' / '.join(PERSON_FIELDS)}")
        if self.unless_listed and self.per != "household":
            raise Bad("unless_listed", "unless_listed 只能与 per: household 一起使用")
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


class FactSpec(_Model):
    """The department's own attributes kept in `core.<table>` and `mart.<table>`: one row
    per accepted record and person mention of `role`, with the record's `columns`."""

    table: str                            # core.<table> / mart.<table>
    label_zh: str                         # the table's Chinese comment
    role: str | None = None               # whose facts (default: the first person rule's role)
    columns: tuple[str, ...] = ()         # column fields kept (default: those no person rule takes)

    @model_validator(mode="after")
    def _check(self) -> "FactSpec":
        if not _IDENT.fullmatch(self.table):
            raise Bad("table", f"表名 {self.table!r} 无效；允许：小写英文字母开头，只含小写字母、数字和下划线")
        return self


class SourceMapping(_Model):
    source_system: str
    source_system_label_zh: str | None = None  # required for a source system that is not built in
    role_labels_zh: dict[str, str] = Field(default_factory=dict)  # roles this mapping adds, with labels
    facts: FactSpec | None = None
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
    code_tables: dict[str, DeclaredCodeTable] = Field(default_factory=dict)  # the department's own code tables

    @model_validator(mode="after")
    def _check(self) -> "SourceMapping":
        from schemas.codes import CODE_TABLES

        for name in self.code_tables:
            if not _IDENT.fullmatch(name):
                raise Bad("code_tables", f"代码表名 {name!r} 无效；允许：小写英文字母开头，只含小写字母、数字和下划线")
            if name in CODE_TABLES:
                raise Bad("code_tables", f"代码表 {name!r} 与内置代码表同名；内置代码表不能在映射中重新定义，请换一个名字"
                                         f"（内置：{' / '.join(CODE_TABLES)}）")
        allowed_tables = [*CODE_TABLES, *self.code_tables]
        for c in self.columns:
            if c.code_table is not None and c.code_table not in allowed_tables:
                raise Bad("code_table", f"列 {c.field}：未知的 code_table {c.code_table!r}；允许：{' / '.join(allowed_tables)}"
                                        "（或在本映射的 code_tables 中声明）")
        if not _IDENT.fullmatch(self.source_system):
            raise Bad("source_system", f"source_system {self.source_system!r} 无效；允许：小写英文字母开头，只含小写字母、数字和"
                             "下划线（也是收件箱中该部门子目录的名称）")
        if self.source_system not in SOURCE_SYSTEMS and not self.source_system_label_zh:
            raise Bad("source_system_label_zh", f"新的来源系统 {self.source_system!r} 须同时声明 source_system_label_zh（部门中文名，如 残联）；"
                             f"内置来源系统：{' / '.join(SOURCE_SYSTEMS)}")
        if not _IDENT.fullmatch(self.staging_table):
            raise Bad("staging_table", f"staging_table {self.staging_table!r} 无效；允许：小写英文字母开头，只含小写字母、数字和下划线")
        for r in self.role_labels_zh:
            if not _IDENT.fullmatch(r):
                raise Bad("role_labels_zh", f"role_labels_zh 中的角色 {r!r} 无效；允许：小写英文字母开头，只含小写字母、数字和下划线")
        for r in self.roles:
            if r not in ROLES and r not in self.role_labels_zh:
                raise Bad("persons", f"未知的人员角色 {r!r}；允许：{' / '.join(ROLES)}，或在 role_labels_zh 中声明新角色及其中文名")
        fields = [c.field for c in self.columns]
        for f in fields:
            if not _IDENT.fullmatch(f) or f in RESERVED_FIELDS:
                raise Bad("columns", f"列字段 {f!r} 无效；允许：小写英文字母开头，只含小写字母、数字和下划线，"
                                 f"且不是 {' / '.join(RESERVED_FIELDS)}")
        dup = {f for f in fields if fields.count(f) > 1}
        if dup:
            raise Bad("columns", f"列字段重复 {sorted(dup)}")
        for p in self.persons:
            if p.per == "household" and self.granularity != "household_rows":
                raise Bad("persons", "per: household 只能用于 granularity: household_rows 的映射")
        if self.facts:
            if self.facts.role is not None and self.facts.role not in self.roles:
                raise Bad("facts.role", f"facts.role {self.facts.role!r} 不是本映射的人员角色；允许：{' / '.join(self.roles)}")
            unknown = sorted(set(self.facts.columns) - set(fields))
            if unknown:
                raise Bad("facts.columns", f"facts.columns 中 {unknown} 不是本映射声明的列字段；允许：{' / '.join(fields)}")
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
                raise Bad("columns", f"{self.source_object}.{c.field}：kind 为 address 的列须声明 address_kind（且只有它们）；"
                                 "允许：hukou / residence / household / last")
        if self.parent:
            refs.append(self.parent.foreign_key)
        missing = sorted({r for r in refs if r and r not in known})
        if missing:
            raise Bad("", f"{self.source_object}：字段 {missing} 不是已声明的列（columns 中的 field）；允许：{' / '.join(fields)}")
        aliases = [normalize_header(a) for c in self.columns for a in c.aliases]
        dup_alias = {a for a in aliases if aliases.count(a) > 1}
        if dup_alias:
            raise Bad("columns", f"{self.source_object}：表头别名重复 {sorted(dup_alias)}")
        return self

    @property
    def system_label_zh(self) -> str:
        return self.source_system_label_zh or BUILTIN_SOURCE_SYSTEM_LABELS_ZH.get(self.source_system, self.source_system)

    @property
    def fact_role(self) -> str | None:
        if self.facts is None:
            return None
        return self.facts.role or self.roles[0]

    @property
    def fact_columns(self) -> tuple[ColumnSpec, ...]:
        """The columns `core.<facts.table>` keeps: declared, else those no person rule takes."""
        if self.facts is None:
            return ()
        if self.facts.columns:
            return tuple(self.column(f) for f in self.facts.columns)
        taken = {f for p in self.persons for f in p.fields.values()}
        return tuple(c for c in self.columns if c.field not in taken)

    def code_table_of(self, spec: ColumnSpec) -> "CodeTable | None":
        """The code table a `kind: code` column maps to: the mapping's own, or a national one."""
        from schemas.codes import CODE_TABLES, CodeTable

        if spec.code_table is None:
            return None
        own = self.code_tables.get(spec.code_table)
        if own is not None:
            return CodeTable(name=spec.code_table, label_zh=own.label_zh, standard="", codes=dict(own.codes),
                             aliases=dict(own.aliases))
        return CODE_TABLES[spec.code_table]

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


class MappingError(ValueError):
    """A mapping file the hub cannot use: the file, the key, what is wrong and what is
    allowed. That department's exports are not loaded; every other department is."""

    def __init__(self, path: str | Path, *, key: str | None = None, detail: str, allowed: str | None = None,
                 source_system: str | None = None, line: int | None = None) -> None:
        self.path, self.key, self.detail, self.allowed = str(path), key, detail, allowed
        self.source_system, self.line = source_system, line
        super().__init__(self.message)

    @property
    def message(self) -> str:
        where = f"映射文件无效：{self.path}" + (f" 第 {self.line} 行" if self.line else "")
        parts = [where]
        if self.key:
            parts.append(f"键 {self.key}")
        parts.append(self.detail)
        if self.allowed:
            parts.append(f"允许：{self.allowed}")
        return "，".join(parts) + "。该部门的导出本次不装载，其他部门照常装载"


@dataclass(frozen=True)
class MappingSet:
    """The mappings of the built-in folder and of `mappings_dir`, with the files that failed."""

    mappings: tuple[SourceMapping, ...]
    problems: tuple[MappingError, ...]
    files: dict[str, str]        # source_object → the YAML file that declares it


_extra_dirs: tuple[str, ...] = ()


def use_mappings_dir(directory: str | Path | None) -> None:
    """Add the settings' `mappings_dir` to the built-in mappings (called once at the edge,
    by the CLI and the flows, before anything reads a mapping)."""
    global _extra_dirs
    dirs = (str(Path(directory).resolve()),) if directory else ()
    if dirs != _extra_dirs:
        _extra_dirs = dirs
        mapping_set.cache_clear()
        load_mappings.cache_clear()


def _key_of(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part != "__root__":
            out += ("." if out else "") + str(part)
    return out


def _allowed_for(loc: tuple, err_type: str, ctx: dict) -> str | None:
    """What a key may hold: the choices of a Literal, the keys of the enclosing model."""
    if err_type == "literal_error" and ctx.get("expected"):
        return str(ctx["expected"]).replace("'", "").replace(" or ", " / ").replace(", ", " / ")
    if err_type in ("extra_forbidden", "missing"):
        model: type[BaseModel] | None = SourceMapping
        for part in loc[:-1]:
            if isinstance(part, int) or model is None:
                continue
            info = model.model_fields.get(str(part))
            model = _model_in(info.annotation) if info else None
        if model is not None:
            return " / ".join(model.model_fields)
    return None


def _model_in(annotation: object) -> type[BaseModel] | None:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


_PYDANTIC_ZH = {"missing": "缺少必填键", "extra_forbidden": "未知的键", "literal_error": "取值不在允许范围内",
                "string_type": "应为文字", "bool_type": "应为 true/false", "int_type": "应为整数",
                "int_parsing": "应为整数", "dict_type": "应为映射（键: 值）", "tuple_type": "应为列表",
                "list_type": "应为列表", "model_type": "应为映射（键: 值）"}


#: libyaml's parser where PyYAML was built with it (its wheels are): the same safe
#: constructor, ~7x faster than the pure-Python one (the six built-in mappings 0.029 ->
#: 0.004 s; more inside a command, beside the warehouse copy's threads)
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_one(path: Path) -> SourceMapping | MappingError:
    from pydantic import ValidationError

    try:
        with path.open(encoding="utf-8") as fh:
            data = yaml.load(fh, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return MappingError(path, detail=f"不是有效的 YAML（{getattr(exc, 'problem', None) or exc}）",
                            line=mark.line + 1 if mark else None)
    except (OSError, UnicodeDecodeError) as exc:
        return MappingError(path, detail=f"无法读取（{exc}），映射文件须为 UTF-8 文本")
    system = data.get("source_system") if isinstance(data, dict) else None
    system = system if isinstance(system, str) and _IDENT.fullmatch(system) else None
    if not isinstance(data, dict):
        return MappingError(path, detail="文件内容应为一个映射（键: 值），见 docs/MAPPINGS.md")
    try:
        return SourceMapping.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err.get("loc", ()))
        detail = _PYDANTIC_ZH.get(err["type"], "")
        msg = str(err.get("msg", ""))
        if err["type"] == "value_error":
            detail = msg.removeprefix("Value error, ")
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, Bad):
                detail = cause.detail
                loc = (*loc, *[p for p in cause.key.split(".") if p])
        elif err["type"] != "missing":
            detail = f"{detail}（值 {str(err.get('input'))[:60]!r}）" if detail else msg
        more = len(exc.errors()) - 1
        if more:
            detail += f"（另有 {more} 处问题）"
        return MappingError(path, key=_key_of(loc) or None, detail=detail or msg,
                            allowed=_allowed_for(loc, err["type"], err.get("ctx") or {}), source_system=system)


@functools.lru_cache(maxsize=None)
def mapping_set() -> MappingSet:
    """Every mapping of `schemas/mappings/` and of the `mappings_dir` in use, each file
    validated alone: a broken file is a `MappingError` (that department fails, the others
    load), as is a file whose source object, staging table or fact table another file
    already declares."""
    good: list[SourceMapping] = []
    problems: list[MappingError] = []
    files: dict[str, str] = {}
    taken: dict[str, str] = {}   # name → file that declared it
    builtin_tables = {"mention", "relationship", "address_mention", "linkage_feature"}
    for root in (str(MAPPINGS_DIR), *_extra_dirs):
        folder = Path(root)
        if not folder.is_dir():
            problems.append(MappingError(folder, detail="映射目录不存在（设置项 mappings_dir）"))
            continue
        for path in sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")):
            found = _read_one(path)
            if isinstance(found, MappingError):
                problems.append(found)
                continue
            clash = None
            for key, name in (("source_object", found.source_object), ("staging_table", found.staging_table),
                              ("facts.table", found.facts.table if found.facts else None)):
                if name is None:
                    continue
                if name in builtin_tables or f"{key}:{name}" in taken or (key != "source_object" and f"table:{name}" in taken):
                    clash = MappingError(path, key=key, source_system=found.source_system,
                                         detail=f"{name!r} 已被 {taken.get(f'{key}:{name}') or taken.get(f'table:{name}') or '系统'} 使用",
                                         allowed="未被其他映射使用的名称")
                    break
            if clash:
                problems.append(clash)
                continue
            taken[f"source_object:{found.source_object}"] = str(path)
            taken[f"table:{found.staging_table}"] = str(path)
            if found.facts:
                taken[f"table:{found.facts.table}"] = str(path)
            good.append(found)
            files[found.source_object] = str(path)
    return MappingSet(tuple(good), tuple(problems), files)


def declared_labels(what: str) -> dict[str, str]:
    """Labels the loaded mappings declare: `source_system` → label, or `role` → label."""
    out: dict[str, str] = {}
    for m in mapping_set().mappings:
        if what == "source_system":
            out.setdefault(m.source_system, m.system_label_zh)
        else:
            out.update({r: z for r, z in m.role_labels_zh.items() if r not in BUILTIN_ROLE_LABELS_ZH})
    return out


def source_systems() -> tuple[str, ...]:
    """Built-in source systems, then those the loaded mappings declare."""
    return tuple(dict.fromkeys([*SOURCE_SYSTEMS, *(m.source_system for m in mapping_set().mappings)]))


@functools.lru_cache(maxsize=None)
def load_mappings(directory: str | None = None) -> tuple[SourceMapping, ...]:
    """Every valid mapping: built-in and `mappings_dir` (or only those of `directory`)."""
    if directory is None:
        return mapping_set().mappings
    root = Path(directory)
    out = []
    for path in sorted(root.glob("*.yaml")):
        found = _read_one(path)
        if isinstance(found, MappingError):
            raise found
        out.append(found)
    return tuple(out)


def mapping_for(source_object: str, directory: str | None = None) -> SourceMapping:
    for m in load_mappings(directory):
        if m.source_object == source_object:
            return m
    raise KeyError(f"no mapping for source object {source_object!r}")


def mappings_for_system(source_system: str, directory: str | None = None) -> tuple[SourceMapping, ...]:
    return tuple(m for m in load_mappings(directory) if m.source_system == source_system)
