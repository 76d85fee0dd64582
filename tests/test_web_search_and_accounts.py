"""The search box's normalisation (pipelines.search) and the page's local accounts
(webapp.accounts): table-driven, no server."""

from __future__ import annotations

import pytest

from pipelines.normalize.address import DistrictContext
from pipelines.search import SearchTextError, parse_search
from webapp import accounts

DISTRICT = DistrictContext(province="吉林省", city="辽源市", county="龙山区", county_code="220402")
ID = "22040219800101102X"

CASES = [
    # text, kind, expected kind, expected normalised field, value
    (ID, "auto", "citizen_id", "citizen_id", ID),
    (ID.lower(), "auto", "citizen_id", "citizen_id", ID),
    ("２２０４０２１９８００１０１１０２ｘ", "auto", "citizen_id", "citizen_id", ID),
    ("220402 19800101 102X", "auto", "citizen_id", "citizen_id", ID),
    ("'22040219800101102x", "citizen_id", "citizen_id", "citizen_id", ID),
    ("220402800101001", "auto", "citizen_id", "citizen_id", "220402198001010019"),  # 15 → 18
    ("張偉", "auto", "name", "name", "张伟"),
    ("张伟", "auto", "name", "name_pinyin", ["zhangwei"]),
    ("Zhang Wei", "auto", "name", "name_pinyin", ["zhangwei"]),
    ("单雄信", "auto", "name", "name_pinyin", ["shanxiongxin", "danxiongxin"]),  # surname reading first
    ("139 1234 5678", "auto", "phone", "phone", "13912345678"),
    ("+86 139-1234-5678", "auto", "phone", "phone", "13912345678"),
    ("0437-3221234", "auto", "phone", "phone", "0437-3221234"),
    ("人民大街125号3栋2单元501", "auto", "address", "address",
     {"road": "人民大街", "house_number": "125", "building": "3", "unit": "2", "room": "501"}),
    ("人民大街一百二十五号", "address", "address", "address", {"road": "人民大街", "house_number": "125"}),
]


@pytest.mark.parametrize("text, kind, want_kind, attr, value", CASES, ids=[c[0] for c in CASES])
def test_search_text_is_normalised_like_the_exports(text, kind, want_kind, attr, value):
    key = parse_search(text, kind, district=DISTRICT)
    assert key.kind == want_kind
    assert getattr(key, attr) == value


@pytest.mark.parametrize("text, kind, why", [
    ("", "auto", "请输入"),
    ("220402198001010011", "citizen_id", "校验位错误"),
    ("12345", "phone", "不是有效的手机号"),
    ("张三", "birthday", "未知的查找方式"),
])
def test_unusable_search_texts_say_why(text, kind, why):
    with pytest.raises(SearchTextError, match=why):
        parse_search(text, kind, district=DISTRICT)


def test_accounts_store_only_hashes_and_check_passwords(tmp_path):
    path = tmp_path / "users.json"
    accounts.add_user(path, "王科员", "correct horse", "officer")
    accounts.add_user(path, "analyst", "another pass", "analyst")
    text = path.read_text(encoding="utf-8")
    assert "correct horse" not in text and "$2b$12$" in text
    assert (path.stat().st_mode & 0o777) == 0o600
    assert accounts.authenticate(path, "王科员", "correct horse") == accounts.Account("王科员", "officer")
    assert accounts.authenticate(path, "王科员", "wrong horse") is None
    assert accounts.authenticate(path, "nobody", "correct horse") is None
    assert accounts.authenticate(path, "analyst", "another pass").role == "analyst"
    with pytest.raises(accounts.AccountError, match="已存在"):
        accounts.add_user(path, "王科员", "correct horse", "officer")
    with pytest.raises(accounts.AccountError, match="至少 8"):
        accounts.add_user(path, "x", "short", "officer")
    with pytest.raises(accounts.AccountError, match="未知角色"):
        accounts.add_user(path, "y", "long enough", "admin")
    with pytest.raises(accounts.AccountError, match="太长"):
        accounts.add_user(path, "z", "密" * 25, "officer")
    accounts.set_password(path, "王科员", "new password")
    assert accounts.authenticate(path, "王科员", "correct horse") is None
    assert accounts.authenticate(path, "王科员", "new password") is not None
    accounts.remove_user(path, "analyst")
    assert [u[0] for u in accounts.list_users(path)] == ["王科员"]
