"""National and departmental code tables, as data.

Each table is a :class:`CodeTable`: the canonical ``codes`` (code -> Chinese label, as
the standard prints it) plus ``aliases`` (other texts seen in department exports ->
code).  Lookups are done by ``pipelines.normalize.codes.map_codes``, which also
accepts every code and every label directly, so aliases only list *additional* texts.

Standards used (to the best of our knowledge of the published tables):

* gender ............... GB/T 2261.1-2003 人的性别代码
* ethnicity ............ GB 3304-1991 中国各民族名称的罗马字母拼写法和代码
                         (2-digit numeric codes 01-56, plus 97 其他 / 98 外国血统中国籍人士;
                         the 2-letter romanised codes of the same standard are aliases)
* marital_status ....... GB/T 2261.2-2003 婚姻状况代码
                         (the single-digit codes 1/2/3/4/9 of the withdrawn GB 2261-1980
                         are accepted as aliases, because old systems still emit them)
* relationship ......... GB/T 4761-2008 家庭关系代码.  Note where the standard puts the
                         in-laws: 女婿 is 28 (in the 子 block) and 儿媳 is 38 (in the 女
                         block); 80 is 其他 (other relatives, 81-97 detail them) and
                         99 is 非亲属.  Both 01 本人 and 02 户主 denote the head of the
                         household in a roster (see :data:`HEAD_OF_HOUSEHOLD_CODES`).
* the other tables (document type, low-income category, marriage business type,
  residence reason, floating registration status) are departmental vocabularies with
  no national code; their codes are English slugs.

This module depends on nothing else in the project.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "CodeTable",
    "CODE_TABLES",
    "GENDER",
    "ETHNICITY",
    "MARITAL_STATUS",
    "RELATIONSHIP",
    "DOCUMENT_TYPE",
    "LOW_INCOME_CATEGORY",
    "MARRIAGE_BUSINESS",
    "RESIDENCE_REASON",
    "REGISTRATION_STATUS",
    "HEAD_OF_HOUSEHOLD_CODES",
]


@dataclass(frozen=True)
class CodeTable:
    """One code table.

    name:      machine name (key of :data:`CODE_TABLES`, used in error codes)
    label_zh:  Chinese name of the table, for officer-facing messages
    standard:  the national standard, or ``""`` for a departmental vocabulary
    codes:     code -> label as printed by the standard
    aliases:   other accepted texts -> code (labels and codes need not be repeated)
    """

    name: str
    label_zh: str
    standard: str
    codes: dict[str, str]
    aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = {text: code for text, code in self.aliases.items() if code not in self.codes}
        if unknown:
            raise ValueError(f"code table {self.name}: aliases point to unknown codes {unknown}")

    def label(self, code: str) -> str:
        """Chinese label of ``code`` (KeyError if it is not in the table)."""
        return self.codes[code]


# --------------------------------------------------------------------------- gender
GENDER = CodeTable(
    name="gender",
    label_zh="性别",
    standard="GB/T 2261.1-2003",
    codes={"0": "未知的性别", "1": "男", "2": "女", "9": "未说明的性别"},
    aliases={
        "男性": "1", "男士": "1", "M": "1", "MALE": "1",
        "女性": "2", "女士": "2", "F": "2", "FEMALE": "2",
        "未知": "0", "未知性别": "0",
        "未说明": "9", "未说明性别": "9",
    },
)

# ------------------------------------------------------------------------ ethnicity
# (code, full name, GB 3304 romanised 2-letter code)
_ETHNIC_GROUPS: tuple[tuple[str, str, str], ...] = (
    ("01", "汉族", "HA"), ("02", "蒙古族", "MG"), ("03", "回族", "HU"),
    ("04", "藏族", "ZA"), ("05", "维吾尔族", "UG"), ("06", "苗族", "MH"),
    ("07", "彝族", "YI"), ("08", "壮族", "ZH"), ("09", "布依族", "BY"),
    ("10", "朝鲜族", "CS"), ("11", "满族", "MA"), ("12", "侗族", "DO"),
    ("13", "瑶族", "YA"), ("14", "白族", "BA"), ("15", "土家族", "TJ"),
    ("16", "哈尼族", "HN"), ("17", "哈萨克族", "KZ"), ("18", "傣族", "DA"),
    ("19", "黎族", "LI"), ("20", "傈僳族", "LS"), ("21", "佤族", "VA"),
    ("22", "畲族", "SH"), ("23", "高山族", "GS"), ("24", "拉祜族", "LH"),
    ("25", "水族", "SU"), ("26", "东乡族", "DX"), ("27", "纳西族", "NX"),
    ("28", "景颇族", "JP"), ("29", "柯尔克孜族", "KG"), ("30", "土族", "TU"),
    ("31", "达斡尔族", "DU"), ("32", "仫佬族", "ML"), ("33", "羌族", "QI"),
    ("34", "布朗族", "BL"), ("35", "撒拉族", "SL"), ("36", "毛南族", "MN"),
    ("37", "仡佬族", "GL"), ("38", "锡伯族", "XB"), ("39", "阿昌族", "AC"),
    ("40", "普米族", "PM"), ("41", "塔吉克族", "TA"), ("42", "怒族", "NU"),
    ("43", "乌孜别克族", "UZ"), ("44", "俄罗斯族", "RS"), ("45", "鄂温克族", "EW"),
    ("46", "德昂族", "DE"), ("47", "保安族", "BN"), ("48", "裕固族", "YG"),
    ("49", "京族", "GI"), ("50", "塔塔尔族", "TT"), ("51", "独龙族", "DR"),
    ("52", "鄂伦春族", "OR"), ("53", "赫哲族", "HZ"), ("54", "门巴族", "MB"),
    ("55", "珞巴族", "LB"), ("56", "基诺族", "JN"),
)

ETHNICITY = CodeTable(
    name="ethnicity",
    label_zh="民族",
    standard="GB 3304-1991",
    codes={
        **{code: full for code, full, _ in _ETHNIC_GROUPS},
        "97": "其他",
        "98": "外国血统中国籍人士",
    },
    aliases={
        # short forms: 汉, 蒙古, 回, 维吾尔 ...
        **{full.removesuffix("族"): code for code, full, _ in _ETHNIC_GROUPS},
        # romanised codes of GB 3304: HA, MG, HU ...
        **{roman: code for code, _, roman in _ETHNIC_GROUPS},
        # colloquial and former names
        "蒙族": "02", "维族": "05", "崩龙族": "46", "崩龙": "46", "毛难族": "36", "毛难": "36",
        "其他民族": "97", "未识别民族": "97", "未定族称": "97", "未识别": "97",
        "外国血统": "98", "外国人入籍": "98", "入籍": "98",
    },
)

# ------------------------------------------------------------------- marital status
MARITAL_STATUS = CodeTable(
    name="marital_status",
    label_zh="婚姻状况",
    standard="GB/T 2261.2-2003",
    codes={
        "10": "未婚", "20": "已婚", "21": "初婚", "22": "再婚", "23": "复婚",
        "30": "丧偶", "40": "离婚", "90": "未说明的婚姻状况",
    },
    aliases={
        "有配偶": "20", "已婚有配偶": "20", "离异": "40", "未说明": "90",
        # withdrawn GB 2261-1980 single-digit codes, still emitted by old systems
        "1": "10", "2": "20", "3": "30", "4": "40", "9": "90",
    },
)

# --------------------------------------------------------------------- relationship
RELATIONSHIP = CodeTable(
    name="relationship",
    label_zh="家庭关系（与户主关系）",
    standard="GB/T 4761-2008",
    codes={
        "01": "本人", "02": "户主",
        "10": "配偶", "11": "夫", "12": "妻",
        "20": "子", "21": "独生子", "22": "长子", "23": "次子", "24": "三子",
        "25": "四子", "26": "五子", "27": "养子或继子", "28": "女婿", "29": "其他儿子",
        "30": "女", "31": "独生女", "32": "长女", "33": "二女", "34": "三女",
        "35": "四女", "36": "五女", "37": "养女或继女", "38": "儿媳", "39": "其他女儿",
        "40": "孙子、孙女或外孙子、外孙女", "41": "孙子", "42": "孙女", "43": "外孙子",
        "44": "外孙女", "45": "孙媳妇或外孙媳妇", "46": "孙女婿或外孙女婿",
        "47": "曾孙子或外曾孙子", "48": "曾孙女或外曾孙女",
        "49": "其他孙子、孙女或外孙子、外孙女",
        "50": "父母", "51": "父亲", "52": "母亲", "53": "公公", "54": "婆婆",
        "55": "岳父", "56": "岳母", "57": "继父或养父", "58": "继母或养母",
        "59": "其他父母关系",
        "60": "祖父母或外祖父母", "61": "祖父", "62": "祖母", "63": "外祖父",
        "64": "外祖母", "65": "配偶的祖父母或外祖父母", "66": "曾祖父", "67": "曾祖母",
        "68": "配偶的曾祖父母或外曾祖父母", "69": "其他祖父母或外祖父母关系",
        "70": "兄弟姐妹", "71": "兄", "72": "嫂", "73": "弟", "74": "弟媳",
        "75": "姐姐", "76": "姐夫", "77": "妹妹", "78": "妹夫", "79": "其他兄弟姐妹",
        "80": "其他", "81": "伯父", "82": "伯母", "83": "叔父", "84": "婶母",
        "85": "舅父", "86": "舅母", "87": "姨父", "88": "姨母", "89": "姑父",
        "90": "姑母", "91": "堂兄弟、堂姐妹", "92": "表兄弟、表姐妹", "93": "侄子",
        "94": "侄女", "95": "外甥", "96": "外甥女", "97": "其他亲属",
        "99": "非亲属",
    },
    aliases={
        # head of household (roster texts 户主/本人)
        "户主本人": "02", "自己": "01",
        # spouse
        "丈夫": "11", "老公": "11", "妻子": "12", "老婆": "12",
        # children and their spouses
        "儿子": "20", "二子": "23", "养子": "27", "继子": "27",
        "女儿": "30", "次女": "33", "养女": "37", "继女": "37",
        "儿媳妇": "38",  # not 媳妇: in the north-east it also means wife
        # grandchildren
        "孙子女": "40", "外孙": "43", "外孙女儿": "44", "孙媳妇": "45", "孙女婿": "46",
        "曾孙": "47", "曾孙子": "47", "曾孙女": "48",
        # parents
        "父": "51", "爸爸": "51", "母": "52", "妈妈": "52",
        "继父": "57", "养父": "57", "继母": "58", "养母": "58",
        # grandparents
        "爷爷": "61", "奶奶": "62", "外公": "63", "姥爷": "63", "外婆": "64", "姥姥": "64",
        # siblings (the roster's 兄弟 / 姐妹 are not specific: 70)
        "兄弟": "70", "姐妹": "70", "哥哥": "71", "嫂子": "72", "弟弟": "73",
        "弟妹": "74", "姐": "75", "妹": "77",
        # other relatives
        "伯伯": "81", "叔叔": "83", "叔": "83", "婶婶": "84", "舅舅": "85", "舅妈": "86",
        "姨": "88", "姨妈": "88", "姑姑": "90", "姑妈": "90",
        "侄儿": "93", "外甥女儿": "96", "其它": "80", "其他关系": "80",
        # non-relatives
        "非亲属关系": "99", "无亲属关系": "99", "保姆": "99", "朋友": "99",
    },
)

#: GB/T 4761 codes that mean "this row is the head of the household".
HEAD_OF_HOUSEHOLD_CODES: frozenset[str] = frozenset({"01", "02"})

# -------------------------------------------------------------------- document type
DOCUMENT_TYPE = CodeTable(
    name="document_type",
    label_zh="证件类型",
    standard="",
    codes={
        "resident_id": "居民身份证",
        "passport": "护照",
        "hk_macao_residence": "港澳居民居住证",
        "taiwan_residence": "台湾居民居住证",
        "foreign_permanent": "外国人永久居留身份证",
        "hk_macao_pass": "港澳居民来往内地通行证",
        "taiwan_pass": "台湾居民来往大陆通行证",
        "other": "其他",
    },
    aliases={
        "身份证": "resident_id", "居民身份证号码": "resident_id", "公民身份号码": "resident_id",
        "中华人民共和国居民身份证": "resident_id", "二代身份证": "resident_id",
        "第二代居民身份证": "resident_id", "临时身份证": "resident_id",
        "临时居民身份证": "resident_id",
        "普通护照": "passport", "外国护照": "passport", "中国护照": "passport",
        "中华人民共和国护照": "passport",
        "港澳居住证": "hk_macao_residence", "香港居民居住证": "hk_macao_residence",
        "澳门居民居住证": "hk_macao_residence",
        "台湾居住证": "taiwan_residence",
        "外国人永久居留证": "foreign_permanent", "永久居留身份证": "foreign_permanent",
        "外国人永久居留身份证件": "foreign_permanent", "永久居留证": "foreign_permanent",
        "回乡证": "hk_macao_pass", "港澳居民往来内地通行证": "hk_macao_pass",
        "港澳同胞回乡证": "hk_macao_pass",
        "台胞证": "taiwan_pass", "台湾居民往来大陆通行证": "taiwan_pass",
        "其它": "other", "其他证件": "other",
    },
)

# ----------------------------------------------------------- low-income category
LOW_INCOME_CATEGORY = CodeTable(
    name="low_income_category",
    label_zh="保障类别",
    standard="",
    codes={"A": "A类", "B": "B类", "C": "C类"},
    aliases={
        "一类": "A", "1类": "A", "A类户": "A", "一类户": "A",
        "二类": "B", "2类": "B", "B类户": "B", "二类户": "B",
        "三类": "C", "3类": "C", "C类户": "C", "三类户": "C",
    },
)

# -------------------------------------------------------- marriage business type
MARRIAGE_BUSINESS = CodeTable(
    name="marriage_business",
    label_zh="业务类型",
    standard="",
    codes={
        "marriage": "结婚登记",
        "divorce": "离婚登记",
        "reissue_marriage": "补领结婚证",
        "reissue_divorce": "补领离婚证",
        "annulment": "撤销婚姻",
    },
    aliases={
        "结婚": "marriage", "离婚": "divorce",
        "补发结婚证": "reissue_marriage", "补领结婚登记": "reissue_marriage",
        "补发离婚证": "reissue_divorce", "补领离婚登记": "reissue_divorce",
        "撤销婚姻登记": "annulment", "撤销结婚登记": "annulment",
    },
)

# -------------------------------------------------------------- residence reason
RESIDENCE_REASON = CodeTable(
    name="residence_reason",
    label_zh="居住事由",
    standard="",
    codes={
        "work": "务工",
        "business": "经商",
        "join_family": "投靠亲友",
        "study": "就学",
        "medical": "就医",
        "other": "其他",
    },
    aliases={
        "打工": "work", "务工就业": "work", "就业": "work",
        "经商办企业": "business",
        "投亲靠友": "join_family", "投亲": "join_family", "随迁": "join_family",
        "上学": "study", "读书": "study", "学习培训": "study",
        "看病": "medical", "治病": "medical",
        "其它": "other",
    },
)

# -------------------------------------------------- floating registration status
REGISTRATION_STATUS = CodeTable(
    name="registration_status",
    label_zh="登记状态",
    standard="",
    codes={"active": "在住", "cancelled": "已注销"},
    aliases={"在册": "active", "有效": "active", "注销": "cancelled", "已迁出": "cancelled",
             "迁出": "cancelled"},
)

CODE_TABLES: dict[str, CodeTable] = {
    table.name: table
    for table in (
        GENDER, ETHNICITY, MARITAL_STATUS, RELATIONSHIP, DOCUMENT_TYPE,
        LOW_INCOME_CATEGORY, MARRIAGE_BUSINESS, RESIDENCE_REASON, REGISTRATION_STATUS,
    )
}
