"""Configuration, read once at the edge (CLI / flow parameters) into one typed object.

Sources, later ones winning: built-in defaults → a TOML file (`residents.toml` in the
working directory, or the path in `RESIDENTS_CONFIG`, or `--config`) → environment
variables `RESIDENTS_<FIELD>` (e.g. `RESIDENTS_FAMILY_PLANNING_URL`) → explicit
command-line options. The settings object is passed down; nothing below the CLI and
flows reads the environment.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from schemas.sources import SourceSpec, password_by_reference


class ConfigError(ValueError):
    """A configuration the program cannot run with: structured context, one-line message.

    kind: ``missing_file`` (a config file named by --config or RESIDENTS_CONFIG does not
    exist), ``bad_toml`` (not valid TOML), ``unknown_key`` (a key no setting has; the
    closest known key is suggested), ``invalid_value`` (a value of the wrong type or
    outside its choices), ``district_unknown`` (no ``[district]`` and the data does not
    tell which district it is: the detail says what the evidence showed)."""

    _ZH = {"missing_file": "配置文件不存在", "bad_toml": "配置文件不是有效的 TOML",
           "unknown_key": "未知的配置项", "invalid_value": "配置值无效",
           "district_unknown": "未配置辖区 [district]"}

    def __init__(self, kind: str, *, source: str | None = None, key: str | None = None, value: Any = None,
                 detail: str | None = None, suggestion: str | None = None) -> None:
        self.kind, self.source, self.key, self.value = kind, source, key, value
        self.detail, self.suggestion = detail, suggestion
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [self._ZH.get(self.kind, "配置错误")]
        if self.key is not None:
            parts.append(f"配置项 {self.key}")
        if self.value is not None:
            parts.append(f"值 {str(self.value)[:80]!r}")
        if self.source:
            parts.append(f"来自 {self.source}")
        if self.detail:
            parts.append(self.detail)
        if self.suggestion:
            parts.append(f"是否应为 {self.suggestion}？")
        return "：".join(parts[:1]) + ("：" + "，".join(parts[1:]) if len(parts) > 1 else "")


class DistrictSettings(BaseModel):
    """The district the exports belong to: fills missing upper levels of addresses.

    Nothing is assumed: left empty (the default), the first sync infers the district
    from the data (`pipelines.district`) and stores it in the warehouse."""

    model_config = ConfigDict(extra="forbid")

    province: str | None = Field(None, description="省级名称，如 内蒙古自治区")
    city: str | None = Field(None, description="地级名称，如 包头市")
    county: str | None = Field(None, description="县级名称，如 昆都仑区")
    county_code: str | None = Field(None, description="县级六位区划代码（GB/T 2260），如 150203；写了它就够了")

    @property
    def is_configured(self) -> bool:
        return any(v for v in (self.province, self.city, self.county, self.county_code))


class LakehouseSettings(BaseModel):
    """Optional shared lakehouse (`[lakehouse]`): after each publish the warehouse's core,
    quality and mart are written into a DuckLake (catalog in PostgreSQL, Parquet under
    `data_path`) for analysts on other machines (`warehouse.lake`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    catalog: str = Field(description="DuckLake 目录：postgres:dbname=… host=… port=… user=…（libpq 连接串，不含密码）")
    data_path: str = Field(description="数据湖 Parquet 文件所在的共享目录（各分析机器可读，如 /shared/lake/）")
    password_env: str | None = Field(None, description="保存目录数据库密码的环境变量名")
    password_file: Path | None = Field(None, description="保存目录数据库密码的文件（如挂载的密钥文件）")

    @field_validator("catalog")
    @classmethod
    def _catalog(cls, v: str) -> str:
        import re

        if not v.startswith("postgres:"):
            raise ValueError("lakehouse.catalog 应以 postgres: 开头（如 postgres:dbname=lake host=10.1.2.3 user=lake）")
        if re.search(r"(^|[\s:])password\s*=", v):
            raise ValueError("密码不得写在 lakehouse.catalog 中，请用 password_env（环境变量名）或 password_file")
        return v

    def password(self, env: Any) -> str | None:
        """The catalog password by reference. Raises KeyError/OSError naming the reference."""
        return password_by_reference(self.password_env, self.password_file, env,
                                     missing=f"环境变量 {self.password_env} 未设置（应保存数据湖目录数据库的密码）")


class Settings(BaseModel):
    # a mistyped source URL may carry a password: validation errors never echo the input
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    inbox: Path = Field(Path("inbox"), description="收件箱目录：每个来源系统一个子目录")
    warehouse: Path = Field(Path("warehouse.duckdb"), description="DuckDB 仓库文件")
    family_planning_url: str | None = Field(   # may carry a password (environment): never in repr
        None, repr=False, description="计生数据库的 SQLAlchemy 地址；为空时使用 inbox/family_planning/ 下的 .sqlite 文件")
    reports_dir: Path | None = Field(None, description="报告输出目录；为空时为仓库文件旁的 reports/")
    schedule_cron: str = Field("0 2 * * *", description="每晚同步的 cron 表达式")
    schedule_timezone: str = Field("Asia/Shanghai", description="cron 的时区")
    lock_timeout_s: float = Field(600.0, description="另一个同步正在运行时最多等待的秒数")
    source_timeout_s: float = Field(
        10.0, description="来源数据库被锁定或连接不上时，每次尝试最多等待的秒数（SQLite 忙等待、连接超时）")
    source_retry_delays_s: list[float] = Field(
        [2.0, 8.0], description="来源暂时不可用（数据库锁定、拒绝连接）时，每次重试前等待的秒数；重试用完后该来源本次失败，其他来源照常装载")
    row_count_change_threshold: float = Field(0.5, description="与上次同来源导出相比，行数变化超过该比例即告警")
    grid_households: int = Field(300, description="网格员每人负责的户数（网格视图）")
    resolution_mode: Literal["incremental", "full", "deterministic"] = Field(
        "incremental",
        description="人员解析：incremental 只为新记录匹配已有人员（首次装载、无已存模型、提及数少于10万、"
                    "人口较训练时增长超过5%、新记录会连接两个已有人员、人工决定变化、更正或补录时自动全量）；"
                    "full 每次全量概率聚类；deterministic 仅按有效身份证号")
    incremental_min_mentions: int = Field(
        100_000, description="增量解析的最小规模：提及数少于此值时每次全量解析（全量在此规模下只需数十秒，且结果与装载顺序无关）")
    incremental_max_growth: float = Field(
        0.05, description="人口（不同的有效身份证号数）较模型训练时增长超过该比例时重新训练模型并全量解析")
    incremental_max_mention_growth: float = Field(
        0.25, description="提及数较模型训练时增长超过该比例时也重新训练（每月低保花名册等重复提及已知人员的记录只按此计）")
    engine: Literal["duckdb", "spark"] = Field(
        "duckdb", description="人员解析的计算引擎：duckdb（默认，本机内嵌）；spark：记录对的生成与打分在 Spark 上运行"
                              "（模型训练、约束聚类与人员编号仍在本机，见 README「Spark 引擎」）")
    spark_master: str = Field(
        "local[2]", description="engine = spark 时的 Spark master：local[N]（本机 N 个核）、spark://主机:7077、yarn、k8s://…")
    spark_work_dir: Path | None = Field(
        None, description="与 Spark 交换 Parquet 文件的工作目录；为空时为仓库文件旁的 .residents/spark。"
                          "在集群上应为各执行器都能以同一路径读写的共享目录")
    spark_partitions: int = Field(8, ge=1, description="Spark 上记录对打分的分区数（spark.sql.shuffle.partitions）")
    memory_limit: str = Field(
        "auto", description="仓库连接（工作副本）的内存上限（人员解析的内存库见 linkage_memory_limit），超出部分暂存到仓库旁的临时目录"
                            "（仅属主可读）：如 4GB、512MB，或本机内存的比例如 25%；auto 为本机内存的 25%（至少 1GB）；"
                            "none 为 DuckDB 默认（本机内存的 80%）")
    linkage_memory_limit: str = Field(
        "auto", description="人员解析模型的内存库（训练、记录对打分）的内存上限，超出部分暂存到仓库旁的临时目录：写法同 "
                            "memory_limit；auto 为 memory_limit 的四分之一（至少 512MB）——全量解析时同一进程还持有特征、"
                            "记录对和聚类的数据表，DuckDB 只约束它自己的内存；none 为 DuckDB 默认")
    incremental_memory_limit: str = Field(
        "auto", description="只解析、重建本次变化部分的同步与官员决定（link/unlink/review）时仓库连接的内存上限：写法同 "
                            "memory_limit；auto 为 1GB（memory_limit 更小时取 memory_limit）。增量运行只读到所涉人员的行，"
                            "DuckDB 却会把读过的块一直缓存到 memory_limit，内存随仓库而不随变化增长；转为全量时恢复 memory_limit")
    district: DistrictSettings = Field(
        default_factory=DistrictSettings,
        description="辖区（[district]）：为空时首次同步从数据推断并存入仓库")
    mappings_dir: Path | None = Field(
        None, description="另外的映射文件目录（每个部门来源对象一个 YAML 文件，见 docs/MAPPINGS.md）：新部门只需放入映射文件，"
                          "不改代码；内置映射（schemas/mappings/）照常使用")
    sources: dict[str, SourceSpec] = Field(
        default_factory=dict,
        description="各部门的数据来源（[sources.<名称>] url = ...）；未声明的部门照旧读取收件箱中的文件")
    archive: Path | None = Field(None, description="拉取文件的只读存档目录；为空时为收件箱旁的 archive/")
    archive_retention_days: int = Field(
        365, ge=0, description="存档保留天数（按拉取日期）；0 表示永久保留")
    prefect_home: Path | None = Field(
        None, description="residents serve 的 Prefect 数据目录（运行记录、部署）；为空时为仓库文件旁的 .residents/prefect/，不使用用户级 ~/.prefect")
    serve_port: int = Field(4200, ge=1, le=65535, description="residents serve 启动的本地 Prefect 服务器端口（界面与 API）")
    history_days: int = Field(
        31, ge=0, description="仓库快照保留天数（residents query --as-of 按日期查询历史状态）；每个快照约占一个仓库文件的磁盘；0 表示不保留")
    history_every_publish_days: float = Field(
        2, ge=0, description="最近这么多天内每次发布（同步、关联决定）都保留快照；更早的每天只保留当天最后一次发布"
                             "（按 schedule_timezone 计日），磁盘随保留的天数而非发布次数增长")
    analyst_warehouse: Path | None = Field(
        None, description="分析员用的去标识化仓库文件；为空时为仓库文件旁的 <仓库名>.analyst.duckdb")
    warehouse_key_file: Path | None = Field(
        None, description="加密官员仓库的密钥文件（文件内容即密钥）；也可用环境变量 RESIDENTS_WAREHOUSE_KEY。"
                          "密钥本身不得写在配置文件中")
    pseudonym_key_file: Path | None = Field(
        None, description="分析员仓库假名键（HMAC-SHA256）的密钥文件；为空时为 ~/.config/residents/pseudonym.key"
                          "（不存在时自动生成，权限 0600）；也可用环境变量 RESIDENTS_PSEUDONYM_KEY")
    owner_only_files: bool = Field(
        True, description="仓库、工作副本、锁文件、分析员仓库和报告只允许属主读写（文件 0600、目录 0700）；"
                          "设为 false 时按进程的 umask 创建")
    spare_working_copy: bool = Field(
        True, description="每次发布后由后台进程把仓库文件（和分析员仓库）复制一份备用（<仓库>.spare-…，属主读写），"
                          "下一次写入直接改名使用，不必当场复制整个文件；多占一个仓库文件的磁盘。设为 false 时每次写入当场复制")
    #: secrets: only from the environment (RESIDENTS_WAREHOUSE_KEY / RESIDENTS_PSEUDONYM_KEY),
    #: never from a settings file; never printed (SecretStr) nor serialised
    warehouse_key: SecretStr | None = Field(None, exclude=True, repr=False)
    pseudonym_key: SecretStr | None = Field(None, exclude=True, repr=False)
    lakehouse: LakehouseSettings | None = Field(
        None, description="共享数据湖（[lakehouse] catalog / data_path / password_env）：每次发布后把核心、质量与分析层写入 DuckLake，供其他机器上的分析人员只读查询；不设则不发布")
    web_host: str = Field("127.0.0.1", description="residents web 监听的地址（默认只在本机可访问）")
    web_port: int = Field(8765, ge=1, le=65535, description="residents web 监听的端口")
    web_users: Path | None = Field(
        None, description="网页账号文件（哈希后的密码与角色）；为空时为仓库文件旁的 <仓库>.web_users.json")
    web_session_idle_minutes: int = Field(30, ge=1, description="网页登录闲置多少分钟后失效")

    @field_validator("spark_master")
    @classmethod
    def _spark_master(cls, v: str) -> str:
        import re

        v = v.strip()
        if not re.fullmatch(r"local(\[(\d+|\*)(,\d+)?\])?|(spark|k8s|mesos)://\S+|yarn", v):
            raise ValueError("应为 local[N]、local[*]、spark://主机:端口、yarn 或 k8s://… 之一")
        return v

    @field_validator("memory_limit", "linkage_memory_limit", "incremental_memory_limit")
    @classmethod
    def _memory_limit(cls, v: str) -> str:
        import re

        v = v.strip()
        if v.lower() in ("auto", "none"):
            return v.lower()
        m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(%|[KMGT]i?B)", v, flags=re.IGNORECASE)
        if not m or float(m.group(1)) <= 0 or (m.group(2) == "%" and float(m.group(1)) > 100):
            raise ValueError("应为 auto、none、带单位的大小（如 4GB、512MB）或本机内存的比例（如 25%）")
        return f"{m.group(1)}{m.group(2).upper().replace('I', 'i')}"

    def resolved_spill_dir(self) -> Path:
        """Where the linkage model's DuckDB databases spill beyond `memory_limit`."""
        return self.warehouse.resolve().parent / ".residents" / "tmp"

    def resolved_memory_limit(self) -> str | None:
        """`memory_limit` as a DuckDB size (MB), None for DuckDB's own default."""
        return _machine_share(self.memory_limit)

    def resolved_linkage_memory_limit(self) -> str | None:
        """`linkage_memory_limit` as a DuckDB size: `auto` is a quarter of the resolved
        `memory_limit` (at least 512 MB; DuckDB's default when that is `none`). The model's
        databases score and train beside the Python frames of a resolution (every
        mention's features, the pairs, the clustering) in the same process, which no DuckDB
        bound covers; at 1M residents the full resolution's peak drops ~1.3 GB against the
        warehouse's bound (`make bench-scale`), its predict no slower."""
        if self.linkage_memory_limit != "auto":
            return _machine_share(self.linkage_memory_limit)
        base = self.resolved_memory_limit()
        return None if base is None else f"{max(512, int(_size_bytes(base) / 4 / 1e6))}MB"

    def resolved_incremental_memory_limit(self) -> str | None:
        """`incremental_memory_limit` as a DuckDB size: `auto` is 1 GB, or `memory_limit`
        when that is smaller (None: `memory_limit` stays). At 1M residents the nightly delta
        holds 1.7 GB of DuckDB memory under the 6 GB auto bound (peak 2.6 GB), 1 GB under
        this one (peak 1.9 GB), no slower."""
        if self.incremental_memory_limit != "auto":
            return _machine_share(self.incremental_memory_limit)
        base = self.resolved_memory_limit()
        return "1GB" if base is None or _size_bytes(base) > 1e9 else base

    @field_validator("sources", mode="before")
    @classmethod
    def _name_sources(cls, v: Any) -> Any:
        """`[sources.low_income]` → a SourceSpec named `low_income` (its system by default)."""
        if isinstance(v, dict):
            return {k: ({"name": k, **s} if isinstance(s, dict) else s) for k, s in v.items()}
        return v

    def file_sources(self) -> list[SourceSpec]:
        return [s for s in self.sources.values() if s.is_file_source]

    def sql_sources(self) -> dict[str, SourceSpec | str]:
        """source system → its database: a declared SQL source, else (family planning) the
        `family_planning_url` or the `.sqlite` file in the inbox."""
        out: dict[str, SourceSpec | str] = {s.system: s for s in self.sources.values() if s.kind == "sql"}
        if "family_planning" not in out:
            url = self.resolved_family_planning_url()
            if url:
                out["family_planning"] = url
        return out

    def resolved_archive(self) -> Path:
        return self.archive or self.inbox.resolve().parent / "archive"

    def resolved_family_planning_url(self) -> str | None:
        """The configured URL, else the first `.sqlite`/`.db` file in inbox/family_planning/."""
        if self.family_planning_url:
            return self.family_planning_url
        folder = self.inbox / "family_planning"
        for pattern in ("*.sqlite", "*.sqlite3", "*.db"):
            found = sorted(folder.glob(pattern))
            if found:
                return f"sqlite:///{found[0].resolve()}"
        return None

    def resolved_web_users(self) -> Path:
        return self.web_users or self.warehouse.with_name(self.warehouse.name + ".web_users.json")

    def resolved_reports_dir(self) -> Path:
        return self.reports_dir or self.warehouse.resolve().parent / "reports"

    def resolved_analyst_warehouse(self) -> Path:
        return self.analyst_warehouse or self.warehouse.with_name(self.warehouse.stem + ".analyst.duckdb")

    def resolved_warehouse_key(self) -> str | None:
        """The officer warehouse's encryption key: RESIDENTS_WAREHOUSE_KEY, else the
        content of `warehouse_key_file`; None when the warehouse is not encrypted."""
        if self.warehouse_key is not None and self.warehouse_key.get_secret_value():
            return self.warehouse_key.get_secret_value()
        if self.warehouse_key_file is not None:
            return _read_key_file(self.warehouse_key_file, "warehouse_key_file")
        return None

    def resolved_pseudonym_key(self) -> bytes:
        """The secret of the analysts' pseudonymous person key: RESIDENTS_PSEUDONYM_KEY,
        else `pseudonym_key_file` (default ~/.config/residents/pseudonym.key), created
        with 32 random bytes and mode 0600 when it does not exist yet."""
        if self.pseudonym_key is not None and self.pseudonym_key.get_secret_value():
            return self.pseudonym_key.get_secret_value().encode()
        path = self.pseudonym_key_file or Path.home() / ".config" / "residents" / "pseudonym.key"
        if not path.exists():
            import secrets

            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process created it meanwhile
                pass
            else:
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_hex(32) + "\n")
        return _read_key_file(path, "pseudonym_key_file").encode()


ENV_PREFIX = "RESIDENTS_"
#: settings that are secrets: from the environment only, refused in a settings file
SECRET_FIELDS = ("warehouse_key", "pseudonym_key")


def _machine_share(value: str) -> str | None:
    """A validated memory setting as a DuckDB size: `none` → None (DuckDB's default);
    `auto` / `N%` → 25 % / N % of the machine's memory in MB (at least 1 GB); a size as
    written. (`linkage_memory_limit` and `incremental_memory_limit` derive their
    `auto` from `memory_limit` before they get here.)"""
    if value == "none":
        return None
    if value == "auto" or value.endswith("%"):
        share = 0.25 if value == "auto" else float(value[:-1]) / 100
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        return f"{max(1024, int(total * share / 2**20))}MB"
    return value


def _size_bytes(size: str) -> float:
    """Bytes of a DuckDB size as the validator writes it ('4GB', '1.5GiB', '512MB'): KB, MB,
    ... are powers of 1000 and KiB, MiB, ... of 1024, as in DuckDB."""
    import re

    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT])(i?)B", size)
    if m is None:
        raise ValueError(f"not a size: {size!r}")
    power = "KMGT".index(m.group(2)) + 1
    return float(m.group(1)) * (1024 ** power if m.group(3) else 1000 ** power)


def _read_key_file(path: Path, key: str) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError("missing_file", key=key, source=str(path), detail=exc.strerror) from None
    if not text:
        raise ConfigError("invalid_value", key=key, source=str(path), detail="密钥文件为空")
    return text


def load_settings(config_file: str | os.PathLike[str] | None = None, *, env: dict[str, str] | None = None,
                  **overrides: Any) -> Settings:
    """Defaults ← TOML file ← environment ← explicit overrides (None values ignored).

    Raises `ConfigError` for a config file named explicitly (argument or
    RESIDENTS_CONFIG) that does not exist, a file that is not TOML, a key no setting
    has, and a value of the wrong type; `./residents.toml` is optional."""
    env = dict(os.environ if env is None else env)
    data: dict[str, Any] = {}
    origin: dict[str, str] = {}
    named = config_file or env.get(f"{ENV_PREFIX}CONFIG")
    path = Path(named) if named else Path("residents.toml")
    if path.is_file():
        try:
            with path.open("rb") as fh:
                data.update(tomllib.load(fh))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("bad_toml", source=str(path), detail=str(exc)) from None
        except OSError as exc:
            raise ConfigError("missing_file", source=str(path), detail=exc.strerror) from None
        _check_keys(data, str(path))
        origin.update({k: str(path) for k in data})
    elif named:
        how = "--config" if config_file else f"{ENV_PREFIX}CONFIG"
        raise ConfigError("missing_file", source=f"{how} {path}")
    for secret in SECRET_FIELDS:
        if secret in data:
            raise ConfigError("invalid_value", key=secret, source=str(path),
                              detail=f"密钥不得写在配置文件中：请用环境变量 {ENV_PREFIX}{secret.upper()} "
                                     f"或密钥文件（{secret}_file）")
    for name, info in Settings.model_fields.items():
        key = f"{ENV_PREFIX}{name.upper()}"
        if key in env and name not in ("district", "lakehouse"):
            value: Any = env[key]
            if name == "source_retry_delays_s":  # a list in the environment: "2,8" or "[2, 8]"
                value = [v for v in value.strip("[] ").replace(" ", "").split(",") if v]
            data[name] = value
            origin[name] = f"环境变量 {key}"
    district = dict(data.get("district", {}))
    for name in DistrictSettings.model_fields:
        key = f"{ENV_PREFIX}DISTRICT_{name.upper()}"
        if key in env:
            district[name] = env[key]
            origin[f"district.{name}"] = f"环境变量 {key}"
    if district:
        data["district"] = district
    given = {k: v for k, v in overrides.items() if v is not None}
    data.update(given)
    origin.update({k: "命令行" for k in given})
    from schemas.mapping import use_mappings_dir

    # the departments that `[sources.*]` may name include those of mappings_dir
    use_mappings_dir(data.get("mappings_dir"))
    try:
        settings = Settings.model_validate(data)
        use_mappings_dir(settings.mappings_dir)
        return settings
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err.get("loc", ()))
        top = key.split(".")[0]
        # a mistyped catalog, source or database URL may carry a password: never echoed
        secret = top in ("lakehouse", "sources", "family_planning_url")
        raise ConfigError("invalid_value", key=key, value=None if secret else err.get("input"),
                          source=origin.get(key) or origin.get(top), detail=_expected(err)) from None


def _check_keys(data: dict[str, Any], source: str) -> None:
    """Every key of a config file must name a setting (a misspelt key is an error)."""
    import difflib

    known = set(Settings.model_fields)
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            raise ConfigError("unknown_key", key=key, source=source, suggestion=close[0] if close else None)
    district = data.get("district")
    if isinstance(district, dict):
        sub = set(DistrictSettings.model_fields)
        for key in district:
            if key not in sub:
                close = difflib.get_close_matches(key, sorted(sub), n=1)
                raise ConfigError("unknown_key", key=f"district.{key}", source=source,
                                  suggestion=f"district.{close[0]}" if close else None)


def _expected(err: dict[str, Any]) -> str:
    """What the value should have been, in Chinese, from a pydantic error."""
    kind = err.get("type", "")
    ctx = err.get("ctx") or {}
    if kind == "literal_error":
        return f"应为以下之一：{ctx.get('expected', '')}"
    if kind.startswith("float") or kind.startswith("int"):
        return "应为数字"
    if kind in ("list_type", "float_parsing") or kind.startswith("list"):
        return "应为数字列表，如 [2, 8]"
    if kind.startswith("bool"):
        return "应为 true 或 false"
    if kind in ("dict_type", "model_type"):
        return "应为一个表（[district]）"
    return f"不符合要求（{err.get('msg', kind)}）"
