"""Registry of value-level error codes.

Normalisers put a code from ``ERROR_CODES`` in their ``error`` column; the quarantine
(``quality.rejected_record``) and the officers' problem-record reports look up the
Chinese message and the suggested fix here.  Codes are data: add a row, not code.
Naming: ``<field>_<problem>`` in snake_case.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorCode:
    """One error code with its officer-facing Chinese text."""

    code: str
    message_zh: str  # what is wrong, for the problem-record report
    advice_zh: str  # what the department should do about it


def _table(*rows: tuple[str, str, str]) -> dict[str, ErrorCode]:
    return {code: ErrorCode(code, message, advice) for code, message, advice in rows}


ERROR_CODES: dict[str, ErrorCode] = _table(
    # --- citizen ID (公民身份号码, GB 11643) -------------------------------------
    ("id_excel_scientific",
     "身份证号码被Excel显示为科学计数法（如1.10105E+17），后几位已丢失",
     "请将该列设置为文本格式，重新录入或从原系统重新导出"),
    ("id_excel_truncated",
     "身份证号码后三位被Excel截断为000（Excel只保留15位有效数字）",
     "请将该列设置为文本格式后重新导出"),
    ("id_excel_float",
     "身份证号码被当作小数保存（如末尾带“.0”），后几位可能已失真",
     "请将该列设置为文本格式后重新导出"),
    ("id_bad_checksum",
     "身份证号码校验位错误（可能有录入错误）",
     "请核对证件原件，更正号码后重新报送"),
    ("id_bad_length",
     "身份证号码位数不对（应为18位，或旧版15位）",
     "请核对证件原件，补全或更正号码"),
    ("id_bad_chars",
     "身份证号码含有非法字符（只能是数字，最后一位可以是X）",
     "请检查是否误录了字母、符号或其他证件号码"),
    ("id_bad_birth_date",
     "身份证号码中的出生日期无效（不存在的日期、1900年以前或晚于今天）",
     "请核对证件原件中的出生日期部分"),
    ("id_bad_region",
     "身份证号码前六位不是有效的行政区划代码",
     "请核对证件原件中的前六位地址码"),
)


def describe(code: str) -> ErrorCode:
    """The registry entry of ``code``; ``KeyError`` names an unregistered code."""
    entry = _lookup(code)
    if entry is None:
        raise KeyError(f"unregistered error code {code!r}; add it to pipelines/errors.py")
    return entry


def _lookup(code: str) -> ErrorCode | None:
    """A registered code, or `code_unknown_<table>` of a code table a department declares
    in its mapping (`code_tables`): its text is made from the table's label and codes."""
    entry = ERROR_CODES.get(code)
    if entry is not None or not code.startswith("code_unknown_"):
        return entry
    from schemas.mapping import load_mappings

    name = code.removeprefix("code_unknown_")
    for mapping in load_mappings():
        table = mapping.code_tables.get(name)
        if table is not None:
            labels = "、".join(table.codes.values())
            return ErrorCode(code, f"{table.label_zh}无法识别（应为{labels}之一）",
                             f"请按本部门的{table.label_zh}代码填写：{labels}")
    return None


# --- codes, names, dates, phones (pipelines/normalize/{codes,names,dates,phones}.py) ---
ERROR_CODES.update(_table(
    # code tables (schemas/codes.py): one code per table, code_unknown_<table name>
    ("code_unknown_gender",
     "性别无法识别（应为男/女，或GB/T 2261.1代码0/1/2/9）",
     "请填写“男”或“女”，或使用国家标准代码"),
    ("code_unknown_ethnicity",
     "民族无法识别（应为56个民族的名称或GB 3304两位代码，如“汉族”“01”）",
     "请填写民族全称（如“汉族”）或两位民族代码"),
    ("code_unknown_marital_status",
     "婚姻状况无法识别（应为GB/T 2261.2代码，如10未婚、20已婚、30丧偶、40离婚）",
     "请使用国家标准婚姻状况代码或名称"),
    ("code_unknown_relationship",
     "与户主关系无法识别（应为GB/T 4761家庭关系名称或代码，如户主、配偶、子、女）",
     "请填写标准的家庭关系称谓，如“户主”“配偶”“长子”“儿媳”"),
    ("code_unknown_document_type",
     "证件类型无法识别",
     "请填写居民身份证、护照、港澳居民居住证、台湾居民居住证、外国人永久居留身份证等"),
    ("code_unknown_low_income_category",
     "保障类别无法识别（应为A类/B类/C类或一类/二类/三类）",
     "请按低保分类填写A类、B类或C类"),
    ("code_unknown_marriage_business",
     "婚姻登记业务类型无法识别",
     "请填写结婚登记、离婚登记、补领结婚证、补领离婚证或撤销婚姻"),
    ("code_unknown_residence_reason",
     "居住事由无法识别",
     "请填写务工、经商、投靠亲友、就学、就医或其他"),
    ("code_unknown_registration_status",
     "登记状态无法识别（应为在住或已注销）",
     "请填写“在住”或“已注销”"),
    # names
    ("name_has_digits",
     "姓名中含有数字",
     "请核对证件，删除误录入的数字"),
    ("name_too_long",
     "姓名过长（超过30个字符），可能误录了其他内容",
     "请核对证件，只填写姓名本身"),
    ("name_control_chars",
     "姓名中含有不可见的控制字符（多为从其他系统复制粘贴带入）",
     "请删除后重新录入姓名"),
    # dates
    ("date_unparseable",
     "日期格式无法识别（应为2026-10-01、2026/10/1、20261001、2026年10月1日等）",
     "请按“年-月-日”格式填写日期，或将Excel单元格设为日期格式"),
    ("date_invalid",
     "日期不存在（如2月30日、13月）",
     "请核对原始材料，更正日期"),
    ("date_out_of_range",
     "日期超出合理范围（早于1900年，或晚于导出日期）",
     "请核对年份是否录错"),
    ("birth_date_in_future",
     "出生日期晚于今天（不可能的出生日期）",
     "请核对出生日期，多为年份或月日录错"),
    ("birth_date_too_old",
     "按出生日期计算年龄超过120岁",
     "请核对出生年份是否录错（如1826误为1926）"),
    # phones
    ("phone_invalid",
     "联系电话格式不正确（手机应为1开头的11位数字，固定电话应带区号，如0437-3221234）",
     "请核对并更正联系电话"),
    ("phone_no_area_code",
     "固定电话缺少区号",
     "请在号码前补充区号，如0437-3221234"),
))


# --- rows and generic values (pipelines/standardize.py, pipelines/normalize/dispatch.py) ---
ERROR_CODES.update(_table(
    ("value_missing", "必填项为空，整行未装载", "请补全该项后重新报送"),
    ("row_duplicate", "该行与同一文件中前面的一行完全相同（重复行），未重复装载",
     "请删除重复行；如确为两条不同记录，请核对后更正再报送"),
    ("row_field_count", "该行的列数与表头不一致（可能有多余或缺少的分隔符、未闭合的引号）", "请检查该行的分隔符和引号后重新导出"),
    ("row_formula_without_value", "该行含有未计算结果的公式单元格", "请在Excel中重新计算并保存后再导出"),
    ("text_control_chars", "单元格含有控制字符（不可见字符）", "请删除不可见字符后重新导出"),
    ("excel_error_value", "单元格是Excel错误值（如#REF!引用失效、#DIV/0!除以零、#N/A找不到值），按空值处理",
     "请在Excel中修正该单元格的公式或改为实际值后重新导出"),
    ("text_nul_byte", "单元格含有NUL空字节（\\x00，导出系统的故障），已删除该字节后装载",
     "请检查导出程序，确认该值是否完整，必要时更正后重新报送"),
    ("text_too_long", "单元格内容过长（超过500个字符）", "请检查是否误粘贴了多余内容"),
    ("amount_invalid", "金额不是有效的非负数字", "请填写数字金额，如1234.50"),
    ("int_invalid", "不是有效的非负整数", "请填写整数"),
    ("flag_invalid", "删除标志只能是0或1", "请使用0（有效）或1（删除）"),
))


def error_message(code: str, *, column: str | None = None, value: object = None, detail: str | None = None) -> str:
    """The officer-facing Chinese message for one problem: what, where, which value."""
    entry = _lookup(code)
    text = entry.message_zh if entry else f"数据问题（{code}）"
    parts = [f"列“{column}”" if column else None,
             f"原始值“{_short(value)}”" if value not in (None, "") else None, text,
             detail or None]
    return "：".join(p for p in parts[:2] if p) + ("：" if any(parts[:2]) else "") + "；".join(
        p for p in parts[2:] if p)


def advice(code: str) -> str:
    entry = _lookup(code)
    return entry.advice_zh if entry else "请核对原始记录后更正"


def _short(value: object, limit: int = 60) -> str:
    s = str(value)
    return s if len(s) <= limit else s[:limit] + "…"
