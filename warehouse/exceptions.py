"""Warehouse errors: structured context, message built from it."""

from __future__ import annotations


class WarehouseError(Exception):
    """Base class; subclasses declare `template` and take their context as keywords."""

    template = "仓库错误 / warehouse error: {detail}"

    def __init__(self, **context: object) -> None:
        self.context = context
        super().__init__(self.template.format(**{k: ("" if v is None else v) for k, v in context.items()}))


class WarehouseBusyError(WarehouseError):
    template = ("另一个同步正在写入仓库 {path}（{holder}），本次同步未执行；请稍后重试。 / "
                "another sync holds the warehouse {path} ({holder}); this sync did nothing, retry later")


class WarehouseNotFoundError(WarehouseError):
    template = "仓库文件不存在：{path}，请先运行 residents sync 或 residents demo / warehouse {path} does not exist"


class SchemaTooNewError(WarehouseError):
    template = ("仓库结构版本 {found} 比本程序支持的 {supported} 新，请升级程序 / "
                "warehouse schema version {found} is newer than this program supports ({supported})")


class ReadOnlyQueryError(WarehouseError):
    template = "只读查询失败：{detail} / read-only query failed: {detail}"


class WarehouseNotWritableError(WarehouseError):
    """The warehouse's folder cannot be written (read-only, no permission): a
    configuration problem, reported before anything is read."""

    template = ("仓库位置不可写：{path}（{detail}），请检查 warehouse 配置和目录权限 / "
                "cannot write the warehouse location {path} ({detail})")


class SnapshotNotFoundError(WarehouseError):
    """`--as-of` names a time no kept snapshot covers (or is not a date)."""

    template = "没有 {as_of} 时的仓库快照：{detail} / no warehouse snapshot as of {as_of}: {detail}"


class QueryRefusedError(WarehouseError):
    """A user's SQL that the query door does not run: several statements, or a kind that
    could write, read files, attach databases or change settings. Nothing was executed."""

    template = ("查询被拒绝：{reason}。只允许一条只读语句（SELECT / WITH / DESCRIBE / SHOW / EXPLAIN / SUMMARIZE），"
                "不能读写文件、附加数据库、安装扩展或修改设置；未执行任何语句 / query refused: {reason_en}")


class WarehouseKeyError(WarehouseError):
    """The officer warehouse is encrypted and no (or a wrong) key was given, or a key
    cannot be used. The message never contains the key."""

    template = "仓库文件 {path} {detail} / warehouse {path}: {detail_en}"


class LakehouseError(WarehouseError):
    """Publishing to (or reading) the shared DuckLake failed. reason: `credentials_missing`
    (the referenced password is not there), `extension_missing`, `connect` (catalog or
    data path unreachable, wrong password), `publish` (the lake transaction failed),
    `warehouse`. The published warehouse is never affected."""

    _ZH = {"credentials_missing": "目录数据库的密码未提供", "extension_missing": "缺少 DuckDB 扩展",
           "connect": "无法连接数据湖目录或数据目录", "publish": "写入数据湖失败", "warehouse": "无法读取仓库",
           "no_snapshot": "没有所要求的快照（该时刻之前尚未发布，或编号不存在；见 residents lake-status）"}
    template = "数据湖 {catalog}：{reason_zh}：{detail} / lakehouse {catalog}: {reason}"

    def __init__(self, **context: object) -> None:
        context.setdefault("reason_zh", self._ZH.get(str(context.get("reason")), "错误"))
        super().__init__(**context)


class UnknownReferenceError(WarehouseError):
    template = "找不到人员或记录：{ref}（请使用 person_id，如 P0000000001，或 mention_id，如 文件名|工作表!行号|角色）"


class DecisionConflictError(WarehouseError):
    """A new decision contradicts an earlier active one; refused unless confirmed."""

    template = ("与此前的决定矛盾：{new} {ref_a} {ref_b}，但 {earlier_by} 于 {earlier_at} 已决定两者{earlier}"
                "（决定编号 {earlier_id}，理由：{earlier_reason}）。如确需改变，请加 --force 并用 --reason 说明理由；"
                "两条决定都会保留在历史中 / contradicts decision {earlier_id}; use --force with --reason")


class ForceWithoutReasonError(WarehouseError):
    template = "推翻此前的决定（--force）必须用 --reason 说明理由 / --force needs --reason"
