"""Generate tests/golden/ids.tsv (run once; the TSV is committed)."""
import csv, itertools

W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
def check(b17): return "10X98765432"[sum(int(c) * w for c, w in zip(b17, W)) % 11]
def mk(region, date, seq): b = f"{region}{date}{seq}"; return b + check(b)
def wrong(i):  # an 18-char ID with a wrong check char
    good = i[-1]; bad = "1" if good != "1" else "2"; return i[:-1] + bad
def up15(i): return i[:6] + i[8:17]
def fw(s): return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in s)
def find_x(region, date):
    for n in range(1000):
        i = mk(region, date, f"{n:03d}")
        if i.endswith("X"): return i
def esc(s):
    if s is None: return "<None>"
    out = []
    for c in s:
        if c == "\t": out.append("\\t")
        elif c == "\n": out.append("\\n")
        elif c == "\\": out.append("\\u005c")
        elif c in "\u3000\u00a0\u200b\ufeff\u2002": out.append(f"\\u{ord(c):04x}")
        else: out.append(c)
    return "".join(out)

rows = []
def add(raw, value, status, note): rows.append((esc(raw), value or "", status, note))

A = mk("110105", "19800101", "123")     # 北京朝阳
B = mk("220402", "19750615", "042")     # 辽源龙山
C = mk("330106", "19921231", "318")     # 杭州西湖
D = mk("110101", "20000229", "007")     # 东城, leap day
E = mk("440305", "19651103", "562")     # 深圳南山
F = mk("510104", "19580720", "091")
G = mk("650102", "19881008", "274")
H = mk("371302", "20101201", "335")
X1 = find_x("220402", "19830304"); X2 = find_x("110105", "19910517"); X3 = find_x("320106", "19700101")
valid = [(A, "北京朝阳"), (B, "辽源龙山区"), (C, "杭州西湖区"), (D, "闰日20000229"), (E, "深圳南山区"),
         (F, "成都锦江区"), (G, "乌鲁木齐天山区"), (H, "临沂兰山区"), (X1, "校验位X辽源"), (X2, "校验位X朝阳"), (X3, "校验位X南京")]
for i, n in valid: add(i, i, "valid", f"valid {n}")
add(mk("110105", "19000101", "011"), mk("110105", "19000101", "011"), "valid", "valid birth 1900-01-01 lower bound")
add(mk("110105", "20230715", "002"), mk("110105", "20230715", "002"), "valid", "valid recent child 2023")
add(mk("441900", "19950505", "123"), mk("441900", "19950505", "123"), "valid", "valid prefecture-level code 东莞 441900")
add(mk("460400", "19950505", "124"), mk("460400", "19950505", "124"), "valid", "valid prefecture-level code 儋州 460400")
# abolished but historical regions
for reg, name in [("110103", "崇文区"), ("110104", "宣武区"), ("310103", "卢湾区"), ("110223", "通县"), ("110110", "燕山区"),
                  ("110201", "undated pre-1980 昌平县"), ("220102", "长春南关区 current")]:
    i = mk(reg, "19600308", "221"); add(i, i, "valid", f"historical region {reg} {name}")
# residence permits HK/Macao/Taiwan
for reg, name in [("810000", "香港"), ("820000", "澳门"), ("830000", "台湾")]:
    i = mk(reg, "19850612", "034"); add(i, i, "valid", f"residence permit {name} {reg}")
    add(wrong(i), "", "id_bad_checksum", f"residence permit {name} wrong check")
    add(fw(i), i, "valid", f"residence permit {name} full-width")
# lowercase x
for i, n in [(X1, 1), (X2, 2), (X3, 3)]:
    add(i[:-1] + "x", i, "valid", f"lowercase x {n}")
add(" " + X1[:-1] + "x ", X1, "valid", "lowercase x with spaces")
add("'" + X2[:-1] + "x", X2, "valid", "lowercase x with apostrophe")
# full-width
for i, n in [(A, "A"), (B, "B"), (C, "C")]:
    add(fw(i), i, "valid", f"full-width digits {n}")
add(fw(X1), X1, "valid", "full-width digits and Ｘ")
add(fw(X2[:-1]) + "ｘ", X2, "valid", "full-width digits and ｘ")
add(fw(A[:9]) + A[9:], A, "valid", "half full-width mixed")
add(fw(up15(B)), B, "upgraded_15", "full-width 15-digit")
# whitespace
add(" " + A, A, "valid", "leading space")
add(A + "  ", A, "valid", "trailing spaces")
add(f"{A[:6]} {A[6:14]} {A[14:]}", A, "valid", "inner spaces 6-8-4")
add(" ".join(A), A, "valid", "space between every digit")
add(A + "\u3000", A, "valid", "trailing U+3000")
add("\u3000" + B + "\u3000", B, "valid", "U+3000 both sides")
add(f"{C[:6]}\u3000{C[6:]}", C, "valid", "inner U+3000")
add("\t" + C, C, "valid", "leading tab")
add(C + "\n", C, "valid", "trailing newline")
add(D + "\u00a0", D, "valid", "trailing nbsp")
add("\ufeff" + D, D, "valid", "leading BOM")
add(E[:9] + "\u200b" + E[9:], E, "valid", "inner zero-width space")
add(f"{E[:6]}\u2002{E[6:]}", E, "valid", "inner en space")
# Excel text markers
add("'" + A, A, "valid", "leading apostrophe")
add("`" + B, B, "valid", "leading backtick")
add('="' + C + '"', C, "valid", "excel formula text =\"...\"")
add('"' + D + '"', D, "valid", "double quoted")
add("＇" + E, E, "valid", "full-width apostrophe")
add("' " + F, F, "valid", "apostrophe then space")
add("“" + G + "”", G, "valid", "curly quotes")
add("'" + up15(F), F, "upgraded_15", "apostrophe 15-digit")
# 15-digit upgrades
for i, n in [(A, "A"), (B, "B"), (C, "C"), (E, "E"), (F, "F"), (G, "G")]:
    add(up15(i), i, "upgraded_15", f"15-digit upgrade {n}")
add(up15(X1), X1, "upgraded_15", "15-digit upgrade to X check")
add(up15(mk("110103", "19620101", "015")), mk("110103", "19620101", "015"), "upgraded_15", "15-digit upgrade abolished 崇文区")
add(" " + up15(A) + " ", A, "upgraded_15", "15-digit with spaces")
add(up15(mk("110105", "19800230", "123")), "", "id_bad_birth_date", "15-digit impossible date 800230")
add(up15(mk("999999", "19800101", "123")), "", "id_bad_region", "15-digit unknown region")
add(up15(A)[:-1] + "X", "", "id_bad_length", "15 chars ending X")
# wrong check digit
for i, n in [(A, "A"), (B, "B"), (C, "C"), (D, "D")]:
    add(wrong(i), "", "id_bad_checksum", f"wrong check digit {n}")
add(X1[:-1] + "0", "", "id_bad_checksum", "digit where X expected")
add(A[:-1] + "X", "", "id_bad_checksum", "X where digit expected")
add(A[:10] + str((int(A[10]) + 1) % 10) + A[11:], "", "id_bad_checksum", "single digit typo in month keeps date valid")
add(A[:15] + A[16] + A[15] + A[17], "" if A[15] != A[16] else A, "id_bad_checksum", "adjacent transposition in sequence")
add(fw(wrong(B)), "", "id_bad_checksum", "full-width with wrong check")
# missing
for raw, n in [("", "empty string"), (None, "None"), ("无", "无"), ("/", "slash"), ("-", "dash"), ("不详", "不详"),
               ("空", "空"), ("   ", "only spaces"), ("\u3000", "only U+3000"), ("NULL", "NULL"), ("null", "null lowercase"),
               ("N/A", "N/A"), ("暂无", "暂无"), ("--", "double dash"), ("—", "em dash"), ("－", "full-width dash"),
               ("\u005c", "backslash"), (" 无 ", "无 with spaces")]:
    add(raw, "", "missing", f"missing {n}")
# scientific notation
for raw, n in [("1.10105E+17", "display 6 digits"), ("1.10105e+17", "lowercase e"), ("1.10105E17", "no plus"),
               ("1.10105198001011e+17", "python repr 15 digits"), ("1.10105198001011E+17", "upper repr"),
               ("1.1010519800101e+17", "repr 14 digits"), ("1.1E+17", "2 digits"), ("1,10105E+17", "decimal comma"),
               ("１.１０１０５Ｅ＋１７", "full-width"), (" 1.10105E+17 ", "with spaces"), ("'1.10105E+17", "with apostrophe"),
               ("2.20402199005E+17", "12 digits"), ("1.10105800101E+14", "15-digit old id"), ("1.10105E+017", "3-digit exponent"),
               ("1E+17", "mantissa only"), ("1.10105E-17", "negative exponent")]:
    add(raw, "", "id_excel_scientific", f"scientific {n}")
# truncation to 000
for i, n in [(A, "A"), (B, "B"), (C, "C"), (X1, "X1")]:
    add(i[:15] + "000", "", "id_excel_truncated", f"truncated 000 {n}")
add(fw(A[:15] + "000"), "", "id_excel_truncated", "full-width truncated")
add("'" + B[:15] + "000", "", "id_excel_truncated", "apostrophe truncated")
lucky = next(b + "0" for d in "0123456789" for b in [f"11010519800101{d}00"] if check(b) == "0")
add(lucky, "", "id_excel_truncated", "truncated 000 whose checksum passes")
# floats
for raw, n in [(A + ".0", "18 digits .0"), (A[:15] + "000.0", "truncated .0"), (up15(A) + ".0", "15 digits .0"),
               (A + ".00", "two decimals"), ("110105198001011232.0", "float64 exact value"), (fw(A) + "．０", "full-width")]:
    add(raw, "", "id_excel_float", f"float {n}")
# bad characters
add(A[:8] + "O" + A[9:], "", "id_bad_chars", "letter O for zero")
add(A[:3] + "I" + A[4:], "", "id_bad_chars", "letter I for one")
add(A[:10] + "X" + A[11:], "", "id_bad_chars", "X in the middle")
add(A[:6] + "-" + A[6:14] + "-" + A[14:], "", "id_bad_chars", "dashes")
add("E12345678", "", "id_bad_chars", "passport number")
add("身份证" + A, "", "id_bad_chars", "label before number")
add(A + "号", "", "id_bad_chars", "chinese char after")
add("abc", "", "id_bad_chars", "plain letters")
add(A[:17] + "Y", "", "id_bad_chars", "check char Y")
add("+" + A, "", "id_bad_chars", "plus sign")
# bad length
add(A[:17], "", "id_bad_length", "17 digits")
add(A + "5", "", "id_bad_length", "19 digits")
add(A[:16], "", "id_bad_length", "16 digits")
add(A[:10], "", "id_bad_length", "10 digits")
add("1", "", "id_bad_length", "1 digit")
add(A + "12", "", "id_bad_length", "20 digits")
add(A[:14], "", "id_bad_length", "14 digits")
add(X1[:12] + X1[13:], "", "id_bad_length", "17 chars ending X")
add("0", "", "id_bad_length", "zero")
# impossible dates
for date, n in [("19800230", "0230"), ("19800231", "0231"), ("19801301", "month 13"), ("19800001", "month 00"),
                ("19800100", "day 00"), ("19800132", "day 32"), ("19000229", "1900 not leap"), ("20010229", "2001 not leap"),
                ("18991231", "before 1900"), ("19800431", "0431"), ("00000000", "all zero date")]:
    add(mk("110105", date, "123"), "", "id_bad_birth_date", f"impossible date {n}")
for date, n in [("20901231", "2090"), ("20990101", "2099"), ("21000101", "2100")]:
    add(mk("110105", date, "123"), "", "id_bad_birth_date", f"future birth date {n}")
add(mk("110105", "20040229", "123"), mk("110105", "20040229", "123"), "valid", "leap day 2004 valid")
# unknown regions
for reg, n in [("999999", "99 prefix"), ("000000", "all zero"), ("100000", "10 prefix"), ("110199", "unknown county in Beijing"),
               ("960101", "96 prefix"), ("110000", "province-level code 110000 not an ID region")]:
    status = "id_bad_region"
    i = mk(reg, "19800101", "123"); add(i, i if status == "valid" else "", status, f"region {reg} {n}")
# odd combinations
add(fw(" '" + A[:-1]) + "ｘ" if A.endswith("X") else fw(" '" + A), A, "valid", "full-width apostrophe space and digits")
add("\u3000'" + fw(X3[:-1]) + "x ", X3, "valid", "U+3000 apostrophe full-width lowercase x")
add('=" ' + up15(C) + ' "', C, "upgraded_15", "formula text 15-digit with spaces")

notes = [r[3] for r in rows]
dupes = {n for n in notes if notes.count(n) > 1}
assert not dupes, dupes
with open("/work/main/tests/golden/ids.tsv", "w", encoding="utf-8", newline="") as fh:
    fh.write("raw\texpected_value\texpected_status\tnote\n")
    for r in rows:
        assert all("\t" not in c and "\n" not in c for c in r), r
        fh.write("\t".join(r) + "\n")
print(len(rows), "cases")

# ---------------------------------------------------------------- evidence table
ev = []
def eadd(raw, region, birth, gender, seq, evidence_only, note): ev.append((esc(raw), region, birth, gender, seq, evidence_only, note))
eadd(A, "110105", "1980-01-01", "1", "123", "False", "valid gives all fields")
eadd(X1, X1[:6], f"{X1[6:10]}-{X1[10:12]}-{X1[12:14]}", "1" if int(X1[16]) % 2 else "2", X1[14:17], "False", "valid X check")
eadd(up15(B), "220402", "1975-06-15", "2", "042", "False", "upgraded 15 gives all fields")
eadd(wrong(C), "330106", "1992-12-31", "2", "318", "True", "bad checksum keeps region birth sequence")
eadd(A[:15] + "000", "110105", "1980-01-01", "", "", "True", "truncated keeps region and birth")
eadd("1.10105E+17", "110105", "", "", "", "True", "scientific 6 digits keeps region")
eadd("1.1010E+17", "", "", "", "", "True", "scientific 5 digits keeps nothing")
eadd("1.10105198001011e+17", "110105", "1980-01-01", "", "", "True", "scientific repr keeps region and birth")
eadd("1.1010519800101e+17", "110105", "1980-01-01", "", "", "True", "scientific repr 14 digits keeps birth")
eadd("2.20402199005E+17", "220402", "", "", "", "True", "scientific 12 digits birth incomplete")
eadd("1.10105800101E+14", "110105", "", "", "", "True", "scientific old 15-digit 12 shown, last rounded")
eadd("1.101058001011E+14", "110105", "1980-01-01", "", "", "True", "scientific old 15-digit 13 shown")
eadd(A + ".0", "110105", "1980-01-01", "", "", "True", "float 18 digits keeps region birth")
eadd(up15(A) + ".0", "110105", "1980-01-01", "1", "123", "True", "float 15 digits exact")
eadd(mk("110105", "19800230", "123"), "110105", "", "1", "123", "True", "bad birth date keeps region sequence")
eadd(mk("999999", "19800101", "124"), "", "1980-01-01", "2", "124", "True", "bad region keeps birth sequence")
eadd(mk("110105", "20990101", "123"), "110105", "", "1", "123", "True", "future birth not evidence")
eadd(A[:10] + "X" + A[11:], "110105", "", "", "", "True", "bad char in month keeps region")
eadd(A[:15] + "A" + A[16:], "110105", "1980-01-01", "", "", "True", "bad char in sequence keeps region birth")
eadd(A[:17], "110105", "1980-01-01", "1", "123", "True", "17 digits lost check char")
eadd(A[:10], "110105", "", "", "", "True", "10 digits keeps region")
eadd("12345", "", "", "", "", "True", "too short nothing")
eadd("无", "", "", "", "", "False", "missing nothing")
eadd("E12345678", "", "", "", "", "True", "passport nothing")
with open("/work/main/tests/golden/ids_evidence.tsv", "w", encoding="utf-8", newline="") as fh:
    fh.write("raw\tregion_code\tbirth_date\tgender\tsequence\tevidence_only\tnote\n")
    for r in ev: fh.write("\t".join(r) + "\n")

# --------------------------------------------------------------- documents table
P81, P82, P83 = (mk(r, "19850612", "034") for r in ("810000", "820000", "830000"))
docs = [
    ("居民身份证", A, "resident_id", A, "居民身份证"),
    ("身份证", X1[:-1] + "x", "resident_id", X1, "身份证 lowercase x number cleaned"),
    ("", A, "resident_id", A, "empty type ID-like number"),
    ("<None>", up15(A), "resident_id", up15(A), "None type 15-digit number"),
    ("", "1.10105E+17", "resident_id", "1.10105E+17", "empty type scientific number"),
    ("", "E12345678", "other", "E12345678", "empty type passport-like number"),
    ("111", A, "resident_id", A, "code 111"),
    ("1", A, "resident_id", A, "code 1"),
    ("居民身份证", P81, "hk_macao_residence", P81, "ID type but 810000 number"),
    ("身份证", P82, "hk_macao_residence", P82, "ID type but 820000 number"),
    ("", P83, "taiwan_residence", P83, "empty type 830000 number"),
    ("港澳居民居住证", P81, "hk_macao_residence", P81, "港澳居民居住证"),
    ("台湾居民居住证", P83, "taiwan_residence", P83, "台湾居民居住证"),
    ("港澳台居民居住证", P83, "taiwan_residence", P83, "港澳台居民居住证 830000 number"),
    ("港澳台居民居住证", P82, "hk_macao_residence", P82, "港澳台居民居住证 820000 number"),
    ("居住证", "", "other", "", "plain 居住证 without number"),
    ("护照", "E12345678", "passport", "E12345678", "护照"),
    ("普通护照", " e1234 5678 ", "passport", "E12345678", "普通护照 number cleaned"),
    ("Passport", "P1234567", "passport", "P1234567", "Passport English"),
    ("414", "G12345678", "passport", "G12345678", "code 414"),
    ("外国人永久居留身份证", "USA110075061501", "foreign_permanent", "USA110075061501", "外国人永久居留身份证"),
    ("外国人永久居留证", "USA110075061502", "foreign_permanent", "USA110075061502", "外国人永久居留证"),
    ("港澳居民来往内地通行证", "H12345678", "hk_macao_pass", "H12345678", "港澳居民来往内地通行证"),
    ("回乡证", "M12345678", "hk_macao_pass", "M12345678", "回乡证"),
    ("台湾居民来往大陆通行证", "12345678", "other", "12345678", "台胞证 is other"),
    ("军官证", "军字第123号", "other", "军字第123号", "军官证"),
    ("护照", "", "passport", "", "type without number"),
    ("", "", "", "", "both empty"),
    ("无", "无", "", "", "both placeholders"),
    ("<None>", "<None>", "", "", "both None"),
    ("ＰＡＳＳＰＯＲＴ", "Ｅ１２３４５６７８", "passport", "E12345678", "full-width passport"),
]
with open("/work/main/tests/golden/ids_documents.tsv", "w", encoding="utf-8", newline="") as fh:
    fh.write("doc_type\tnumber\texpected_type\texpected_number\tnote\n")
    for r in docs: fh.write("\t".join(r) + "\n")
print(len(ev), "evidence", len(docs), "documents")
