#!/usr/bin/env python3
"""Start (and stop) the real servers the source tests talk to: an OpenSSH server on the
loopback address and a MariaDB server, each on a free port, in a temporary directory.

Standard library only (`.ci/run` calls it with the system Python, as root)::

    sudo python3 tests/servers.py start --dir /tmp/residents-servers   # prints `export …` lines
    eval "$(sudo python3 tests/servers.py start --dir /tmp/residents-servers)"
    sudo python3 tests/servers.py stop --dir /tmp/residents-servers

Needs the Debian packages `openssh-server` and `mariadb-server` (`apt-get install`), and
root: sshd authenticates a real system user (`residents-sftp`, created here with a
password and a key) and MariaDB runs as the `mysql` user.

Exported for the tests (see tests/conftest.py):

* `RESIDENTS_TEST_SFTP_HOST`, `…_PORT`, `…_USER`, `…_PASSWORD`, `…_KEY` (private key file,
  readable by the tests), `…_ROOT` (a directory the SFTP user reads and the tests write),
  `…_HOST_KEY` (the server's public host key);
* `RESIDENTS_TEST_MYSQL_URL` (`mysql+pymysql://reader:…@127.0.0.1:<port>/residents_test`).
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SFTP_USER = "residents-sftp"
DB_NAME = "residents_test"
DB_USER = "reader"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server on port {port} did not start within {timeout:.0f} s")


def run(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, **kw)


# -- OpenSSH ----------------------------------------------------------------------
def start_sshd(base: Path) -> dict[str, str]:
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not Path(sshd).exists():
        raise SystemExit("sshd not found: apt-get install openssh-server")
    d = base / "sshd"
    d.mkdir(parents=True, exist_ok=True)
    password = "pw-" + secrets.token_hex(8)
    try:
        run("id", SFTP_USER, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except subprocess.CalledProcessError:
        run("useradd", "--system", "--no-create-home", "--home-dir", str(d), "--shell", "/bin/sh", SFTP_USER)
    run("chpasswd", input=f"{SFTP_USER}:{password}".encode())
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_key"))
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "residents-test", "-f", str(d / "client_key"))
    shutil.copy(d / "client_key.pub", d / "authorized_keys")
    os.chmod(d / "client_key", 0o644)        # the tests (any user) read the private key
    root = base / "sftp-root"
    root.mkdir(exist_ok=True)
    os.chmod(base, 0o755)
    os.chmod(root, 0o777)                     # tests write exports here, the SFTP user reads
    Path("/run/sshd").mkdir(exist_ok=True)    # privilege separation directory
    port = free_port()
    config = d / "sshd_config"
    config.write_text(f"""\
Port {port}
ListenAddress 127.0.0.1
HostKey {d / 'host_key'}
PidFile {d / 'sshd.pid'}
AuthorizedKeysFile {d / 'authorized_keys'}
StrictModes no
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin no
AllowUsers {SFTP_USER}
Subsystem sftp internal-sftp
LogLevel INFO
""")
    run(sshd, "-f", str(config), "-E", str(d / "sshd.log"))
    wait_port(port)
    return {
        "RESIDENTS_TEST_SFTP_HOST": "127.0.0.1",
        "RESIDENTS_TEST_SFTP_PORT": str(port),
        "RESIDENTS_TEST_SFTP_USER": SFTP_USER,
        "RESIDENTS_TEST_SFTP_PASSWORD": password,
        "RESIDENTS_TEST_SFTP_KEY": str(d / "client_key"),
        "RESIDENTS_TEST_SFTP_ROOT": str(root),
        "RESIDENTS_TEST_SFTP_HOST_KEY": str(d / "host_key.pub"),   # for known_hosts checks
    }


# -- MariaDB ----------------------------------------------------------------------
def start_mariadb(base: Path) -> dict[str, str]:
    server = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
    if not Path(server).exists():
        raise SystemExit("mariadbd not found: apt-get install mariadb-server")
    d = base / "mariadb"
    data = d / "data"
    data.mkdir(parents=True, exist_ok=True)
    shutil.chown(d, "mysql", "mysql")
    shutil.chown(data, "mysql", "mysql")
    run("mariadb-install-db", "--user=mysql", f"--datadir={data}", "--auth-root-authentication-method=socket",
        "--skip-test-db", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = free_port()
    sock = d / "mysqld.sock"
    subprocess.Popen(
        [server, "--no-defaults", "--user=mysql", f"--datadir={data}", f"--socket={sock}", f"--port={port}",
         "--bind-address=127.0.0.1", f"--pid-file={d / 'mysqld.pid'}", f"--log-error={d / 'error.log'}",
         "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci", "--skip-name-resolve"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_port(port)
    password = "pw-" + secrets.token_hex(8)
    sql = (f"CREATE DATABASE IF NOT EXISTS {DB_NAME} CHARACTER SET utf8mb4;"
           f"CREATE USER IF NOT EXISTS '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{password}';"
           f"ALTER USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{password}';"
           # the tests create and fill the exchange tables themselves, each test in a
           # database of its own (residents_test_<hex>), hence ALL on the name pattern
           f"GRANT ALL ON `{DB_NAME}%`.* TO '{DB_USER}'@'127.0.0.1'; FLUSH PRIVILEGES;")
    run("mariadb", f"--socket={sock}", "-uroot", "-e", sql)
    return {"RESIDENTS_TEST_MYSQL_URL": f"mysql+pymysql://{DB_USER}:{password}@127.0.0.1:{port}/{DB_NAME}"}


def stop(base: Path) -> None:
    for pidfile in (base / "sshd" / "sshd.pid", base / "mariadb" / "mysqld.pid"):
        try:
            os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
        except (OSError, ValueError):
            pass


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("action", choices=["start", "stop"])
    p.add_argument("--dir", type=Path, required=True, help="working directory of the servers")
    p.add_argument("--only", choices=["sshd", "mariadb"], help="start only this server")
    args = p.parse_args(argv)
    if args.action == "stop":
        stop(args.dir)
        return
    if os.geteuid() != 0:
        raise SystemExit("run as root (sshd authenticates a system user; MariaDB runs as mysql)")
    args.dir.mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {}
    if args.only in (None, "sshd"):
        env.update(start_sshd(args.dir))
    if args.only in (None, "mariadb"):
        env.update(start_mariadb(args.dir))
    (args.dir / "env.sh").write_text("".join(f"export {k}={v}\n" for k, v in env.items()))
    sys.stdout.write("".join(f"export {k}={v}\n" for k, v in env.items()))


if __name__ == "__main__":
    main()
