"""Warehouse tables, declared once and rendered to DuckDB DDL with Chinese comments.

Person columns come from `schemas.person.PersonMention`; each source's staging table
comes from its `SourceMapping` (field, kind, label). Everything else is declared here.
`create_all` renders `CREATE TABLE IF NOT EXISTS` and `COMMENT ON` statements.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from dataclasses import dataclass

from schemas.mapping import SourceMapping, load_mappings
from schemas.person import PersonMention, field_specs

SCHEMAS = {
    "stg": "暂存层：各部门导出经标准化后的记录与人员提及",
    "core": "核心层：解析后的人员、地址、关系与各部门事实（含完整身份证号，仅限工作人员）",
    "quality": "质量层：运行记录、装载台账、拒收记录、质量检查结果",
    "mart": "分析层：供分析人员查询的视图（身份证号与电话已脱敏）",
}

KIND_TYPES = {
    "text": "VARCHAR", "citizen_id": "VARCHAR", "document_type": "VARCHAR", "name": "VARCHAR",
    "date": "DATE", "timestamp": "TIMESTAMP", "month": "VARCHAR", "code": "VARCHAR",
    "phone": "VARCHAR", "address": "VARCHAR", "amount": "DECIMAL(14,2)", "int": "INTEGER",
    "flag": "BOOLEAN",
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    comment: str
    not_null: bool = False


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    comment: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def person_id_columns(self) -> list[str]:
        """The columns that hold a person id (`person_id`, `…_person_id`, the two ends of
        a relationship)."""
        return [c.name for c in self.columns if c.name == "person_id" or c.name.endswith("_person_id")
                or c.name in ("person_id_from", "person_id_to")]

    def create_sql(self) -> list[str]:
        cols = [f'"{c.name}" {c.type}{" NOT NULL" if c.not_null else ""}' for c in self.columns]
        if self.primary_key:
            cols.append(f"PRIMARY KEY ({', '.join(self.primary_key)})")
        stmts = [f"CREATE TABLE IF NOT EXISTS {self.qualified} (\n  " + ",\n  ".join(cols) + "\n)"]
        stmts.append(f"COMMENT ON TABLE {self.qualified} IS {_q(self.comment)}")
        stmts += [f'COMMENT ON COLUMN {self.qualified}."{c.name}" IS {_q(c.comment)}' for c in self.columns]
        return stmts


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def C(name: str, type_: str, comment: str, not_null: bool = False) -> Column:  # noqa: N802
    return Column(name, type_, comment, not_null)


# ---------------------------------------------------------------------------------
# columns derived from the schema models
# ---------------------------------------------------------------------------------
def _duck_type(annotation: object) -> str:
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or args:
        inner = [a for a in args if a is not type(None)]
        annotation = inner[0] if inner else str
    if annotation is dt.date:
        return "DATE"
    return "VARCHAR"


def person_columns() -> tuple[Column, ...]:
    """PersonMention's person fields as warehouse columns with their Chinese labels."""
    specs = field_specs(PersonMention)
    return tuple(
        C(name, _duck_type(spec["annotation"]), spec["label_zh"])
        for name, spec in specs.items()
        if name not in ("source_system", "source_object", "source_locator", "role")
    )


LINEAGE_COLUMNS = (
    C("source_system", "VARCHAR", "来源系统（部门代码）：civil_affairs 民政 / low_income 低保 / floating_population 流动人口 / family_planning 计生，或映射文件声明的其他部门（见 docs/MAPPINGS.md）", True),
    C("source_object", "VARCHAR", "来源对象：导出文件名（含扩展名）或数据库表名", True),
    C("source_locator", "VARCHAR", "来源位置：xlsx 为“工作表!行号”，CSV 为物理行号（表头为第1行），数据库为主键值", True),
)
EXPORT_COLUMNS = (
    C("export_id", "BIGINT", "装载台账编号（quality.load_ledger.export_id）", True),
)

MENTION_EXTRA_COLUMNS = (
    C("mention_id", "VARCHAR", "人员提及编号：来源对象|来源位置|角色", True),
    C("role", "VARCHAR", "人员角色：man 男方、woman 女方/育龄妇女、deceased 逝者、head 户主、member 家庭成员、registrant 登记人、spouse 配偶、child 子女，或映射文件声明的其他角色（role_labels_zh）", True),
    C("record_key", "VARCHAR", "来源记录业务主键（登记证字号、火化证明编号、登记编号、序号、主键）"),
    C("household_key", "VARCHAR", "低保花名册中的户标识（文件名#序号）"),
    C("export_date", "DATE", "导出日期（文件名中的日期，数据截至日）"),
    C("id_raw", "VARCHAR", "身份证号原始值"),
    C("id_status", "VARCHAR", "身份证号校验结果：valid 有效、upgraded_15 由15位升级、missing 缺失，或错误代码"),
    C("id_region_code", "VARCHAR", "身份证号中的行政区划代码（含无效号码中可辨认的部分）"),
    C("id_birth_date", "DATE", "身份证号中的出生日期（含无效号码中可辨认的部分）"),
    C("id_gender", "VARCHAR", "身份证号顺序码推出的性别"),
    C("id_sequence", "VARCHAR", "身份证号顺序码"),
    C("id_evidence_only", "BOOLEAN", "以上身份证号信息是否仅来自无效号码（只作匹配佐证）"),
    C("name_raw", "VARCHAR", "姓名原始值"),
    C("name_simplified", "VARCHAR", "姓名简体形式"),
    C("name_pinyin", "VARCHAR", "姓名拼音键（考虑姓氏多音字）"),
    C("name_pinyin_alt", "VARCHAR", "姓名拼音键（不考虑姓氏读音）"),
    C("is_retracted", "BOOLEAN", "来源记录已被撤回（计生 SCBZ=1）：人员提及保留，但其所述事实不再有效"),
)


def staging_record_table(m: SourceMapping) -> Table:
    cols = [*EXPORT_COLUMNS, *LINEAGE_COLUMNS,
            C("export_date", "DATE", "导出日期（文件名中的日期）"),
            C("period", "VARCHAR", "导出周期（日：YYYY-MM-DD；月：YYYY-MM）")]
    for spec in m.columns:
        cols.append(C(spec.field, KIND_TYPES[spec.kind], f"{spec.label_zh or spec.header}（来源列：{'/'.join(spec.aliases)}）"))
    return Table("stg", m.staging_table, f"{m.label_zh}：标准化后的来源记录（{m.source_system}）", tuple(cols))


#: columns every fact table of a mapping carries besides the mapping's own fact columns
FACT_KEY_COLUMNS = ("person_id", "role")
FACT_LINEAGE_COLUMNS = ("export_id", "export_date", "period", "source_system", "source_object", "source_locator")


def fact_table(m: SourceMapping) -> Table:
    """`core.<facts.table>`: the department's own attributes (declared in its mapping),
    one row per accepted record and person mention of the fact role, with the person."""
    assert m.facts is not None
    role = m.fact_role
    cols = [C("person_id", "VARCHAR", f"人员编号（core.person.person_id）：该记录中角色为 {role} 的人员", True),
            C("role", "VARCHAR", f"人员角色（{role}）", True)]
    for spec in m.fact_columns:
        cols.append(C(spec.field, KIND_TYPES[spec.kind],
                      f"{spec.label_zh or spec.header}（来源列：{'/'.join(spec.aliases)}）"))
    cols += [C("export_id", "BIGINT", "装载台账编号（quality.load_ledger.export_id）", True),
             C("export_date", "DATE", "导出日期（文件名中的日期，数据截至日）"),
             C("period", "VARCHAR", "导出周期（日：YYYY-MM-DD；月：YYYY-MM）"), *LINEAGE_COLUMNS]
    return Table("core", m.facts.table,
                 f"{m.facts.label_zh}（{m.system_label_zh}·{m.label_zh}，映射声明的部门事实：每条记录每个人员一行）",
                 tuple(cols))


def fact_tables() -> tuple[Table, ...]:
    return tuple(fact_table(m) for m in load_mappings() if m.facts is not None)


STG_MENTION = Table(
    "stg", "mention", "人员提及：每条来源记录中出现的每个人（标准化后）",
    (*EXPORT_COLUMNS, *LINEAGE_COLUMNS, *MENTION_EXTRA_COLUMNS, *person_columns()),
    ("mention_id",),
)
STG_RELATIONSHIP = Table(
    "stg", "relationship", "来源记录声明的人员关系（配偶、户内成员、母子女）",
    (*EXPORT_COLUMNS, *LINEAGE_COLUMNS,
     C("kind", "VARCHAR", "关系类型：spouse 配偶、household_member 户内成员、parent_child 父母子女", True),
     C("from_mention_id", "VARCHAR", "关系一方的人员提及编号", True),
     C("to_mention_id", "VARCHAR", "关系另一方的人员提及编号", True),
     C("record_key", "VARCHAR", "来源记录业务主键")),
)

#: the persisted linkage index: one row per mention with the columns the matching rules
#: read (pipelines.linkage.features.linkage_frame), so a sync computes them only for
#: the mentions it adds or changes and blocks those against this table in SQL
STG_LINKAGE_FEATURE = Table(
    "stg", "linkage_feature", "人员匹配索引：每个人员提及一行，存放匹配规则使用的比对特征（只为新增或变化的提及计算）",
    (C("unique_id", "VARCHAR", "人员提及编号（mention_id）", True),
     C("export_id", "BIGINT", "计算特征时该提及所属的台账编号（提及被更新时据此识别）", True),
     C("cid", "VARCHAR", "有效身份证号"), C("doc_key", "VARCHAR", "非居民身份证件（类型:号码）"),
     C("doc_no", "VARCHAR", "非居民身份证件号码"),
     C("id_kind", "VARCHAR", "身份证号可用程度：valid 有效、typo 一位笔误、partial 仅前几位可信"),
     C("id_digits", "VARCHAR", "身份证号可信的数字（本体17位或前几位）"),
     C("id_p14", "VARCHAR", "地区码+出生日期（前14位，可信时）"),
     C("name_s", "VARCHAR", "简体姓名"), C("name_py", "VARCHAR", "姓名拼音（姓氏读法）"),
     C("name_py_alt", "VARCHAR", "姓名拼音（普通读法）"), C("name_initial", "VARCHAR", "拼音首字母"),
     C("surname", "VARCHAR", "姓氏"), C("birth", "DATE", "出生日期（填写的，否则取自身份证号）"),
     C("birth_year", "INTEGER", "出生年份"), C("sex", "VARCHAR", "性别 1 男 2 女（填写的，否则取自有效身份证号）"), C("phone", "VARCHAR", "电话"),
     C("addr_flats", "VARCHAR[]", "户籍和现住地址的户级地址键"), C("addr_blds", "VARCHAR[]", "楼栋级地址键"),
     C("ctx", "VARCHAR[]", "关系人键（配偶、户主、母亲、子女的身份证号或拼音+出生日期）"),
     C("source_object", "VARCHAR", "来源文件或表"),
     C("sole_in_household", "BOOLEAN", "户册中本户再无同一出生日期的人（无双胞胎同列）；非户册记录或出生日期不详为空")),
    ("unique_id",),
)

ADDRESS_LEVEL_COLUMNS = (
    C("province", "VARCHAR", "省"), C("city", "VARCHAR", "市"), C("county", "VARCHAR", "区县"),
    C("town", "VARCHAR", "街道/乡镇"), C("community", "VARCHAR", "社区/村"), C("road", "VARCHAR", "街路巷"),
    C("house_number", "VARCHAR", "门牌号"), C("estate", "VARCHAR", "小区/楼宇名"),
    C("building", "VARCHAR", "楼栋（栋/幢/号楼/座）"), C("unit", "VARCHAR", "单元"), C("floor", "VARCHAR", "楼层"),
    C("room", "VARCHAR", "室"), C("rural_group", "VARCHAR", "村民小组（组）"),
    C("province_code", "VARCHAR", "省级区划代码（GB/T 2260）"), C("city_code", "VARCHAR", "地级区划代码（GB/T 2260）"),
    C("county_code", "VARCHAR", "县级区划代码（GB/T 2260）"), C("town_code", "VARCHAR", "乡级区划代码（9位统计用区划代码）"),
    C("standard_text", "VARCHAR", "标准地址文本"), C("address_key", "VARCHAR", "地址键（决定 address_id 的规范化层级）"),
    C("confidence", "DOUBLE", "解析置信度（0–1）"),
    C("status", "VARCHAR", "解析状态：parsed 完整、partial 部分、unparsed 无法解析（保留原文）"),
)

STG_ADDRESS_MENTION = Table(
    "stg", "address_mention", "地址提及：每条来源记录中的每个地址单元格（解析后）",
    (*EXPORT_COLUMNS, *LINEAGE_COLUMNS,
     C("field", "VARCHAR", "来源自己的列名（如 现居住地址、家庭住址、生前住址、XJZDZ）", True),
     C("column_field", "VARCHAR", "映射中的字段名"),
     C("address_kind", "VARCHAR", "人—地址关系类型：hukou 户籍、residence 居住、household 家庭住址、last 生前住址"),
     C("roles", "VARCHAR", "该地址所属人员提及的角色（逗号分隔）"),
     C("raw_text", "VARCHAR", "地址原文"), C("valid_from", "DATE", "有效起始日期（来源记录中的日期）"),
     C("valid_to", "DATE", "有效终止日期"), *ADDRESS_LEVEL_COLUMNS,
     C("error", "VARCHAR", "解析问题代码"), C("address_id", "VARCHAR", "地址编号")),
)

# ---------------------------------------------------------------------------------
# quality
# ---------------------------------------------------------------------------------
SCHEMA_VERSION = Table(
    "quality", "schema_version", "仓库结构版本（迁移记录）",
    (C("version", "INTEGER", "结构版本号", True), C("applied_at", "TIMESTAMP", "应用时间", True),
     C("description", "VARCHAR", "迁移说明")),
    ("version",),
)
LINKAGE_MODEL = Table(
    "quality", "linkage_model", "概率匹配模型（Splink 设置与训练得到的 m/u 参数），供解释和增量匹配使用",
    (C("run_id", "VARCHAR", "训练它的运行编号", True), C("trained_at", "TIMESTAMP", "训练时间", True),
     C("mode", "VARCHAR", "full 全量聚类 / incremental 增量匹配", True),
     C("threshold", "DOUBLE", "关联阈值（匹配概率）"), C("mentions", "BIGINT", "参与的人员提及数"),
     C("settings", "JSON", "Splink 模型设置（含 m/u 概率）")),
)
RUN = Table(
    "quality", "run", "每次同步/补录运行的记录",
    (C("run_id", "VARCHAR", "运行编号", True), C("flow", "VARCHAR", "流程：nightly_sync 每晚同步、backfill 补录、demo 演示", True),
     C("started_at", "TIMESTAMP", "开始时间", True), C("finished_at", "TIMESTAMP", "结束时间"),
     C("status", "VARCHAR", "状态：succeeded 成功、unchanged 无新内容、failed 失败（未发布）、interrupted 被中断（进程被终止，由下一次运行记录）", True),
     C("parameters", "JSON", "运行参数"), C("summary", "JSON", "运行摘要（各来源读取/接收/拒收行数、新建人员、预警数）"),
     C("schema_version", "INTEGER", "运行时的仓库结构版本")),
    ("run_id",),
)
LOAD_LEDGER = Table(
    "quality", "load_ledger", "装载台账：每个导出文件（或数据库增量读取）一行，按内容哈希去重",
    (C("export_id", "BIGINT", "台账编号", True), C("run_id", "VARCHAR", "装载它的运行编号", True),
     C("source_system", "VARCHAR", "来源系统", True), C("mapping", "VARCHAR", "来源对象类型（映射名：婚姻登记、低保花名册、T_YLFN…）", True),
     C("source_object", "VARCHAR", "文件名或表名", True), C("path", "VARCHAR", "文件路径或数据库地址（不含密码）"),
     C("content_sha256", "VARCHAR", "内容哈希（SHA-256）", True), C("size_bytes", "BIGINT", "文件大小（字节）"),
     C("export_date", "DATE", "导出日期"), C("period", "VARCHAR", "导出周期"), C("is_correction", "BOOLEAN", "是否补报（更正）文件"),
     C("status", "VARCHAR", "状态：loaded 已装载、superseded 已被更正文件取代、failed 失败", True),
     C("superseded_by", "BIGINT", "取代它的台账编号"),
     C("rows_read", "BIGINT", "读取数据行数（不含合计行）"), C("rows_accepted", "BIGINT", "接收行数"),
     C("rows_rejected", "BIGINT", "拒收行数"), C("rows_skipped", "BIGINT", "跳过的非数据行（合计、空行）"),
     C("mentions", "BIGINT", "人员提及数"), C("values_rejected", "BIGINT", "被拒收的单个值数（记录仍接收）"),
     C("watermark_from", "TIMESTAMP", "数据库增量读取的起始水位（不含）"), C("watermark_to", "TIMESTAMP", "本次读到的最大更新时间"),
     C("loaded_at", "TIMESTAMP", "装载时间", True), C("message", "VARCHAR", "说明（警告、失败原因）")),
    ("export_id",),
)
REJECTED_RECORD = Table(
    "quality", "rejected_record", "拒收记录：未被接收的行或单个值，含原始值和整行原文",
    (C("export_id", "BIGINT", "台账编号"), *LINEAGE_COLUMNS,
     C("source_column", "VARCHAR", "来源列名（来源自己的表头；整行问题为空）"),
     C("field", "VARCHAR", "统一模式中的字段名"),
     C("raw_value", "VARCHAR", "原始值"), C("error_code", "VARCHAR", "错误代码", True),
     C("message", "VARCHAR", "问题说明（中文）"), C("is_row_rejected", "BOOLEAN", "是否整行拒收（否则仅该值不可用，记录仍装载）"),
     C("raw_row", "JSON", "整行原文（来源表头为键）"),
     C("record_key", "VARCHAR", "来源记录业务主键原始值（更正文件据此关闭问题）"),
     C("status", "VARCHAR", "处理状态：open 待处理、resolved 已由更正文件解决、superseded 已被新一期花名册取代（按期报送的花名册）", True),
     C("resolved_by_export_id", "BIGINT", "解决它的更正文件台账编号"),
     C("run_id", "VARCHAR", "发现它的运行编号")),
)

EXPECTATION_RESULT = Table(
    "quality", "expectation_result", "数据期望检查结果（Great Expectations）：每次运行、每个检查一行",
    (C("run_id", "VARCHAR", "运行编号", True),
     C("export_id", "BIGINT", "台账编号（按导出检查时；仓库检查为空）"),
     C("suite", "VARCHAR", "检查套件：来源对象名（婚姻登记、低保花名册…）或 warehouse 仓库", True),
     C("target", "VARCHAR", "被检查的数据：records 标准化记录，或仓库表名", True),
     C("expectation", "VARCHAR", "期望类型（如 expect_column_values_to_be_unique）", True),
     C("column_name", "VARCHAR", "被检查的列"),
     C("kwargs", "JSON", "期望参数"),
     C("description", "VARCHAR", "检查说明（中文）"),
     C("severity", "VARCHAR", "严重程度：error 错误、warning 警告", True),
     C("success", "BOOLEAN", "是否通过", True),
     C("element_count", "BIGINT", "检查的值个数"), C("unexpected_count", "BIGINT", "不符合的值个数"),
     C("unexpected_percent", "DOUBLE", "不符合的比例（%）"),
     C("observed_value", "VARCHAR", "观察值（如行数、变化比例）"),
     C("unexpected_examples", "JSON", "不符合的值示例"),
     C("exception", "VARCHAR", "检查本身出错时的异常信息"),
     C("evaluated_at", "TIMESTAMP", "检查时间", True)),
)
FINDING = Table(
    "quality", "finding", "质量发现：文件级警告（未知列、隐藏工作表、公式等）与跨部门核查（同一身份证号信息不一致、出生日期/性别与身份证号矛盾）",
    (C("finding_id", "VARCHAR", "发现编号（按类型和依据稳定生成）", True),
     C("scope", "VARCHAR", "范围：export 某次导出（装载时记录）、warehouse 全仓库（每次构建后重算）", True),
     C("finding_kind", "VARCHAR", "类型：unknown_column 未知列、duplicate_header 重复列名、hidden_sheet_skipped 隐藏工作表、formula_without_value 公式无缓存值、id_conflict_birth_date/id_conflict_name/id_conflict_gender 同一身份证号不同部门不一致、birth_date_contradicts_id 出生日期与身份证号不符、gender_contradicts_id 性别与身份证号不符", True),
     C("severity", "VARCHAR", "严重程度：error 错误、warning 警告、info 提示", True),
     C("run_id", "VARCHAR", "发现它的运行编号", True), C("export_id", "BIGINT", "台账编号（文件级发现）"),
     C("source_system", "VARCHAR", "来源系统"), C("source_object", "VARCHAR", "来源对象（文件名或表名）"),
     C("source_locator", "VARCHAR", "来源位置（工作表!行号、CSV行号或主键）"),
     C("source_column", "VARCHAR", "来源列名"), C("raw_value", "VARCHAR", "相关的值"),
     C("citizen_id", "VARCHAR", "相关的公民身份号码"), C("person_id", "VARCHAR", "相关的人员编号"),
     C("detail", "VARCHAR", "说明（中文）", True), C("evidence", "JSON", "依据：相关来源记录与取值")),
    ("finding_id",),
)
AUDIT = Table(
    "quality", "audit",
    "审计日志：工作人员查看或更改人员信息的每一次操作（只追加：程序只插入，不修改、不删除；"
    "先写入仓库旁的审计流水文件 <仓库>.audit.jsonl，下一次写仓库时并入本表）",
    (C("audit_id", "VARCHAR", "审计编号（唯一：时间与随机数）", True),
     C("occurred_at", "TIMESTAMP", "发生时间（本地时间）", True),
     C("actor", "VARCHAR", "操作人：命令行为操作系统用户名，网页为网页账号", True),
     C("actor_role", "VARCHAR", "操作人角色：officer 工作人员、analyst 分析人员（命令行为空）"),
     C("channel", "VARCHAR", "渠道：cli 命令行、web 网页", True),
     C("action", "VARCHAR", "操作：lookup 查找人员、view_person 查看人员页、explain 解释匹配、link 确认是同一人、"
       "unlink 确认不是同一人、review_decide 复核决定、review_import 导入复核表、review_export 导出复核表、"
       "review_view 查看待复核列表、query 执行查询、login 登录、login_failed 登录失败", True),
     C("target", "VARCHAR", "对象：人员编号、记录编号、查找条件或查询语句"),
     C("reason", "VARCHAR", "理由或用途（决定的理由、查询事由）"),
     C("outcome", "VARCHAR", "结果：done 完成、refused 被拒绝、failed 失败", True),
     C("detail", "VARCHAR", "说明：找到的人员、决定编号、被拒绝或失败的原因"),
     C("client", "VARCHAR", "客户端：命令行为主机名，网页为访问者地址")),
    ("audit_id",),
)

# ---------------------------------------------------------------------------------
# core
# ---------------------------------------------------------------------------------
PERSON = Table(
    "core", "person", "人员主表：每个解析后的人一行，黄金值按 README 所述存活规则选取",
    (C("person_id", "VARCHAR", "人员编号（稳定，一经发布不再改变）", True),
     C("citizen_id", "VARCHAR", "公民身份号码（有效18位）"),
     C("document_type", "VARCHAR", "证件类型（非居民身份证时）"), C("document_number", "VARCHAR", "证件号码（非居民身份证时）"),
     C("name", "VARCHAR", "姓名（简体）"), C("name_pinyin", "VARCHAR", "姓名拼音键"),
     C("gender", "VARCHAR", "性别（GB/T 2261.1）"), C("birth_date", "DATE", "出生日期"),
     C("ethnicity", "VARCHAR", "民族（GB 3304）"), C("nationality", "VARCHAR", "国籍"),
     C("marital_status", "VARCHAR", "婚姻状况（GB/T 2261.2）"), C("phone", "VARCHAR", "联系电话（最新）"),
     C("hukou_address", "VARCHAR", "户籍地址（最新）"), C("current_address", "VARCHAR", "现居住地址（最新）"),
     C("death_date", "DATE", "死亡日期（以民政火化信息为准）"), C("is_deceased", "BOOLEAN", "是否已死亡"),
     C("source_systems", "VARCHAR[]", "出现过的来源系统"), C("mention_count", "INTEGER", "人员提及数"),
     C("first_seen_on", "DATE", "最早出现的导出日期"), C("last_seen_on", "DATE", "最近出现的导出日期")),
    ("person_id",),
)
PERSON_XREF = Table(
    "core", "person_xref", "人员交叉索引：每条来源记录中的每个人员提及一行，指向解析后的人员",
    (*LINEAGE_COLUMNS,
     C("role", "VARCHAR", "人员角色", True), C("mention_id", "VARCHAR", "人员提及编号", True),
     C("person_id", "VARCHAR", "解析后的人员编号", True),
     C("match_method", "VARCHAR", "匹配方式：citizen_id 身份证号一致、probabilistic 概率匹配、must_link 人工确认、singleton 单独成人", True),
     C("match_probability", "DOUBLE", "匹配概率（0–1）"),
     C("is_retracted", "BOOLEAN", "来源记录已被撤回（计生 SCBZ=1）")),
    ("mention_id",),
)
PERSON_MERGE_LOG = Table(
    "core", "person_merge_log", "人员编号合并/拆分/注销日志",
    (C("logged_at", "TIMESTAMP", "记录时间", True), C("run_id", "VARCHAR", "运行编号", True),
     C("event", "VARCHAR", "事件：merge 合并、split 拆分、retire 注销（已无任何提及）", True),
     C("from_person_id", "VARCHAR", "原人员编号", True), C("to_person_id", "VARCHAR", "新人员编号（注销时为空）"),
     C("reason", "VARCHAR", "原因")),
)
RELATIONSHIP = Table(
    "core", "relationship", "人员关系：配偶、户内成员、父母子女，含有效期",
    (C("kind", "VARCHAR", "关系类型：spouse 配偶、household_member 户内成员、parent_child 父母子女", True),
     C("person_id_from", "VARCHAR", "一方人员编号（户主、母亲、男方/配偶）", True),
     C("person_id_to", "VARCHAR", "另一方人员编号（成员、子女、女方）", True),
     C("valid_from", "DATE", "起始日期"), C("valid_to", "DATE", "终止日期（不含；空为至今）"),
     C("source_system", "VARCHAR", "来源系统", True), C("evidence", "VARCHAR", "依据（来源对象与位置）")),
)
MARRIAGE = Table(
    "core", "marriage_registration", "婚姻登记事实：每次登记一行",
    (C("certificate_no", "VARCHAR", "登记证字号", True), C("business_type", "VARCHAR", "业务类型：marriage 结婚、divorce 离婚、reissue_marriage 补领结婚证、reissue_divorce 补领离婚证、annulment 撤销婚姻"),
     C("registration_date", "DATE", "登记日期"), C("man_person_id", "VARCHAR", "男方人员编号"),
     C("woman_person_id", "VARCHAR", "女方人员编号"), C("office", "VARCHAR", "登记机关"), *LINEAGE_COLUMNS),
)
CREMATION = Table(
    "core", "cremation", "火化事实：每个逝者一行（民政，最权威的死亡来源）",
    (C("cremation_no", "VARCHAR", "火化证明编号", True), C("person_id", "VARCHAR", "逝者人员编号", True),
     C("death_date", "DATE", "死亡日期"), C("cremation_date", "DATE", "火化日期"), *LINEAGE_COLUMNS),
)
LOW_INCOME_LINE = Table(
    "core", "low_income_roster_line", "低保花名册月度快照明细：每月每个成员一行",
    (C("month", "VARCHAR", "统计月份 YYYY-MM", True), C("month_start", "DATE", "统计月份首日", True),
     C("person_id", "VARCHAR", "成员人员编号", True), C("role", "VARCHAR", "head 户主 / member 成员", True),
     C("head_person_id", "VARCHAR", "户主人员编号"), C("household_seq", "VARCHAR", "花名册序号"),
     C("street", "VARCHAR", "街道"), C("community", "VARCHAR", "社区"),
     C("relationship_to_head", "VARCHAR", "与户主关系（GB/T 4761）"),
     C("category", "VARCHAR", "保障类别 A/B/C"), C("amount_yuan", "DECIMAL(14,2)", "户月保障金额（元）"),
     C("covered_persons", "INTEGER", "家庭保障人口"), C("approval_date", "DATE", "审批日期"),
     C("address", "VARCHAR", "家庭住址"), *LINEAGE_COLUMNS),
)
LOW_INCOME_ENROLMENT = Table(
    "core", "low_income_enrolment", "低保享受期间：按户主和成员，类别或金额变化即开始新期间",
    (C("person_id", "VARCHAR", "人员编号", True), C("role", "VARCHAR", "head 户主 / member 成员", True),
     C("head_person_id", "VARCHAR", "户主人员编号", True),
     C("category", "VARCHAR", "保障类别"), C("amount_yuan", "DECIMAL(14,2)", "户月保障金额（元）"),
     C("valid_from", "DATE", "起始月份首日", True),
     C("valid_to", "DATE", "终止月份首日（不含）：首次未出现在花名册的月份；空为仍在保"),
     C("street", "VARCHAR", "街道"), C("community", "VARCHAR", "社区")),
)
FLOATING_REGISTRATION = Table(
    "core", "floating_registration", "流动人口登记当前状态：按登记编号，更新时间最新者为准",
    (C("registration_no", "VARCHAR", "登记编号", True), C("person_id", "VARCHAR", "登记人人员编号", True),
     C("status", "VARCHAR", "登记状态：active 在住、cancelled 已注销"), C("registration_date", "DATE", "登记日期"),
     C("cancelled_on", "DATE", "注销日期"), C("residence_reason", "VARCHAR", "居住事由"),
     C("current_address", "VARCHAR", "现居住地址"), C("hukou_address", "VARCHAR", "户籍地址"),
     C("permit_no", "VARCHAR", "居住证编号"), C("permit_valid_until", "DATE", "居住证有效期至"),
     C("employer", "VARCHAR", "服务处所"), C("updated_at", "TIMESTAMP", "更新时间"), *LINEAGE_COLUMNS),
    ("registration_no",),
)
FLOATING_HISTORY = Table(
    "core", "floating_registration_history", "流动人口登记状态历史：每个版本一行",
    (C("registration_no", "VARCHAR", "登记编号", True), C("person_id", "VARCHAR", "登记人人员编号"),
     C("status", "VARCHAR", "登记状态"), C("current_address", "VARCHAR", "现居住地址"),
     C("updated_at", "TIMESTAMP", "更新时间"), C("valid_from", "TIMESTAMP", "本版本生效时间"),
     C("valid_to", "TIMESTAMP", "被下一版本取代的时间（空为当前）"), *LINEAGE_COLUMNS),
)
FP_WOMAN = Table(
    "core", "fp_woman", "育龄妇女当前状态（计生，按 GXSJ 水位增量；SCBZ=1 撤回的记录不在此表）",
    (C("ylfn_id", "VARCHAR", "育龄妇女编号", True), C("person_id", "VARCHAR", "人员编号", True),
     C("spouse_person_id", "VARCHAR", "配偶人员编号"), C("marital_status", "VARCHAR", "婚姻状况（GB/T 2261.2）"),
     C("first_marriage_date", "DATE", "初婚日期"), C("children_count", "INTEGER", "现有子女数"),
     C("contraception", "VARCHAR", "节育措施代码"), C("updated_at", "TIMESTAMP", "更新时间"),
     *LINEAGE_COLUMNS),
    ("ylfn_id",),
)
FP_CHILD = Table(
    "core", "fp_child", "子女（计生 T_ZN）当前状态",
    (C("zn_id", "VARCHAR", "子女编号", True), C("ylfn_id", "VARCHAR", "母亲育龄妇女编号"),
     C("person_id", "VARCHAR", "子女人员编号"), C("mother_person_id", "VARCHAR", "母亲人员编号"),
     C("birth_order", "INTEGER", "出生孩次"), C("updated_at", "TIMESTAMP", "更新时间"),
     *LINEAGE_COLUMNS),
    ("zn_id",),
)
ADDRESS = Table(
    "core", "address", "标准地址：每个解析后的地址（户/房屋）一行，address_id 稳定",
    (C("address_id", "VARCHAR", "地址编号（由地址键稳定生成：同一套房在各来源、各次运行中相同）", True),
     *ADDRESS_LEVEL_COLUMNS, C("mention_count", "INTEGER", "地址提及数"),
     C("source_systems", "VARCHAR[]", "出现过的来源系统"), C("example_raw_text", "VARCHAR", "一个原文示例")),
    ("address_id",),
)
ADDRESS_XREF = Table(
    "core", "address_xref", "地址交叉索引：每个地址提及一行",
    (*LINEAGE_COLUMNS, C("field", "VARCHAR", "来源自己的列名（如 现居住地址、家庭住址、生前住址、XJZDZ）", True),
     C("address_id", "VARCHAR", "地址编号"), C("raw_text", "VARCHAR", "地址原文"),
     C("confidence", "DOUBLE", "解析置信度"), C("status", "VARCHAR", "解析状态")),
)
PERSON_ADDRESS = Table(
    "core", "person_address", "人—地址关系：户籍、居住、低保家庭住址、生前住址，含有效期",
    (C("person_id", "VARCHAR", "人员编号", True), C("address_id", "VARCHAR", "地址编号", True),
     C("kind", "VARCHAR", "关系类型：hukou 户籍、residence 居住、household 家庭住址（低保）、last 生前住址", True),
     C("valid_from", "DATE", "起始日期"), C("valid_to", "DATE", "终止日期（不含；空为至今/不详）"),
     C("source_system", "VARCHAR", "来源系统", True), C("evidence", "VARCHAR", "依据（来源对象!位置，多条以分号分隔）")),
)
LINK_DECISION = Table(
    "core", "link_decision", "工作人员的人工关联决定（必须关联/不得关联），每次运行都会执行",
    (C("decision_id", "VARCHAR", "决定编号", True),
     C("mention_id_a", "VARCHAR", "人员提及编号 A", True), C("mention_id_b", "VARCHAR", "人员提及编号 B", True),
     C("decision", "VARCHAR", "决定：must_link 是同一人、cannot_link 不是同一人", True),
     C("decided_by", "VARCHAR", "决定人", True), C("decided_at", "TIMESTAMP", "决定时间", True),
     C("reason", "VARCHAR", "理由"), C("channel", "VARCHAR", "来源：cli 命令行、review_xlsx 复核表导入、web 网页"),
     C("is_active", "BOOLEAN", "是否有效（同一对记录的较新决定取代较旧的）", True)),
    ("decision_id",),
)
MATCH_CANDIDATE = Table(
    "core", "match_candidate", "待复核的候选匹配：概率不确定、姓名不同但概率高、或被硬约束拒绝的记录对",
    (C("mention_id_a", "VARCHAR", "人员提及编号 A", True), C("mention_id_b", "VARCHAR", "人员提及编号 B", True),
     C("person_id_a", "VARCHAR", "A 当前的人员编号"), C("person_id_b", "VARCHAR", "B 当前的人员编号"),
     C("match_probability", "DOUBLE", "匹配概率"), C("match_weight", "DOUBLE", "匹配权重（log2 贝叶斯因子之和）"),
     C("reason", "VARCHAR", "复核原因：uncertain 不确定、names_differ 姓名不同、refused:* 被约束拒绝"),
     C("levels", "JSON", "各比对项的比对级别")),
)
ALERT = Table(
    "core", "alert", "跨部门预警（mart.alerts 为脱敏视图）",
    (C("alert_id", "VARCHAR", "预警编号（按类型、人员和依据稳定生成）", True),
     C("alert_kind", "VARCHAR", "预警类型：deceased_receiving_benefit 死亡后仍领低保、deceased_still_registered 死亡后流动人口仍在住、id_conflict 同一身份证号信息冲突、marital_status_conflict 婚姻状况冲突", True),
     C("person_id", "VARCHAR", "人员编号", True), C("alert_date", "DATE", "预警涉及的日期（如领取月份、死亡日期）"),
     C("detail", "VARCHAR", "说明（中文）"), C("evidence", "JSON", "依据：相关来源记录与日期")),
    ("alert_id",),
)


DISTRICT = Table(
    "quality", "district", "辖区：每次确定或核对辖区一行（最新一行为当前辖区；未配置 [district] 时由首次同步从数据推断）",
    (C("run_id", "VARCHAR", "确定辖区的运行编号", True), C("decided_at", "TIMESTAMP", "确定时间", True),
     C("method", "VARCHAR", "来源：inferred 由数据推断、configured 配置文件 [district]", True),
     C("county_code", "VARCHAR", "县级六位区划代码", True), C("province", "VARCHAR", "省级名称"),
     C("city", "VARCHAR", "地级名称（直辖市、省直辖县为空）"), C("county", "VARCHAR", "县级名称"),
     C("confidence", "VARCHAR", "推断把握：高、中（配置的辖区为空）"),
     C("share", "DOUBLE", "该辖区占全部证据（写明区县的地址、街道/乡镇名称、身份证地区码）的比例"),
     C("evidence_records", "INTEGER", "参与推断或核对的证据记录数（抽样）"),
     C("detail", "VARCHAR", "说明（中文）：推断依据或核对结果"),
     C("warning", "VARCHAR", "警告（中文）：配置的或已存的辖区与本次数据不符时")),
)


PUBLISH = Table(
    "quality", "publish",
    "发布记录：仓库每发布一次一行；由它派生的文件（分析员去标识化仓库）据此判断自己是否由上一次发布生成",
    (C("seq", "BIGINT", "发布序号（从 1 起递增）", True), C("generation", "VARCHAR", "发布编号（随机，唯一）", True),
     C("published_at", "TIMESTAMP", "发布时间", True), C("run_id", "VARCHAR", "发布它的运行编号"),
     C("flow", "VARCHAR", "发布它的流程（nightly_sync、decision 等）")),
)


def core_tables() -> tuple[Table, ...]:
    return (PERSON, PERSON_XREF, PERSON_MERGE_LOG, LINK_DECISION, MATCH_CANDIDATE, ADDRESS, ADDRESS_XREF,
            PERSON_ADDRESS, RELATIONSHIP, MARRIAGE, CREMATION,
            LOW_INCOME_LINE, LOW_INCOME_ENROLMENT, FLOATING_REGISTRATION, FLOATING_HISTORY,
            FP_WOMAN, FP_CHILD, ALERT, *fact_tables())


def staging_tables() -> tuple[Table, ...]:
    return (STG_MENTION, STG_RELATIONSHIP, STG_ADDRESS_MENTION, STG_LINKAGE_FEATURE,
            *(staging_record_table(m) for m in load_mappings()))


def quality_tables() -> tuple[Table, ...]:
    return (SCHEMA_VERSION, RUN, LOAD_LEDGER, REJECTED_RECORD, EXPECTATION_RESULT, FINDING, LINKAGE_MODEL, DISTRICT, AUDIT,
            PUBLISH)


def all_tables() -> tuple[Table, ...]:
    return (*quality_tables(), *staging_tables(), *core_tables())


def create_all_sql() -> list[str]:
    stmts = [f"CREATE SCHEMA IF NOT EXISTS {s}" for s in SCHEMAS]
    for t in all_tables():
        stmts += t.create_sql()
    return stmts


__all__ = ["Column", "Table", "SCHEMAS", "all_tables", "create_all_sql", "core_tables", "fact_table", "fact_tables",
           "staging_tables", "quality_tables"]
