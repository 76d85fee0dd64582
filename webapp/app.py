"""`residents web`: the one-window page (一门式) for officers, in Chinese, offline.

FastAPI with server-side Jinja2 templates; every style is inline in the page (no CDN,
no script, nothing fetched from elsewhere: the Content-Security-Policy forbids it).
Wiring only, like `cli.py`: searching and reading a person come from
`warehouse.people`, the explanation of a person's links from `resolution.explain_person`
(the code behind `residents explain`), decisions go through `flows.apply_decisions`
with `warehouse.decisions.link_persons` / `unlink` (the code behind `residents link`,
`unlink` and `review import`, with their conflict rules), and every view of an identity
and every decision is recorded by `warehouse.audit` before the page is sent.

The published warehouse is opened read-only for each request and closed before the
answer goes out (a sync replaces the file atomically; the next request sees the new
one). A decision takes the writer lock like the CLI does, waiting at most
`WRITE_LOCK_TIMEOUT_S` for a running sync.

Roles: `officer` sees identities and decides; `analyst` sees only the district
overview (counts, no ID, name, phone, birth date or address of a person).
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from webapp import accounts

SESSION_COOKIE = "residents_session"
WRITE_LOCK_TIMEOUT_S = 15.0
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'"


@dataclass
class Session:
    user: str
    role: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    last_seen: float = field(default_factory=time.monotonic)


class SessionStore:
    """Logged-in sessions, in memory (a restart logs everyone out); idle ones expire."""

    def __init__(self, idle_minutes: int) -> None:
        self.idle_s = idle_minutes * 60
        self._by_token: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, account: accounts.Account) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._by_token[token] = Session(account.name, account.role)
        return token

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            sess = self._by_token.get(token)
            if sess is None:
                return None
            if time.monotonic() - sess.last_seen > self.idle_s:
                del self._by_token[token]
                return None
            sess.last_seen = time.monotonic()
            return sess

    def close(self, token: str | None) -> None:
        with self._lock:
            self._by_token.pop(token or "", None)


class LoginRequired(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class Forbidden(Exception):
    pass


def table(frame: pd.DataFrame, *, links: dict[str, str] | None = None) -> dict[str, Any]:
    """A frame as template data: headers and display strings; `links` maps a column to
    a URL prefix (the cell's value is appended, quoted)."""
    from warehouse.people import display

    links = links or {}
    rows = []
    for values in frame.itertuples(index=False):
        cells = []
        for col, v in zip(frame.columns, values):
            text = display(v)
            href = links[col] + urllib.parse.quote(text, safe="") if col in links and text else None
            cells.append({"text": text, "href": href})
        rows.append(cells)
    return {"columns": [str(c) for c in frame.columns], "rows": rows}


def create_app(settings: Any) -> FastAPI:
    """The web application for one warehouse (settings as loaded by the CLI)."""
    from warehouse import audit
    from warehouse.exceptions import WarehouseError

    app = FastAPI(title="居民一门式查询", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
    sessions = SessionStore(settings.web_session_idle_minutes)
    users_file = settings.resolved_web_users()
    app.state.settings, app.state.sessions = settings, sessions

    # ------------------------------------------------------------------ helpers
    def render(request: Request, name: str, sess: Session | None, status: int = 200, **context: Any) -> Response:
        context.update(request=request, me=sess, roles=accounts.ROLES, district=settings.district,
                       now=dt.datetime.now().strftime("%Y-%m-%d %H:%M"))
        return templates.TemplateResponse(request, name, context, status_code=status)

    def session_of(request: Request) -> Session:
        sess = sessions.get(request.cookies.get(SESSION_COOKIE))
        if sess is None:
            raise LoginRequired(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
        return sess

    def officer(request: Request) -> Session:
        sess = session_of(request)
        if sess.role != "officer":
            raise Forbidden()
        return sess

    async def form_of(request: Request, sess: Session | None) -> dict[str, str]:
        body = (await request.body()).decode("utf-8", "replace")
        form = {k: v[-1] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}
        if sess is not None and not secrets.compare_digest(form.get("csrf", ""), sess.csrf):
            raise Forbidden()
        return form

    def record(request: Request, sess: Session | None, action: str, *, actor: str | None = None,
               **kwargs: Any) -> None:
        audit.record(settings.warehouse, audit.AuditEntry(
            actor=actor or (sess.user if sess else "-"), actor_role=sess.role if sess else None, channel="web",
            action=action, client=request.client.host if request.client else None, **kwargs))

    def district() -> Any:
        from pipelines.normalize.address import DistrictContext

        d = settings.district
        return DistrictContext(province=d.province, city=d.city, county=d.county, county_code=d.county_code)

    @app.middleware("http")
    async def headers(request: Request, call_next):  # noqa: ANN001
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse("/login?next=" + urllib.parse.quote(exc.next_url, safe=""), status_code=303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        sess = sessions.get(request.cookies.get(SESSION_COOKIE))
        return render(request, "message.html", sess, 403, title="无权访问",
                      message="此页面显示居民身份信息，仅限工作人员账号；分析人员只能查看脱敏的概况页面。"
                      if sess and sess.role != "officer" else "请求无效（表单已过期），请返回重试。")

    @app.exception_handler(WarehouseError)
    async def warehouse_error(request: Request, exc: WarehouseError) -> Response:
        sess = sessions.get(request.cookies.get(SESSION_COOKIE))
        return render(request, "message.html", sess, 503, title="暂时无法完成", message=str(exc))

    # ------------------------------------------------------------------ login
    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/") -> Response:  # noqa: A002
        return render(request, "login.html", None, next=next, error=None)

    @app.post("/login")
    async def login(request: Request) -> Response:
        form = await form_of(request, None)
        name, target = form.get("user", "").strip(), form.get("next", "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"
        account = accounts.authenticate(users_file, name, form.get("password", ""))
        if account is None:
            record(request, None, "login_failed", actor=name or "-", outcome="refused", detail="账号或密码错误")
            return render(request, "login.html", None, 401, next=target, error="账号或密码错误")
        record(request, None, "login", actor=account.name, detail=accounts.ROLES[account.role])
        response = RedirectResponse(target if account.role == "officer" else "/overview", status_code=303)
        response.set_cookie(SESSION_COOKIE, sessions.open(account), httponly=True, samesite="strict",
                            max_age=settings.web_session_idle_minutes * 60 * 16)
        return response

    @app.post("/logout")
    async def logout(request: Request) -> Response:
        sess = session_of(request)
        await form_of(request, sess)
        sessions.close(request.cookies.get(SESSION_COOKIE))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    # ------------------------------------------------------------------ search
    @app.get("/", response_class=HTMLResponse)
    def home(request: Request, q: str = "", kind: str = "auto", reason: str = "") -> Response:
        sess = session_of(request)
        if sess.role != "officer":
            if q.strip():
                raise Forbidden()
            return RedirectResponse("/overview", status_code=303)
        from pipelines.search import SEARCH_KINDS, SearchTextError, parse_search
        from warehouse.people import search_persons

        result = error = key = None
        if q.strip():
            try:
                key = parse_search(q, kind, district=district())
            except SearchTextError as exc:
                error = str(exc)
            else:
                found = search_persons(settings.warehouse, key)
                record(request, sess, "lookup", target=key.describe(), reason=reason or None,
                       detail=f"找到 {len(found)} 人" + (f"：{'、'.join(found['人员编号'].head(20))}" if len(found) else ""))
                result = table(found, links={"人员编号": "/person/"})
        return render(request, "search.html", sess, q=q, kind=kind, kinds=SEARCH_KINDS, reason=reason,
                      result=result, error=error, key=key.describe() if key else None)

    # ------------------------------------------------------------------ resident page
    @app.get("/person/{person_id}", response_class=HTMLResponse)
    def person(request: Request, person_id: str, reason: str = "") -> Response:
        sess = officer(request)
        from warehouse.people import person_page

        page = person_page(settings.warehouse, person_id)
        if page is None or page.merged_into:
            record(request, sess, "view_person", target=person_id, reason=reason or None, outcome="failed",
                   detail=f"已合并到 {page.merged_into}" if page else "人员编号不存在")
            if page is not None:
                return RedirectResponse(f"/person/{page.merged_into}", status_code=303)
            return render(request, "message.html", sess, 404, title="找不到该人员",
                          message=f"人员编号 {person_id} 不存在（可能已被注销），请重新查找。")
        explain, explain_error = _explanations(settings, person_id)
        golden = dict(page.golden)
        record(request, sess, "view_person", target=person_id, reason=reason or None,
               detail=f"{golden.get('姓名', '')} {golden.get('公民身份号码', '')}；含匹配解释".strip())
        sections = [(s.title, table(f, links={"对方人员编号": "/person/", "户主人员编号": "/person/",
                                              "相关人员编号": "/person/"}), s.empty)
                    for s, f in page.sections]
        return render(request, "person.html", sess, page=page, sections=sections, explain=explain,
                      explain_error=explain_error, csrf=sess.csrf)

    @app.get("/explain", response_class=HTMLResponse)
    def explain_pair(request: Request, a: str, b: str) -> Response:
        sess = officer(request)
        from resolution import explain_person

        try:
            frames = explain_person(settings, a, b)
        except (ValueError, WarehouseError) as exc:
            record(request, sess, "explain", target=f"{a} ↔ {b}", outcome="failed", detail=str(exc)[:300])
            return render(request, "message.html", sess, 404, title="无法解释", message=str(exc))
        record(request, sess, "explain", target=f"{a} ↔ {b}", detail=f"{len(frames)} 张表")
        return render(request, "explain.html", sess, a=a, b=b,
                      explain=[(title, table(frame)) for title, frame in frames])

    # ------------------------------------------------------------------ review queue
    @app.get("/review", response_class=HTMLResponse)
    def review(request: Request, done: str = "") -> Response:
        sess = officer(request)
        from schemas.person import SOURCE_SYSTEM_LABELS_ZH
        from warehouse.people import REVIEW_REASON_ZH, display, review_queue

        queue = review_queue(settings.warehouse)
        record(request, sess, "review_view", target="待复核列表", detail=f"{len(queue)} 对记录")
        pairs = []
        for r in queue.to_dict("records"):
            side = {k: display(v) for k, v in r.items()}
            for s in ("a", "b"):
                side[f"system_{s}"] = SOURCE_SYSTEM_LABELS_ZH.get(r[f"system_{s}"], side[f"system_{s}"])
            side["match_probability"] = f"{float(r['match_probability']):.1%}" if pd.notna(r["match_probability"]) else ""
            side["reason_zh"] = REVIEW_REASON_ZH.get(r["reason"], str(r["reason"]).replace("refused:", "被约束拒绝："))
            pairs.append(side)
        return render(request, "review.html", sess, pairs=pairs, csrf=sess.csrf, done=done)

    @app.post("/review/decide", response_class=HTMLResponse)
    async def review_decide(request: Request) -> Response:
        sess = officer(request)
        form = await form_of(request, sess)
        a, b, choice = form.get("a", ""), form.get("b", ""), form.get("decision", "")
        reason, force = form.get("reason", "").strip(), form.get("force") == "1"
        if choice not in ("yes", "no") or not reason:
            return render(request, "message.html", sess, 400, title="请补全决定",
                          message="请选择“是”或“否”，并填写理由。", back="/review")
        result = _decide(request, sess, "review_decide", "link" if choice == "yes" else "unlink", a, b, reason, force)
        if isinstance(result, Response):
            return result
        return RedirectResponse("/review?done=" + urllib.parse.quote(result, safe=""), status_code=303)

    # ------------------------------------------------------------------ link / unlink
    @app.get("/link", response_class=HTMLResponse)
    def link_page(request: Request, a: str = "", b: str = "", done: str = "") -> Response:
        sess = officer(request)
        return render(request, "link.html", sess, a=a, b=b, csrf=sess.csrf, done=done)

    @app.post("/link", response_class=HTMLResponse)
    async def link_submit(request: Request) -> Response:
        sess = officer(request)
        form = await form_of(request, sess)
        a, b, what = form.get("a", "").strip(), form.get("b", "").strip(), form.get("what", "")
        reason, force = form.get("reason", "").strip(), form.get("force") == "1"
        if what not in ("link", "unlink") or not a or not b or not reason:
            return render(request, "message.html", sess, 400, title="请补全决定",
                          message="请填写两个人员编号或记录编号，选择“是同一人”或“不是同一人”，并填写理由。", back="/link")
        result = _decide(request, sess, what, what, a, b, reason, force)
        if isinstance(result, Response):
            return result
        return RedirectResponse("/link?done=" + urllib.parse.quote(result, safe=""), status_code=303)

    def _decide(request: Request, sess: Session, action: str, what: str, a: str, b: str, reason: str,
                force: bool) -> str | Response:
        """Store a link/unlink decision the way `residents link/unlink` do; returns the
        message to show, or the page explaining a refusal."""
        from flows import apply_decisions
        from warehouse.decisions import DecisionConflictError, ForceWithoutReasonError, UnknownReferenceError
        from warehouse.decisions import link_persons, unlink

        fn = link_persons if what == "link" else unlink
        quick = settings.model_copy(update={"lock_timeout_s": min(settings.lock_timeout_s, WRITE_LOCK_TIMEOUT_S)})
        verdict = "是同一人" if what == "link" else "不是同一人"
        target = f"{a} ↔ {b}"
        try:
            summary = apply_decisions(quick, lambda con: fn(con, a, b, decided_by=sess.user, reason=reason,
                                                            channel="web", force=force), flow_name="decision")
        except (DecisionConflictError, ForceWithoutReasonError, UnknownReferenceError) as exc:
            record(request, sess, action, target=target, reason=reason, outcome="refused",
                   detail=f"{verdict}；{' '.join(str(exc).split())[:500]}")
            return render(request, "message.html", sess, 409, title="决定未保存", message=str(exc),
                          back="/review" if action == "review_decide" else f"/link?a={a}&b={b}",
                          conflict=isinstance(exc, DecisionConflictError))
        except WarehouseError as exc:
            record(request, sess, action, target=target, reason=reason, outcome="failed",
                   detail=f"{verdict}；{' '.join(str(exc).split())[:500]}")
            raise
        message = f"已记录：{a} 与 {b} {verdict}（人员数 {summary.persons_before} → {summary.persons_after}）"
        record(request, sess, action, target=target, reason=reason,
               detail=f"{verdict}" + ("，推翻此前的决定" if force else "") +
                      f"；人员数 {summary.persons_before} → {summary.persons_after}")
        return message

    # ------------------------------------------------------------------ analysts and audit
    @app.get("/overview", response_class=HTMLResponse)
    def overview(request: Request) -> Response:
        sess = session_of(request)
        from warehouse.people import district_overview

        return render(request, "overview.html", sess,
                      sections=[(title, table(frame)) for title, frame in district_overview(settings.warehouse)])

    @app.get("/audit", response_class=HTMLResponse)
    def audit_page(request: Request, actor: str = "", action: str = "", target: str = "") -> Response:
        sess = officer(request)
        columns, rows = audit.list_entries(settings.warehouse, actor=actor or None,
                                           action=action if action in audit.ACTION_LABELS_ZH else None,
                                           target=target or None, limit=200)
        return render(request, "audit.html", sess, actions=audit.ACTION_LABELS_ZH, actor=actor, action=action,
                      target=target, result=table(pd.DataFrame(rows, columns=columns)))

    return app


def _explanations(settings: Any, person_id: str) -> tuple[list[tuple[str, dict[str, Any]]], str | None]:
    """The `residents explain` tables of a person, or the reason there are none."""
    from resolution import explain_person
    from warehouse.exceptions import WarehouseError

    try:
        return [(title, table(frame)) for title, frame in explain_person(settings, person_id)], None
    except (ValueError, WarehouseError) as exc:
        return [], str(exc)


def serve(settings: Any, *, host: str, port: int, log=print) -> None:  # noqa: ANN001
    """Run the page until interrupted (uvicorn, one process)."""
    import uvicorn

    log(f"居民一门式查询页面：http://{host}:{port}/ （仓库 {settings.warehouse}；按 Ctrl+C 停止）")
    if host not in ("127.0.0.1", "localhost", "::1"):
        log(f"注意：监听 {host}，其他电脑可以访问此页面；页面本身不加密（HTTP），请只在内网使用，或置于 HTTPS 反向代理之后。")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="warning", access_log=False)
