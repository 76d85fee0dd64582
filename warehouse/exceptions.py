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
