"""`residents serve`: the nightly deployment on its cron schedule, and the local Prefect
server it needs (Prefect schedules nothing in ephemeral mode).

The server keeps its state in the project's own Prefect home (`prefect_home`, default
`<warehouse folder>/.residents/prefect`), never in the user-wide `~/.prefect` that other
processes share, and listens on a fixed port (`serve_port`, default 4200), so its links
stay valid across restarts. Each run that fires is announced on the console; on stop the
deployment is removed, so the UI does not list a schedule nobody serves.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

from settings import Settings


class ServeError(RuntimeError):
    """A problem that stops `serve` before it schedules anything (Chinese, one line)."""


def prefect_home(settings: Settings) -> Path:
    return (settings.prefect_home or settings.warehouse.resolve().parent / ".residents" / "prefect").resolve()


def use_project_home(settings: Settings) -> Path:
    """Point Prefect at the project's own home (before Prefect is imported: it reads its
    settings once). Returns the folder, created owner-only."""
    home = prefect_home(settings)
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ["PREFECT_HOME"] = str(home)
    return home


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def start_prefect_server(port: int | None = None, *, timeout_s: float = 120.0,
                         env: dict[str, str] | None = None) -> tuple[Any, str]:
    """Start `prefect server start` on loopback; returns (process, api_url) once healthy.
    `port`: None picks a free one. `env`: the server's environment (default: this process's)."""
    if port is None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    elif not _port_free(port):
        raise ServeError(f"端口 {port} 已被占用（另一个 residents serve 或其他程序？）；请停止它，或在配置中改用其他 serve_port")
    api_url = f"http://127.0.0.1:{port}/api"
    env = dict(os.environ if env is None else env)
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                             "--port", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            preexec_fn=_die_with_parent)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServeError(f"Prefect 服务器启动失败（退出码 {proc.returncode}）")
        try:
            with urllib.request.urlopen(api_url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return proc, api_url
        except OSError:
            time.sleep(1)
    proc.terminate()
    raise ServeError(f"Prefect 服务器 {timeout_s:.0f} 秒内未就绪")


def _die_with_parent() -> None:
    """In the child, before exec: Linux sends it SIGTERM when its parent dies, so a
    killed `residents serve` leaves no Prefect server behind."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the server is stopped by `serve`'s finally only
        pass


def serve_nightly(settings: Settings, flow: Any, parameters: dict[str, Any], *, start_server: bool = True,
                  say: Callable[[str], None] = print, limit: int | None = None) -> None:
    """Serve `flow` (the nightly sync) on the settings' cron schedule; blocks until stopped."""
    api_url = os.environ.get("PREFECT_API_URL")
    proc = None
    if not api_url:
        if not start_server:
            raise ServeError("未设置 PREFECT_API_URL；请启动 `prefect server start` 并设置该变量，或去掉 --no-start-server")
        proc, api_url = start_prefect_server(settings.serve_port)
        say(f"Prefect 服务器已启动：{api_url.removesuffix('/api')}（数据目录 {os.environ.get('PREFECT_HOME')}）")
    ui_url = api_url.removesuffix("/api")
    # Prefect read its settings when it was imported: the server's address goes in as an override
    from prefect.schedules import Cron
    from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL, temporary_settings

    say(f"每晚同步计划：{settings.schedule_cron}（{settings.schedule_timezone}）；"
        f"运行记录：{ui_url}/runs ；部署：{ui_url}/deployments 。按 Ctrl+C 停止。")
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url, PREFECT_UI_URL: ui_url}):
            try:
                flow.serve(name="nightly",
                           schedules=[Cron(settings.schedule_cron, timezone=settings.schedule_timezone)],
                           parameters=parameters, limit=limit, print_starting_message=False)
            finally:
                _remove_deployment(f"{flow.name}/nightly")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        say("已停止每晚同步计划。")


def _remove_deployment(name: str) -> None:
    """A stopped `serve` leaves no deployment behind (best effort: the server may be gone)."""
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            client.delete_deployment(client.read_deployment_by_name(name).id)
    except Exception:   # noqa: BLE001 — stopping must not fail because of the cleanup
        pass
