"""The deploy files, parsed and checked: there is no Docker engine or systemd here to run them.

Where a file names something in the code (a command, a setting's default, the shutdown grace period), the
test checks it against the code, so the two cannot drift apart.
"""

from __future__ import annotations

import configparser
import fnmatch
import json
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from bots.cli import parser
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
GRACE = Settings.model_fields["shutdown_grace"].default


def seconds(duration: str) -> float:
    """A compose or systemd duration such as `15s`, `1m30s` or a bare `15`."""
    units = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|min|s|m|h)?", duration.strip())
    return sum(float(number) * units[unit or "s"] for number, unit in parts)


# compose.yaml


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def test_compose_has_ollama_a_one_shot_pull_and_the_bot(services: dict[str, Any]) -> None:
    assert {name for name, service in services.items() if "profiles" not in service} == {"ollama", "pull", "polyglott"}


def test_ollama_keeps_its_models_on_a_volume_and_reports_health(services: dict[str, Any]) -> None:
    ollama = services["ollama"]
    assert ollama["image"].split(":")[0] == "ollama/ollama"
    assert "ollama:/root/.ollama" in ollama["volumes"]
    assert ollama["healthcheck"]["test"] == ["CMD", "ollama", "list"]


def test_the_gpu_stanza_is_there_commented_out(services: dict[str, Any]) -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    assert "deploy" not in services["ollama"]
    commented = "\n".join(
        line.strip().lstrip("#").strip() for line in text.splitlines() if line.strip().startswith("#")
    )
    assert "reservations:" in commented and "driver: nvidia" in commented and "capabilities: [gpu]" in commented


def test_pull_runs_once_against_the_healthy_ollama(services: dict[str, Any]) -> None:
    pull = services["pull"]
    assert pull["image"].split(":")[0] == "ollama/ollama"
    assert pull["restart"] == "no"
    assert pull["depends_on"]["ollama"]["condition"] == "service_healthy"
    assert pull["environment"]["OLLAMA_HOST"] == "ollama:11434"


def test_pull_fetches_the_model_the_bot_will_use(services: dict[str, Any]) -> None:
    pull, bot = services["pull"], services["polyglott"]
    assert pull["env_file"] == bot["env_file"], "both read POLYGLOTT_MODEL from the same .env"
    command = " ".join(pull["command"])
    # `$$` is compose's escape for a literal `$`: the container's shell expands it, from that .env.
    match = re.search(r'ollama pull "\$\$\{POLYGLOTT_MODEL:-([^}]+)\}"', command)
    assert match, command
    assert match.group(1) == Settings.model_fields["model"].default


def test_the_bot_starts_after_the_pull_succeeded(services: dict[str, Any]) -> None:
    depends = services["polyglott"]["depends_on"]
    assert depends["pull"]["condition"] == "service_completed_successfully"
    assert depends["ollama"]["condition"] == "service_healthy"


def test_the_bot_reads_env_and_reaches_ollama_by_its_service_name(services: dict[str, Any]) -> None:
    bot = services["polyglott"]
    assert (DEPLOY / bot["env_file"]).resolve() == ROOT / ".env"
    assert bot["environment"]["POLYGLOTT_OLLAMA_HOST"] == "http://ollama:11434"
    assert bot["restart"] == "unless-stopped"


def test_the_bot_keeps_its_database_on_a_volume(services: dict[str, Any]) -> None:
    bot = services["polyglott"]
    assert "data:/data" in bot["volumes"]
    assert PurePosixPath(bot["environment"]["POLYGLOTT_DB_PATH"]).parent == PurePosixPath("/data")


def test_the_bot_is_built_from_the_dockerfile(services: dict[str, Any]) -> None:
    build = services["polyglott"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == ROOT
    assert (context / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_docker_waits_longer_than_the_bots_grace_period(services: dict[str, Any]) -> None:
    assert seconds(services["polyglott"]["stop_grace_period"]) > GRACE


def test_every_named_volume_is_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    used = {
        mount.split(":")[0]
        for service in services.values()
        for mount in service.get("volumes", [])
        if not mount.startswith((".", "/"))
    }
    assert used == set(compose["volumes"]) == {"ollama", "data", "postgres"}


# compose.yaml, the `scale` profile (README, "A large community")


@pytest.fixture(scope="module")
def scaled(services: dict[str, Any]) -> dict[str, Any]:
    return {name: service for name, service in services.items() if "scale" in service.get("profiles", [])}


def bots(scaled: dict[str, Any]) -> dict[str, Any]:
    return {name: service for name, service in scaled.items() if name != "postgres"}


def test_the_scale_profile_adds_postgres_one_telegram_and_two_discord_processes(scaled: dict[str, Any]) -> None:
    assert set(scaled) == {"postgres", "telegram", "discord-0", "discord-1"}


def test_each_scaled_bot_runs_one_platform_and_telegram_runs_once(scaled: dict[str, Any]) -> None:
    """Telegram allows one getUpdates consumer per token."""
    platforms = []
    for service in bots(scaled).values():
        args = parser().parse_args(service["command"][1:])
        assert (service["command"][0], args.command) == ("polyglott", "run")
        platforms.append(args.only)
    assert sorted(platforms) == ["discord", "discord", "telegram"]


def test_the_discord_processes_split_every_shard_between_them_once(scaled: dict[str, Any]) -> None:
    served: list[int] = []
    counts = set()
    for service in bots(scaled).values():
        if service["command"][-1] != "discord":
            continue
        env = service["environment"]
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            discord_shard_count=env["POLYGLOTT_DISCORD_SHARD_COUNT"],
            discord_shard_ids=env["POLYGLOTT_DISCORD_SHARD_IDS"],
        )
        assert settings.discord_shard_count is not None
        counts.add(settings.discord_shard_count)
        served += settings.discord_shard_ids
    (count,) = counts
    assert sorted(served) == list(range(count))


def test_scaled_bots_wait_for_postgres_and_reach_ollama_like_the_single_bot(
    services: dict[str, Any], scaled: dict[str, Any]
) -> None:
    for service in bots(scaled).values():
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service["depends_on"]["pull"] == services["polyglott"]["depends_on"]["pull"]
        assert (
            service["environment"]["POLYGLOTT_OLLAMA_HOST"]
            == services["polyglott"]["environment"]["POLYGLOTT_OLLAMA_HOST"]
        )
        assert (service["env_file"], service["build"]) == (
            services["polyglott"]["env_file"],
            services["polyglott"]["build"],
        )
        assert seconds(service["stop_grace_period"]) > GRACE


def test_postgres_keeps_its_data_on_a_volume_reports_health_and_stays_off_the_host(scaled: dict[str, Any]) -> None:
    postgres = scaled["postgres"]
    assert postgres["image"].split(":")[0] == "postgres"
    assert "postgres:/var/lib/postgresql/data" in postgres["volumes"]
    assert postgres["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    assert "ports" not in postgres


# Dockerfile


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    instructions = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            instructions.append((keyword.upper(), " ".join(rest.split())))
    return instructions


def last(dockerfile: list[tuple[str, str]], keyword: str) -> str:
    found = [args for key, args in dockerfile if key == keyword]
    assert found, f"no {keyword} in the Dockerfile"
    return found[-1]


def exec_form(args: str) -> list[str]:
    return json.loads(args[args.index("[") :])


def test_the_image_runs_as_an_unprivileged_user(dockerfile: list[tuple[str, str]]) -> None:
    user = last(dockerfile, "USER").split(":")[0]
    assert user not in {"root", "0"}


def test_the_image_starts_from_a_small_python_base(dockerfile: list[tuple[str, str]]) -> None:
    base = last(dockerfile, "FROM")
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", base), base


def test_the_image_installs_the_package_without_a_pip_cache(dockerfile: list[tuple[str, str]]) -> None:
    assert any(key == "RUN" and "pip install --no-cache-dir ." in args for key, args in dockerfile)


def test_the_database_is_on_the_volume(dockerfile: list[tuple[str, str]]) -> None:
    volume = last(dockerfile, "VOLUME")
    db_path = dict(arg.split("=", 1) for arg in last(dockerfile, "ENV").split() if "=" in arg)["POLYGLOTT_DB_PATH"]
    assert PurePosixPath(db_path).parent == PurePosixPath(volume)


def test_the_healthcheck_is_a_quick_doctor(dockerfile: list[tuple[str, str]]) -> None:
    command = exec_form(last(dockerfile, "HEALTHCHECK"))
    assert command[0] == "polyglott"
    args = parser().parse_args(command[1:])
    assert (args.command, args.quick) == ("doctor", True)


def test_the_image_runs_the_bots(dockerfile: list[tuple[str, str]]) -> None:
    assert exec_form(last(dockerfile, "CMD")) == ["polyglott", "run"]


def test_what_the_image_copies_gets_past_dockerignore(dockerfile: list[tuple[str, str]]) -> None:
    patterns = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    copied = [name for key, args in dockerfile if key == "COPY" for name in args.split()[:-1]]
    for name in copied:
        assert (ROOT / name).exists(), name
        assert not ignored(name, patterns), name


def test_the_build_context_leaves_out_secrets_and_databases() -> None:
    patterns = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    for name in (".env", "polyglott.db", ".git", ".venv"):
        assert ignored(name, patterns), name


def ignored(name: str, patterns: list[str]) -> bool:
    """Docker's rule, for top-level names: the last matching pattern wins, `!` re-includes."""
    result = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if fnmatch.fnmatch(name, pattern.lstrip("!").rstrip("/")):
            result = not negated
    return result


# polyglott.service


@pytest.fixture(scope="module")
def unit() -> configparser.ConfigParser:
    config = configparser.ConfigParser(strict=False, interpolation=None, empty_lines_in_values=False)
    config.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    config.read(DEPLOY / "polyglott.service")
    return config


def test_the_service_runs_as_an_unprivileged_user(unit: configparser.ConfigParser) -> None:
    assert unit["Service"]["User"] not in {"root", "0", ""}


def test_the_service_restarts_on_failure(unit: configparser.ConfigParser) -> None:
    assert unit["Service"]["Restart"] == "on-failure"


def test_the_service_reads_its_settings_from_an_environment_file(unit: configparser.ConfigParser) -> None:
    assert unit["Service"]["EnvironmentFile"] == "/etc/polyglott/polyglott.env"


def test_the_service_runs_the_bots(unit: configparser.ConfigParser) -> None:
    program, *args = unit["Service"]["ExecStart"].split()
    assert (PurePosixPath(program).name, args) == ("polyglott", ["run"])


def test_the_database_is_in_the_services_state_directory(unit: configparser.ConfigParser) -> None:
    service = unit["Service"]
    db_path = dict(arg.split("=", 1) for arg in service["Environment"].split())["POLYGLOTT_DB_PATH"]
    assert PurePosixPath(db_path).parent == PurePosixPath("/var/lib") / service["StateDirectory"]


def test_the_service_is_sandboxed(unit: configparser.ConfigParser) -> None:
    service = unit["Service"]
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["ProtectHome"] == "yes"
    assert service["PrivateTmp"] == "yes"
    assert service["CapabilityBoundingSet"] == ""
    assert set(service["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}


def test_systemd_waits_longer_than_the_bots_grace_period(unit: configparser.ConfigParser) -> None:
    assert unit["Service"]["KillSignal"] == "SIGTERM"
    assert seconds(unit["Service"]["TimeoutStopSec"]) > GRACE


def test_the_service_starts_after_the_network_and_ollama(unit: configparser.ConfigParser) -> None:
    assert {"network-online.target", "ollama.service"} <= set(unit["Unit"]["After"].split())
    assert "network-online.target" in unit["Unit"]["Wants"].split()


@pytest.fixture
def runnable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at a program that exists here, so systemd-analyze judges the rest."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    text = (DEPLOY / "polyglott.service").read_text()
    copy = tmp_path / "polyglott.service"
    copy.write_text(re.sub(r"(?m)^ExecStart=\S+", f"ExecStart={shutil.which('true')}", text))
    return copy


def test_systemd_accepts_every_line_of_the_unit(runnable_unit: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "verify", str(runnable_unit)], capture_output=True, text=True, timeout=60
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_systemd_rates_the_sandbox_well(runnable_unit: Path) -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", str(runnable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in result.stderr:  # systemd older than 250
        pytest.skip("this systemd-analyze cannot rate a unit file offline")
    assert result.returncode == 0, result.stdout[-400:]
