"""`residents`: the command line of the resident data hub (wiring only)."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(help="居民数据中心 Resident data hub: 导入各部门导出、解析人员与地址、装载 DuckDB 仓库。",
                  no_args_is_help=True, add_completion=False)
console = Console()
err_console = Console(stderr=True)

ConfigOpt = typer.Option(None, "--config", "-c", help="TOML 配置文件（默认 ./residents.toml 或 $RESIDENTS_CONFIG）")
InboxOpt = typer.Option(None, "--inbox", help="收件箱目录（每个来源系统一个子目录）")
WarehouseOpt = typer.Option(None, "--warehouse", "-w", help="DuckDB 仓库文件")
FpUrlOpt = typer.Option(None, "--family-planning-url", help="计生数据库 SQLAlchemy 地址（默认 inbox/family_planning/*.sqlite）")


#: exit codes a scheduler can act on (README "Exit codes")
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUSY, EXIT_PARTIAL = 0, 1, 2, 3, 4

_state = {"debug": False}


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="出错时显示完整的 Python 回溯（供开发人员排查）")) -> None:
    _state["debug"] = debug


def _exit_code(exc: BaseException) -> int:
    """Usage and configuration errors 2, another sync holding the warehouse 3, the rest 1."""
    from connectors.exceptions import InboxNotFoundError
    from settings import ConfigError
    from warehouse.exceptions import WarehouseBusyError, WarehouseNotWritableError

    if isinstance(exc, (ConfigError, InboxNotFoundError, WarehouseNotWritableError, UsageProblem)):
        return EXIT_USAGE
    if isinstance(exc, WarehouseBusyError):
        return EXIT_BUSY
    return EXIT_FAILED


class UsageProblem(ValueError):
    """A command-line value that cannot be used (structured: option, value, why)."""

    def __init__(self, option: str, value: str, why: str) -> None:
        self.option, self.value, self.why = option, value, why
        super().__init__(f"参数错误：{option} {value!r}：{why}")


def _say_error(text: str) -> None:
    """One line on stderr (no wrapping, no markup: messages may contain brackets)."""
    err_console.print(text, style="red", markup=False, soft_wrap=True, highlight=False)


def _guarded(fn):
    """Every command: an error ends it with one clear line and its exit code; the
    traceback only with --debug."""
    import functools

    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - turned into a message and an exit code
            import click

            if isinstance(exc, click.exceptions.ClickException) or _state["debug"]:
                raise
            code = _exit_code(exc)
            text = " ".join(str(exc).split()) or type(exc).__name__
            if code == EXIT_FAILED and not _is_ours(exc):
                text = f"运行失败：{type(exc).__name__}: {text}（加 --debug 查看详细信息）"
            _say_error(text)
            raise typer.Exit(code) from None

    return run


def _is_ours(exc: BaseException) -> bool:
    """Errors whose message was built for officers (structured errors of the packages)."""
    from connectors.exceptions import ConnectorError
    from warehouse.exceptions import WarehouseError

    return isinstance(exc, (ConnectorError, WarehouseError))


def _settings(config: Optional[Path], **overrides):
    from settings import load_settings
    from warehouse import store

    settings = load_settings(config, **overrides)
    # owner-only files and the warehouse key (no flows import: `query` must start quickly)
    store.set_owner_only(settings.owner_only_files)
    store.set_key(settings.warehouse, settings.resolved_warehouse_key())
    return settings


def _exit_for(summary) -> None:
    """4 when the sync published but some exports or sources could not be loaded, or the
    shared lakehouse could not be brought up to date (retried by the next run)."""
    if any(e.status in ("failed", "problem") for e in summary.exports) or summary.lake_failed:
        raise typer.Exit(EXIT_PARTIAL)


def _cell(v) -> str:
    """A table cell: missing values shown empty, not as nan/None/NaT (no pandas import:
    `query` and `status` must start in well under a second)."""
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if v != v else f"{v:.4g}"
    if type(v).__name__ in ("NaTType", "NAType"):
        return ""
    if hasattr(v, "strftime") and getattr(v, "hour", 0) == 0 and getattr(v, "minute", 0) == 0:
        return v.strftime("%Y-%m-%d")
    return str(v)


def _print_summary(summary) -> None:
    from schemas.person import SOURCE_SYSTEM_LABELS_ZH

    failed = any(e.status in ("failed", "problem") for e in summary.exports)
    status = {"succeeded": "已发布，部分文件未装载" if failed else "成功", "unchanged": "无新数据",
              "failed": "失败", "running": "进行中"}.get(summary.status, summary.status)
    kind = {"backfill": "补录", "demo": "演示同步"}.get(getattr(summary, "flow", ""), "同步")
    table = Table(title=f"{kind} {summary.run_id}（{status}）")
    for col in ("来源", "文件", "读取行", "接收行", "拒收行", "不可用值", "失败文件"):
        table.add_column(col, justify="right" if col not in ("来源",) else "left")
    for src, s in sorted(summary.per_source().items()):
        table.add_row(SOURCE_SYSTEM_LABELS_ZH.get(src, src), str(s["files"]), str(s["rows_read"]), str(s["rows_accepted"]), str(s["rows_rejected"]),
                      str(s["values_rejected"]), str(s["failed"]))
    console.print(table)
    console.print(f"人员：{summary.persons_before} → {summary.persons_after}（新建 {summary.persons_created}）")
    from warehouse.reports import ALERT_KINDS_ZH

    alerts = "，".join(f"{ALERT_KINDS_ZH.get(k, k)} {v} 条" for k, v in sorted(summary.alerts.items())) or "无"
    console.print(f"预警：{alerts}")
    if getattr(summary, "district", None):
        console.print(escape(f"辖区：{summary.district}" + (f"；{summary.district_note}" if summary.district_note
                                                            else "")), soft_wrap=True)
    if getattr(summary, "engine", "duckdb") != "duckdb":
        console.print(escape(f"解析引擎：{summary.engine}（人员解析：{summary.resolution_mode}；"
                             f"构建汇总：{getattr(summary, 'build_engine', 'duckdb')}）"), soft_wrap=True)
    if getattr(summary, "district_warning", None):
        err_console.print(f"[yellow]警告[/yellow] {escape(summary.district_warning)}", soft_wrap=True)
    for e in summary.exports:
        if e.status in ("failed", "problem"):
            err_console.print(f"[yellow]未装载[/yellow] {escape(e.source_object)}: {escape(e.message or '')}",
                              soft_wrap=True)
    if summary.lake:
        from warehouse.lake import LakeOutcome

        line = LakeOutcome(**summary.lake).line_zh()
        (err_console if summary.lake_failed else console).print(line, style="yellow" if summary.lake_failed else None,
                                                                markup=False, soft_wrap=True, highlight=False)


def _prefect_server_configured() -> bool:
    """A sync typed at the shell is a Prefect flow run only when a Prefect server is
    configured (`PREFECT_API_URL`, e.g. the one `residents serve` uses): without one,
    Prefect would start a temporary server for every command (~10 s, and an orphan
    server when the process is killed). The same stages then run as plain functions and
    the run is recorded in quality.run all the same."""
    return bool(os.environ.get("PREFECT_API_URL"))


def _pass_by_reference(family_planning_url: Optional[str]) -> None:
    """A URL given on the command line reaches the flow (run in this process) through the
    environment, never as a flow parameter: parameters are stored in the Prefect database."""
    if family_planning_url:
        os.environ["RESIDENTS_FAMILY_PLANNING_URL"] = family_planning_url


def _run_flow(fn, **kwargs):
    """Run a Prefect flow (on the server in PREFECT_API_URL; callers check that one is set)."""
    return fn(**kwargs)


@app.command()
def generate(households: int = typer.Option(1000, "--households", "-n", help="户数"),
             seed: int = typer.Option(1, "--seed", help="随机种子"),
             out: Path = typer.Option(Path("inbox"), "--out", "-o", help="输出目录（收件箱）；真值写入 <out>/_truth/"),
             noise: str = typer.Option("realistic", "--noise", help="噪声水平：clean / realistic / hard"),
             days: int = typer.Option(10, "--days", help="生成多少天的每日导出"),
             district: str = typer.Option("220402", "--district",
                                          help="辖区的县级六位区划代码（全国任一区县，如 150203；默认为演示辖区）")) -> None:
    """生成一个合成辖区的完整收件箱（含各种真实数据问题）和真值文件。"""
    from synth import generate as gen
    from synth.places import district_for

    try:
        place = district_for(district.strip())
    except ValueError as exc:
        raise UsageProblem("--district", district, str(exc)) from None
    summary = gen(out, households=households, seed=seed, noise=noise, days=days, district=place)
    console.print(f"已生成：{summary}")


@app.command()
def sync(inbox: Optional[Path] = InboxOpt, warehouse: Optional[Path] = WarehouseOpt,
         family_planning_url: Optional[str] = FpUrlOpt, config: Optional[Path] = ConfigOpt,
         full: bool = typer.Option(False, "--full", help="全量重建：重新解析全部人员、重建全部核心表（默认只处理变化的部分）"),
         engine: Optional[str] = typer.Option(None, "--engine", help="人员解析引擎：duckdb（默认，本机）或 spark（记录对的生成与打分在 Spark 上运行）"),
         spark_master: Optional[str] = typer.Option(None, "--spark-master", help="engine 为 spark 时的 Spark master，如 local[2]、spark://主机:7077（默认 local[2]）"),
         ) -> None:
    """每晚同步：装载所有尚未装载的导出，只重算受影响的人员和地址（nightly_sync 流程）。

    配置了 Prefect 服务器（PREFECT_API_URL）时作为该服务器上的流程运行；否则直接运行各阶段，不启动临时服务器。"""
    from warehouse.exceptions import WarehouseBusyError

    settings = _settings(config, inbox=inbox, warehouse=warehouse, family_planning_url=family_planning_url,
                         engine=engine, spark_master=spark_master)
    try:
        if _prefect_server_configured():
            from flows import nightly_sync

            _pass_by_reference(family_planning_url)
            summary = _summary_from_json(_run_flow(
                nightly_sync, inbox=str(settings.inbox), warehouse=str(settings.warehouse),
                config_file=str(config) if config else None, full=full, engine=engine, spark_master=spark_master))
        else:
            from flows import Selection, sync as run

            summary = run(settings, selection=Selection(full=full))
    except WarehouseBusyError as exc:
        _say_error(str(exc))
        raise typer.Exit(EXIT_BUSY) from None
    _print_summary(summary)
    _exit_for(summary)


@app.command()
def pull(inbox: Optional[Path] = InboxOpt, config: Optional[Path] = ConfigOpt) -> None:
    """从配置的各文件来源（SFTP、本地目录）取回新文件到收件箱（每晚同步的第一步）；已取回的不再重复取。"""
    from flows import pull_task

    settings = _settings(config, inbox=inbox)
    if not settings.file_sources():
        console.print("未配置文件来源（[sources.<名称>] url = \"sftp://…\"）；收件箱中的文件照常装载。")
        return
    result = pull_task.fn(settings)
    table = Table(title=f"拉取到 {settings.inbox}")
    for col in ("来源", "地址", "新取得", "续传", "已有", "仍在写入", "状态"):
        table.add_column(col)
    for s in result.sources:
        table.add_row(s.source, s.url, str(len(s.fetched)), str(len(s.resumed)), str(s.already),
                      str(len(s.still_writing)), "失败" if s.error else "成功")
    console.print(table)
    for s in result.sources:
        for name in s.still_writing:
            console.print(f"[yellow]仍在写入，下次再取[/yellow] {s.source}: {name}")
        if s.error:
            err_console.print(f"[red]{s.error}[/red]")
    if result.problems:
        raise typer.Exit(1)


def _summary_from_json(d: dict):
    from flows import ExportReport, SyncSummary

    d = dict(d)
    d.pop("per_source", None)
    d["exports"] = [ExportReport(**e) for e in d.get("exports", [])]
    return SyncSummary(**d)


@app.command()
def backfill(source: str = typer.Argument(..., help="来源系统：civil_affairs / low_income / floating_population / family_planning，或映射文件声明的部门"),
             since: str = typer.Option(..., "--since", help="起始导出日期（含）：YYYY-MM-DD，或月份 YYYY-MM（该月第一天）"),
             until: str = typer.Option(..., "--until", help="截止导出日期（含）：YYYY-MM-DD，或月份 YYYY-MM（该月最后一天）"),
             inbox: Optional[Path] = InboxOpt, warehouse: Optional[Path] = WarehouseOpt,
             family_planning_url: Optional[str] = FpUrlOpt, config: Optional[Path] = ConfigOpt,
             prefect: bool = typer.Option(True, "--prefect/--no-prefect", help="配置了 Prefect 服务器（PREFECT_API_URL）时作为该服务器上的流程运行（默认）")) -> None:
    """补录：重新装载某来源在日期范围内的导出（可重复执行，结果相同）。"""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from flows import Selection, backfill as backfill_flow, sync as run
    from schemas.mapping import source_systems

    since, until = _date_range(since, until)
    settings = _settings(config, inbox=inbox, warehouse=warehouse, family_planning_url=family_planning_url)
    if source not in source_systems():  # after the settings: their mappings_dir may declare it
        raise UsageProblem("SOURCE", source, f"未知来源系统；可选：{', '.join(source_systems())}")
    if prefect and _prefect_server_configured():
        _pass_by_reference(family_planning_url)
        result = _run_flow(backfill_flow, source=source, since=since, until=until,
                           inbox=str(settings.inbox), warehouse=str(settings.warehouse),
                           config_file=str(config) if config else None)
        summary = _summary_from_json(result)
        _print_summary(summary)
        _exit_for(summary)
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        bar = progress.add_task("补录", total=None)

        def on_progress(name: str, i: int, total: int) -> None:
            progress.update(bar, description=f"补录 {name}", completed=i - 1, total=total)

        summary = run(settings, flow_name="backfill", progress=on_progress,
                           selection=Selection(sources=(source,), since=since, until=until, force=True))
        progress.update(bar, completed=progress.tasks[0].total or 0)
    _print_summary(summary)
    if not summary.exports:
        console.print(f"提示：{source} 在 {since} 至 {until} 之间没有导出，未装载任何文件。")
    _exit_for(summary)


def _date_range(since: str, until: str) -> tuple[dt.date, dt.date]:
    """--since/--until as dates: a day (2026-05-01, 20260501) or a month (2026-05, 202605:
    its first day for --since, its last day for --until); since must not be after until."""
    import calendar

    from connectors.discovery import parse_file_date

    def parse(option: str, text: str, end: bool) -> dt.date:
        try:
            found = parse_file_date(text.strip())
        except ValueError:
            found = None
        if found is None or found.text != text.strip():
            raise UsageProblem(option, text, "应为日期 YYYY-MM-DD 或月份 YYYY-MM")
        if end and len(found.period) == 7:
            return found.date.replace(day=calendar.monthrange(found.date.year, found.date.month)[1])
        return found.date

    first, last = parse("--since", since, False), parse("--until", until, True)
    if first > last:
        raise UsageProblem("--since", since, f"起始日期 {first} 晚于截止日期 {last}")
    return first, last


@app.command()
def demo(out: Path = typer.Option(Path("demo_output"), "--out", help="演示输出目录"),
         households: int = typer.Option(300, "--households", "-n", help="户数"),
         seed: int = typer.Option(20261121, "--seed"),
         district: str = typer.Option("220402", "--district", help="样例辖区的县级六位区划代码（全国任一区县）")) -> None:
    """演示：生成一个样例辖区并运行每晚同步，无需服务器和配置（辖区由数据推断）。"""
    from synth import generate as gen
    from synth.places import district_for

    try:
        place = district_for(district.strip())
    except ValueError as exc:
        raise UsageProblem("--district", district, str(exc)) from None

    from flows import nightly_sync

    inbox = out / "inbox"
    wh = out / "warehouse.duckdb"
    if not (inbox / "_truth").exists():
        console.print(f"生成样例辖区（{households} 户）→ {inbox}")
        gen(inbox, households=households, seed=seed, noise="realistic", district=place)
    console.print(f"运行每晚同步 → {wh}")
    if _prefect_server_configured():
        _print_summary(_summary_from_json(_run_flow(nightly_sync, inbox=str(inbox), warehouse=str(wh))))
    else:
        from flows import sync as run
        from settings import load_settings

        summary = run(load_settings(inbox=inbox, warehouse=wh), flow_name="demo")
        _print_summary(summary)
    console.print(f"\n查询示例：residents query -w {wh} \"SELECT alert_kind, count(*) FROM mart.alerts GROUP BY 1\"")


@app.command()
def status(warehouse: Optional[Path] = WarehouseOpt, config: Optional[Path] = ConfigOpt,
           limit: int = typer.Option(10, "--limit", help="显示最近多少次运行")) -> None:
    """显示装载台账和最近的运行。"""
    from warehouse.queries import district_overview, ledger_overview, recent_runs, recent_stage_times

    from warehouse.exceptions import WarehouseError

    settings = _settings(config, warehouse=warehouse)
    try:
        _print_rows("最近的运行", *recent_runs(settings.warehouse, limit))
        _print_rows("各阶段耗时（秒）", *recent_stage_times(settings.warehouse, limit))
        _print_rows("装载台账（按来源）", *ledger_overview(settings.warehouse))
        _print_rows("辖区", *district_overview(settings.warehouse))
    except WarehouseError as exc:
        _say_error(str(exc))
        raise typer.Exit(1) from None


@app.command("lake-status")
def lake_status(config: Optional[Path] = ConfigOpt,
                limit: int = typer.Option(20, "--limit", help="显示最近多少个快照")) -> None:
    """列出共享数据湖（[lakehouse]）的快照：编号、时间、变化的表；分析人员用 AT (VERSION => 编号) 查询历史状态。"""
    from warehouse.exceptions import WarehouseError
    from warehouse.lake import LakeTarget, snapshots

    settings = _settings(config)
    if settings.lakehouse is None:
        raise UsageProblem("[lakehouse]", "", "未配置共享数据湖（[lakehouse] catalog = \"postgres:…\"，data_path = \"…\"）")
    try:
        snaps = snapshots(LakeTarget.from_config(settings.lakehouse, os.environ))
    except WarehouseError as exc:
        _say_error(str(exc))
        raise typer.Exit(1) from None
    rows = []
    for s in snaps[-limit:]:
        changes = s["changes"] or {}
        changed = sorted({t for k, v in changes.items() if k.startswith("tables_created") for t in v})
        rows.append((s["snapshot"], f"{s['time']:%Y-%m-%d %H:%M:%S %Z}", len(changed),
                     "、".join(changed[:6]) + ("…" if len(changed) > 6 else ""), s["message"] or ""))
    _print_rows(f"数据湖快照 {settings.lakehouse.catalog}", ["快照", "时间", "重写的表数", "重写的表", "说明"], rows)


@app.command()
def query(sql: str = typer.Argument(..., help="只读 SQL"), warehouse: Optional[Path] = WarehouseOpt,
          config: Optional[Path] = ConfigOpt,
          fmt: str = typer.Option("table", "--format", "-f", help="输出格式：table / csv"),
          max_rows: int = typer.Option(100, "--max-rows", help="表格最多显示行数"),
          as_of: Optional[str] = typer.Option(
              None, "--as-of", help="按某日（或某时刻）的仓库状态查询：该时刻及之前最后一次同步后的快照，如 2026-10-01"),
          lake: bool = typer.Option(False, "--lake", help="在共享数据湖（[lakehouse]）上查询；与 --as-of 或 --lake-version 一起查询历史快照"),
          lake_version: Optional[int] = typer.Option(None, "--lake-version", help="数据湖快照编号（见 residents lake-status）"),
          reason: str = typer.Option("", "--reason", help="查询事由（记入审计日志）")
          ) -> None:
    """在仓库上执行一条只读 SQL（表格或 CSV 输出；每次查询记入审计日志）。

    只允许一条 SELECT / WITH / DESCRIBE / SHOW / EXPLAIN / SUMMARIZE 语句；不能读写文件、附加数据库、安装扩展或修改设置。"""
    from warehouse.exceptions import WarehouseError
    from warehouse.queries import run_user_query

    settings = _settings(config, warehouse=warehouse)
    if lake_version is not None and not lake:
        raise UsageProblem("--lake-version", str(lake_version), "只用于 --lake")
    try:
        target = settings.warehouse
        if lake:
            run = lambda: _lake_query(settings, sql, as_of, lake_version)   # noqa: E731
        else:
            if as_of:
                from zoneinfo import ZoneInfo

                from warehouse import store
                from warehouse.history import parse_as_of, snapshot_as_of

                snap = snapshot_as_of(settings.warehouse, parse_as_of(as_of, settings.schedule_timezone))
                target = snap.path
                store.set_key(target, store.key_for(settings.warehouse))   # a snapshot has the warehouse's key
                err_console.print(f"按 {as_of} 的状态查询：使用 "
                                  f"{snap.published_at.astimezone(ZoneInfo(settings.schedule_timezone)):%Y-%m-%d %H:%M} "
                                  f"发布的仓库快照")
            run = lambda: run_user_query(target, sql)   # noqa: E731
        columns, rows = _audited(settings, "query", sql, reason, run, lambda out: f"{len(out[1])} 行")
    except WarehouseError as exc:
        _say_error(str(exc))
        raise typer.Exit(1) from None
    if fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows([_cell(v) for v in row] for row in rows)
        return
    _print_rows(None, columns, rows[:max_rows])
    if len(rows) > max_rows:
        console.print(f"（共 {len(rows)} 行，仅显示前 {max_rows} 行；用 --format csv 导出全部）")


def _lake_query(settings, sql: str, as_of: str | None, version: int | None):
    """`query --lake`: the statement on the shared lake, at the current snapshot, a numbered
    one, or the last one at or before `--as-of` (district time zone); says which on stderr."""
    from zoneinfo import ZoneInfo

    from warehouse import lake as lakehouse
    from warehouse.history import parse_as_of
    from warehouse.queries import check_user_sql

    check_user_sql(sql)     # the same door: one read-only statement (the lake is also attached read-only)
    if settings.lakehouse is None:
        raise UsageProblem("--lake", "", "未配置共享数据湖（[lakehouse] catalog / data_path）")
    if as_of and version is not None:
        raise UsageProblem("--as-of", as_of, "不能与 --lake-version 同时使用")
    moment = parse_as_of(as_of, settings.schedule_timezone) if as_of else None
    columns, rows, snap = lakehouse.query(lakehouse.LakeTarget.from_config(settings.lakehouse, os.environ), sql,
                                          snapshot_version=version, snapshot_time=moment)
    err_console.print(f"数据湖快照 {snap['snapshot']}（"
                      f"{snap['time'].astimezone(ZoneInfo(settings.schedule_timezone)):%Y-%m-%d %H:%M:%S} 发布）",
                      markup=False, highlight=False)
    return columns, rows


def _print_rows(title: str | None, columns: list[str], rows: list[tuple]) -> None:
    t = Table(title=title)
    for col in columns:
        t.add_column(str(col))
    for row in rows:
        t.add_row(*[_cell(v) for v in row])
    console.print(t)


@app.command()
def serve(config: Optional[Path] = ConfigOpt, inbox: Optional[Path] = InboxOpt,
          warehouse: Optional[Path] = WarehouseOpt,
          cron: Optional[str] = typer.Option(None, "--cron", help="cron 表达式（默认配置中的 0 2 * * *）"),
          timezone: Optional[str] = typer.Option(None, "--timezone", help="时区（默认 Asia/Shanghai）"),
          start_server: bool = typer.Option(True, "--start-server/--no-start-server",
                                            help="未设置 PREFECT_API_URL 时自动启动本地 Prefect 服务器")) -> None:
    """按计划运行每晚同步（Prefect 部署）。需要 Prefect 服务器：使用 PREFECT_API_URL，或自动启动本地服务器。"""
    from serving import ServeError, use_project_home

    settings = _settings(config, inbox=inbox, warehouse=warehouse, schedule_cron=cron, schedule_timezone=timezone)
    if not os.environ.get("PREFECT_API_URL"):    # our own server: its state under the project's Prefect home
        use_project_home(settings)
    os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"  # each run that fires is logged on this console
    import signal

    from flows import serve_nightly

    def _stop(_signum, _frame):   # `kill` / systemd stop: clean up as Ctrl+C does
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _stop)

    try:
        serve_nightly(settings, config_file=str(config) if config else None, start_server=start_server,
                      console=console)
    except ServeError as exc:
        _say_error(str(exc))
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@app.command()
def link(a: str = typer.Argument(..., help="人员编号 P… 或记录编号（文件名|位置|角色）"),
         b: str = typer.Argument(..., help="另一个人员编号或记录编号"),
         by: str = typer.Option(..., "--by", help="决定人（姓名或工号）"),
         reason: str = typer.Option("", "--reason", help="理由"),
         force: bool = typer.Option(False, "--force", help="推翻此前“不是同一人”的决定（须用 --reason 说明理由）"),
         warehouse: Optional[Path] = WarehouseOpt, config: Optional[Path] = ConfigOpt) -> None:
    """人工确认：两者是同一人（必须关联）。决定保存在仓库中，以后每次运行都执行。"""
    from warehouse.decisions import link_persons

    settings = _settings(config, warehouse=warehouse)
    summary = _decide(settings, lambda con: link_persons(con, a, b, decided_by=by, reason=reason or None,
                                                         force=force),
                      audit=("link", f"{a} ↔ {b}", reason, f"决定人 {by}" + ("，推翻此前的决定" if force else "")))
    console.print(f"已记录：{a} 与 {b} 是同一人。人员数 {summary.persons_before} → {summary.persons_after}")
    _lake_line(summary)


@app.command()
def unlink(a: str = typer.Argument(..., help="人员编号 P… 或记录编号"),
           b: str = typer.Argument(..., help="不应与 a 合并的人员编号或记录编号"),
           by: str = typer.Option(..., "--by", help="决定人"),
           reason: str = typer.Option("", "--reason", help="理由"),
           force: bool = typer.Option(False, "--force", help="推翻此前“是同一人”的决定（须用 --reason 说明理由）"),
           warehouse: Optional[Path] = WarehouseOpt, config: Optional[Path] = ConfigOpt) -> None:
    """人工确认：两者不是同一人（不得关联）。a、b 为同一人员的两条记录时，会把它们拆开；
    拆出的记录在此前合并时用过的人员编号会恢复。"""
    from warehouse.decisions import unlink as unlink_refs

    settings = _settings(config, warehouse=warehouse)
    summary = _decide(settings, lambda con: unlink_refs(con, a, b, decided_by=by, reason=reason or None,
                                                        force=force),
                      audit=("unlink", f"{a} ↔ {b}", reason, f"决定人 {by}" + ("，推翻此前的决定" if force else "")))
    console.print(f"已记录：{a} 与 {b} 不是同一人。人员数 {summary.persons_before} → {summary.persons_after}")
    _lake_line(summary)


def _lake_line(summary) -> None:
    """After a decision was published: the shared lake's outcome; exit 4 when it failed."""
    if summary.lake:
        from warehouse.lake import LakeOutcome

        (err_console if summary.lake_failed else console).print(
            LakeOutcome(**summary.lake).line_zh(), markup=False, soft_wrap=True, highlight=False)
    if summary.lake_failed:
        raise typer.Exit(EXIT_PARTIAL)


def _decide(settings, record, *, audit: tuple[str, str, str, str] | None = None):
    """Apply decisions; `audit` = (action, target, reason, detail) recorded with the outcome."""
    from warehouse.standby import prefetch_for_write

    prefetch_for_write(settings.warehouse)  # a decision reads its working copy: start while the imports run
    from flows import apply_decisions
    from warehouse.exceptions import WarehouseError

    try:
        if audit is None:
            return apply_decisions(settings, record)
        action, target, reason, detail = audit
        return _audited(settings, action, target, reason, lambda: apply_decisions(settings, record),
                        lambda s: f"{detail}；人员数 {s.persons_before} → {s.persons_after}", before=detail)
    except WarehouseError as exc:
        _say_error(str(exc))
        raise typer.Exit(1) from None


def _audited(settings, action: str, target: str, reason: str, run, describe=lambda result: None, *,
             before: str | None = None):
    """Run `run()` and record it in the audit log (warehouse.audit) with its outcome:
    done (with `describe(result)`), refused (a decision conflict or bad reference) or
    failed. The entry is written before the result is shown; when it cannot be written,
    AuditUnavailableError ends the command and nothing is shown."""
    from warehouse import audit
    from warehouse.exceptions import DecisionConflictError, ForceWithoutReasonError, UnknownReferenceError

    try:
        result = run()
    except Exception as exc:
        from warehouse.exceptions import QueryRefusedError

        refused = isinstance(exc, (DecisionConflictError, ForceWithoutReasonError, UnknownReferenceError,
                                   QueryRefusedError))
        text = " ".join(str(exc).split())[:500]
        # nothing was shown or changed: an unwritable journal must not hide the real error
        with contextlib.suppress(audit.AuditUnavailableError):
            audit.record(settings.warehouse, audit.cli_entry(
                action, target=target, reason=reason or None, outcome="refused" if refused else "failed",
                detail="；".join(t for t in (before, text) if t)))
        raise
    audit.record(settings.warehouse, audit.cli_entry(action, target=target, reason=reason or None,
                                                     detail=describe(result)))
    return result


@app.command()
def explain(a: str = typer.Argument(..., help="人员编号 P…，或记录编号"),
            b: Optional[str] = typer.Argument(None, help="第二条记录编号（解释这一对）"),
            reason: str = typer.Option("", "--reason", help="查看事由（记入审计日志）"),
            warehouse: Optional[Path] = WarehouseOpt, config: Optional[Path] = ConfigOpt) -> None:
    """解释匹配：某人员的每条记录如何关联，或两条记录各项比对的结果和权重（记入审计日志）。"""
    from warehouse.exceptions import WarehouseError
    from resolution import explain_person

    settings = _settings(config, warehouse=warehouse)
    try:
        frames = _audited(settings, "explain", " ↔ ".join(r for r in (a, b) if r), reason,
                          lambda: explain_person(settings, a, b),
                          lambda out: f"{len(out)} 张表")
        for title, frame in frames:
            t = Table(title=title)
            for col in frame.columns:
                t.add_column(str(col))
            for row in frame.itertuples(index=False):
                t.add_row(*[_cell(v) for v in row])
            console.print(t)
    except WarehouseError as exc:
        _say_error(str(exc))
        raise typer.Exit(1) from None


@app.command()
def lookup(text: str = typer.Argument(..., help="身份证号（15/18位，大小写x、全角、空格均可）、姓名（简体、繁体或拼音）、电话或地址"),
           kind: str = typer.Option("auto", "--by-kind", "-k",
                                    help="查找方式：auto 自动识别、citizen_id 身份证号、name 姓名、phone 电话、address 地址"),
           reason: str = typer.Option("", "--reason", help="查找事由（记入审计日志）"),
           fmt: str = typer.Option("table", "--format", "-f", help="输出格式：table / csv"),
           warehouse: Optional[Path] = WarehouseOpt, config: Optional[Path] = ConfigOpt) -> None:
    """查找居民：按身份证号、姓名、电话或地址找到人员（与网页的查找相同；记入审计日志）。"""
    from pipelines.search import SearchTextError, parse_search
    from warehouse.people import display, search_persons

    settings = _settings(config, warehouse=warehouse)
    try:
        key = parse_search(text, kind, district=_district(settings))
    except SearchTextError as exc:
        raise UsageProblem("TEXT", text, exc.why) from None
    found = _audited(settings, "lookup", key.describe(), reason, lambda: search_persons(settings.warehouse, key),
                     lambda f: f"找到 {len(f)} 人" + (f"：{'、'.join(f['人员编号'].head(20))}" if len(f) else ""))
    if found.empty:
        console.print(f"没有找到：{key.describe()}")
        return
    if fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(list(found.columns))
        writer.writerows([display(v) for v in row] for row in found.itertuples(index=False))
        return
    _print_rows(f"查找：{key.describe()}（{len(found)} 人）", list(found.columns),
                [tuple(display(v) for v in row) for row in found.itertuples(index=False)])


def _district(settings):
    from pipelines.normalize.address import DistrictContext

    d = settings.district
    return DistrictContext(province=d.province, city=d.city, county=d.county, county_code=d.county_code)


@app.command("audit")
def audit_log(since: Optional[str] = typer.Option(None, "--since", help="起始日期 YYYY-MM-DD（含）"),
              actor: Optional[str] = typer.Option(None, "--actor", help="只看某个操作人（操作系统用户名或网页账号）"),
              action: Optional[str] = typer.Option(None, "--action",
                                                   help="只看某类操作：lookup、view_person、explain、link、unlink、"
                                                        "review_decide、review_import、review_export、query、login…"),
              target: Optional[str] = typer.Option(None, "--target", help="对象中包含的文字（人员编号、记录编号、身份证号…）"),
              limit: int = typer.Option(100, "--limit", help="最多显示多少条（最新的在前）"),
              fmt: str = typer.Option("table", "--format", "-f", help="输出格式：table / csv"),
              warehouse: Optional[Path] = WarehouseOpt, config: Optional[Path] = ConfigOpt) -> None:
    """审计日志：谁在何时查看或更改了哪个人员、理由是什么（只追加，不可修改）。"""
    from warehouse.audit import ACTION_LABELS_ZH, list_entries

    settings = _settings(config, warehouse=warehouse)
    if action and action not in ACTION_LABELS_ZH:
        raise UsageProblem("--action", action, f"未知的操作，可选：{'、'.join(ACTION_LABELS_ZH)}")
    day = _date_range(since, since)[0] if since else None
    columns, rows = list_entries(settings.warehouse, since=day, actor=actor, action=action, target=target,
                                 limit=limit)
    if fmt == "csv":
        import csv

        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows([_cell(v) for v in row] for row in rows)
        return
    shown = [i for i, c in enumerate(columns) if c not in ("客户端", "审计编号")]  # both in --format csv
    _print_rows(f"审计日志（最新 {len(rows)} 条）", [columns[i] for i in shown],
                [tuple(_short(row[i]) for i in shown) for row in rows])


def _short(value, limit: int = 60) -> str:
    text = " ".join(_cell(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@app.command()
def web(host: Optional[str] = typer.Option(None, "--host", help="监听地址（默认配置中的 web_host，127.0.0.1 只允许本机访问）"),
        port: Optional[int] = typer.Option(None, "--port", help="端口（默认配置中的 web_port，8765）"),
        warehouse: Optional[Path] = WarehouseOpt, config: Optional[Path] = ConfigOpt) -> None:
    """一门式查询网页：查找居民、居民页、待复核匹配、人工关联（需先用 residents web-user add 开设账号）。"""
    from webapp.accounts import list_users
    from webapp.app import serve

    settings = _settings(config, warehouse=warehouse, web_host=host, web_port=port)
    if not list_users(settings.resolved_web_users()):
        raise UsageProblem("web_users", str(settings.resolved_web_users()),
                           "还没有网页账号，请先运行 residents web-user add <账号> --role officer")
    serve(settings, host=settings.web_host, port=settings.web_port, log=console.print)


web_user_app = typer.Typer(help="网页账号：工作人员（officer，可查看身份信息）与分析人员（analyst，只看脱敏页面）。",
                           no_args_is_help=True)
app.add_typer(web_user_app, name="web-user")


def _password(stdin: bool) -> str:
    if stdin:
        return sys.stdin.readline().rstrip("\n")
    return typer.prompt("密码", hide_input=True, confirmation_prompt="再次输入密码")


@web_user_app.command("add")
def web_user_add(name: str = typer.Argument(..., help="账号名"),
                 role: str = typer.Option(..., "--role", help="officer 工作人员 / analyst 分析人员"),
                 password_stdin: bool = typer.Option(False, "--password-stdin", help="从标准输入读取密码（脚本用）"),
                 replace: bool = typer.Option(False, "--replace", help="账号已存在时替换其密码和角色"),
                 warehouse: Optional[Path] = WarehouseOpt, config: Optional[Path] = ConfigOpt) -> None:
    """开设网页账号（密码以 bcrypt 哈希保存）。"""
    from webapp.accounts import ROLES, AccountError, add_user

    settings = _settings(config, warehouse=warehouse)
    try:
        account = add_user(settings.resolved_web_users(), name, _password(password_stdin), role, replace=replace)
    except AccountError as exc:
        raise UsageProblem("账号", name, exc.why) from None
    console.print(f"已开设账号 {account.name}（{ROLES[account.role]}） → {settings.resolved_web_users()}")


@web_user_app.command("passwd")
def web_user_passwd(name: str = typer.Argument(..., help="账号名"),
                    password_stdin: bool = typer.Option(False, "--password-stdin", help="从标准输入读取密码"),
                    warehouse: Optional[Path] = WarehouseOpt, config: Optional[Path] = ConfigOpt) -> None:
    """修改网页账号的密码。"""
    from webapp.accounts import AccountError, set_password

    settings = _settings(config, warehouse=warehouse)
    try:
        set_password(settings.resolved_web_users(), name, _password(password_stdin))
    except AccountError as exc:
        raise UsageProblem("账号", name, exc.why) from None
    console.print(f"已修改账号 {name} 的密码")


@web_user_app.command("remove")
def web_user_remove(name: str = typer.Argument(..., help="账号名"),
                    warehouse: Optional[Path] = WarehouseOpt, config: Optional[Path] = ConfigOpt) -> None:
    """删除网页账号（已登录的会话在网页重启或闲置超时后失效）。"""
    from webapp.accounts import AccountError, remove_user

    settings = _settings(config, warehouse=warehouse)
    try:
        remove_user(settings.resolved_web_users(), name)
    except AccountError as exc:
        raise UsageProblem("账号", name, exc.why) from None
    console.print(f"已删除账号 {name}")


@web_user_app.command("list")
def web_user_list(warehouse: Optional[Path] = WarehouseOpt, config: Optional[Path] = ConfigOpt) -> None:
    """列出网页账号。"""
    from webapp.accounts import list_users

    settings = _settings(config, warehouse=warehouse)
    _print_rows(f"网页账号（{settings.resolved_web_users()}）", ["账号", "角色", "开设时间"],
                list_users(settings.resolved_web_users()))


review_app = typer.Typer(help="待复核的候选匹配：导出 xlsx 给工作人员决定，再导入决定。", no_args_is_help=True)
app.add_typer(review_app, name="review")


@review_app.command("export")
def review_export(out: Path = typer.Option(Path("待复核匹配.xlsx"), "--out", "-o", help="输出的 xlsx 文件"),
                  warehouse: Optional[Path] = WarehouseOpt, config: Optional[Path] = ConfigOpt) -> None:
    """导出待复核的记录对（中文 xlsx）。"""
    from warehouse.decisions import read_review_queue
    from warehouse.review import write_review_workbook
    from warehouse.store import connect_read_only

    settings = _settings(config, warehouse=warehouse)

    def read():
        con = connect_read_only(settings.warehouse)
        try:
            return read_review_queue(con)
        finally:
            con.close()

    queue = _audited(settings, "review_export", str(out), "", read, lambda q: f"{len(q)} 对记录")
    n = write_review_workbook(queue, out)
    console.print(f"已导出 {n} 对待复核记录 → {out}")


@review_app.command("import")
def review_import(file: Path = typer.Argument(..., help="填好的复核 xlsx"),
                  by: str = typer.Option("", "--by", help="决定人（表中未填时使用）"),
                  warehouse: Optional[Path] = WarehouseOpt, config: Optional[Path] = ConfigOpt) -> None:
    """导入复核决定（是 → 必须关联，否 → 不得关联），并重新解析人员。"""
    from warehouse.decisions import add_decision
    from warehouse.review import read_review_decisions

    from warehouse.exceptions import WarehouseError

    settings = _settings(config, warehouse=warehouse)
    try:
        decided = read_review_decisions(file)
    except WarehouseError as exc:
        _say_error(str(exc))
        raise typer.Exit(1) from None
    if decided.empty:
        console.print("复核表中没有填写任何决定。")
        return
    missing_by = decided["decided_by"].eq("") & (by == "")
    if missing_by.any():
        err_console.print("[red]有决定未填写决定人，请在表中填写或使用 --by[/red]")
        raise typer.Exit(2)

    def record(con) -> None:
        for r in decided.itertuples(index=False):
            add_decision(con, r.mention_id_a, r.mention_id_b, r.decision, decided_by=r.decided_by or by,
                         reason=r.reason or None, channel="review_xlsx")

    pairs = "；".join(f"{r.mention_id_a} ↔ {r.mention_id_b}：{'是' if r.decision == 'must_link' else '否'}"
                     for r in decided.itertuples(index=False))
    summary = _decide(settings, record, audit=("review_import", str(file), "",
                                               f"{len(decided)} 条决定（{pairs}）"))
    console.print(f"已导入 {len(decided)} 条决定。人员数 {summary.persons_before} → {summary.persons_after}")
    _lake_line(summary)


@app.command()
def encrypt(warehouse: Optional[Path] = WarehouseOpt, config: Optional[Path] = ConfigOpt) -> None:
    """加密现有的（未加密的）官员仓库；密钥来自环境变量 RESIDENTS_WAREHOUSE_KEY 或配置项 warehouse_key_file。"""
    from warehouse.store import encrypt_existing, set_owner_only, set_spare_copies

    settings = _settings(config, warehouse=warehouse)
    set_owner_only(settings.owner_only_files)
    set_spare_copies(settings.spare_working_copy)
    key = settings.resolved_warehouse_key()
    if not key:
        raise UsageProblem("RESIDENTS_WAREHOUSE_KEY", "", "未提供密钥：请设置环境变量 RESIDENTS_WAREHOUSE_KEY 或配置项 warehouse_key_file")
    encrypt_existing(settings.warehouse, key, lock_timeout_s=settings.lock_timeout_s)
    console.print(f"已加密 {settings.warehouse}；今后打开它需要同一密钥")


@app.command()
def report(warehouse: Optional[Path] = WarehouseOpt, config: Optional[Path] = ConfigOpt,
           out: Optional[Path] = typer.Option(None, "--out", "-o",
                                              help="输出目录（默认配置中的 reports_dir，或仓库文件旁的 reports/）")) -> None:
    """质量报告：各部门问题清单（xlsx，含文件、工作表、行号、列、原始值、问题说明、处理建议）和离线可读的 HTML 汇总。"""
    from pipelines.errors import advice
    from warehouse.exceptions import WarehouseError
    from warehouse.reports import write_reports

    settings = _settings(config, warehouse=warehouse, reports_dir=out)
    try:
        paths = write_reports(settings.warehouse, settings.resolved_reports_dir(), advice=advice)
    except WarehouseError as exc:
        _say_error(str(exc))
        raise typer.Exit(1) from None
    for p in paths:
        console.print(f"已写入 {p}")


for _group in (app, review_app, web_user_app):
    for _cmd in _group.registered_commands:
        _cmd.callback = _guarded(_cmd.callback)


def main() -> None:  # pragma: no cover - run as a process by the end-to-end tests
    """The `residents` command (pyproject's script entry point)."""
    from runtime import run_command

    run_command(app)


if __name__ == "__main__":  # pragma: no cover
    main()
