"""Structured pipeline errors: context as fields, message built from it."""

from __future__ import annotations


class ExportProcessingError(Exception):
    """Standardising or checking one export failed unexpectedly (a program fault, not
    bad data: bad values are quarantined, never raised). The export fails alone and
    the message names it and the error, so it can be reported and fixed. Not a fault of the
    content: the next run tries the export again."""

    transient = True

    def __init__(self, source_object: str, cause: BaseException) -> None:
        self.source_object = source_object
        self.error_type = type(cause).__name__
        self.detail = (str(cause).strip().splitlines() or [""])[0][:200]
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return (f"处理失败（程序错误，请报告开发人员）：文件 {self.source_object}，{self.error_type}: {self.detail} | "
                f"processing failed: {self.source_object}, {self.error_type}: {self.detail}")

    def __str__(self) -> str:
        return self.message
