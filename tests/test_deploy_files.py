"""Static checks of Dockerfile and docker-compose.yml against the real code (no Docker needed).

Every `glidepath ...` command in them must parse against the real Typer app, and every
GLIDEPATH_* variable must be a field of service.config.Settings, so a renamed command, option or
setting breaks this test instead of the deployment.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from service.cli import app
from service.config import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
ENV_PREFIX = "GLIDEPATH_"


# --- helpers (the negative tests below prove they can fail) -----------------------------------


def glidepath_command_problem(argv: Sequence[str]) -> str | None:
    """Why ``argv`` (``["glidepath", sub, *args]``) is not a valid command; None when it is.

    Nothing is run: ``--help`` is eager, so Click parses the options (rejecting unknown ones) and
    exits before the command body; ``make_context`` then converts the values without invoking.
    """
    if len(argv) < 2 or argv[0] != "glidepath":
        return f"not a `glidepath <command>` line: {list(argv)!r}"
    sub, args = argv[1], list(argv[2:])
    # Typer >= 0.2x vendors Click (typer._click), so duck-type rather than isinstance(click.Group).
    commands = getattr(typer.main.get_command(app), "commands", {})
    if sub not in commands:
        return f"unknown subcommand {sub!r}; registered: {sorted(commands)}"
    result = CliRunner().invoke(app, [sub, *args, "--help"])
    if result.exit_code != 0:
        return (
            f"`glidepath {sub} {' '.join(args)} --help` exited {result.exit_code}: {result.output}"
        )
    try:
        commands[sub].make_context(sub, args)
    except Exception as exc:  # a Click usage/parameter error (vendored or not)
        return f"`glidepath {sub} {' '.join(args)}` does not parse: {exc}"
    return None


def is_glidepath_command(argv: Sequence[str]) -> bool:
    return glidepath_command_problem(argv) is None


def is_settings_env_var(name: str) -> bool:
    """True when ``name`` is GLIDEPATH_ + an upper-cased field of Settings."""
    if not name.startswith(ENV_PREFIX):
        return False
    field = name.removeprefix(ENV_PREFIX)
    return field.isupper() and field.lower() in Settings.model_fields


def load_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())  # resolves anchors and `<<` merge keys
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    svcs = load_compose()["services"]
    assert isinstance(svcs, dict)
    return svcs


def command_argv(command: str | list[str] | None) -> list[str]:
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def env_names(environment: dict[str, Any] | list[str] | None) -> list[str]:
    if environment is None:
        return []
    if isinstance(environment, dict):
        return [str(k) for k in environment]
    return [item.split("=", 1)[0] for item in environment]


def env_dict(environment: dict[str, Any] | list[str] | None) -> dict[str, str]:
    if environment is None:
        return {}
    if isinstance(environment, dict):
        return {str(k): str(v) for k, v in environment.items()}
    return dict(item.split("=", 1) for item in environment)


def volume_mounts(svc: dict[str, Any]) -> dict[str, str]:
    """A service's volumes as {source: target} (short syntax `source:target[:mode]`, or long)."""
    out: dict[str, str] = {}
    for v in svc.get("volumes", []):
        if isinstance(v, dict):
            out[str(v.get("source", ""))] = str(v["target"])
        else:
            source, _, rest = str(v).partition(":")
            out[source] = rest.split(":")[0] if rest else source
    return out


def glidepath_services() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, svc in services().items():
        argv = command_argv(svc.get("command"))
        if argv and argv[0] == "glidepath":
            out[name] = argv
    return out


def dockerfile_cmd() -> list[str]:
    lines = [ln for ln in DOCKERFILE.read_text().splitlines() if ln.strip().startswith("CMD ")]
    assert len(lines) == 1, f"expected exactly one CMD line, got {lines}"
    cmd = json.loads(lines[0].strip().removeprefix("CMD "))
    assert isinstance(cmd, list) and all(isinstance(c, str) for c in cmd), cmd
    return cmd


# --- negative self-checks ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        "glidepath frobnicate",
        "glidepath api --no-such-option 1",
        "glidepath api --port not-a-number",
        "glidepath worker --queue gpu",  # the option is --queues
        "glidepath",
        "celery worker",
    ],
)
def test_helper_rejects_made_up_commands(argv: str) -> None:
    assert not is_glidepath_command(shlex.split(argv))


def test_helper_accepts_real_commands() -> None:
    assert is_glidepath_command(["glidepath", "migrate"])
    assert is_glidepath_command(["glidepath", "migrate", "head"])
    assert is_glidepath_command(["glidepath", "up", "--port", "9000"])


@pytest.mark.parametrize(
    "name", ["GLIDEPATH_NOPE", "GLIDEPATH_", "GLIDEPATH_database_url", "DATABASE_URL"]
)
def test_helper_rejects_made_up_env_vars(name: str) -> None:
    assert not is_settings_env_var(name)


def test_helper_accepts_every_settings_field() -> None:
    assert Settings.model_fields  # not vacuous
    for field in Settings.model_fields:
        assert is_settings_env_var(ENV_PREFIX + field.upper())


# --- docker-compose.yml --------------------------------------------------------------------------


def test_compose_has_the_services() -> None:
    assert {"postgres", "redis", "migrate", "api", "worker"} <= set(services())


def test_compose_glidepath_commands_are_real() -> None:
    cmds = glidepath_services()
    assert {"migrate", "api", "worker"} <= set(cmds), cmds
    for name, argv in cmds.items():
        problem = glidepath_command_problem(argv)
        assert problem is None, f"service {name}: {problem}"


def test_compose_env_vars_are_settings_fields() -> None:
    seen = 0
    for name, svc in services().items():
        for var in env_names(svc.get("environment")):
            if var.startswith(ENV_PREFIX):
                seen += 1
                assert is_settings_env_var(var), (
                    f"service {name}: {var} is not a Settings field "
                    f"(fields: {sorted(Settings.model_fields)})"
                )
    assert seen, "no GLIDEPATH_* variables found: the anchors were not resolved?"


def test_compose_app_services_share_stack_config() -> None:
    for name in glidepath_services():
        svc = services()[name]
        env = env_dict(svc.get("environment"))
        assert env.get("GLIDEPATH_DATABASE_URL", "").startswith("postgresql+psycopg://"), name
        assert env.get("GLIDEPATH_BROKER_URL", "").startswith("redis://"), name
        assert env.get("GLIDEPATH_DATA_DIR") == "/data", name
    for name in ("api", "worker"):  # a volume of its own: scratch files and caches
        assert "/data" in volume_mounts(services()[name]).values(), name


def test_compose_artifacts_go_to_the_s3_service() -> None:
    """The API and the worker keep artifacts in the compose file's own S3 store, signing with the
    identity the store was started with, in the bucket it makes."""
    store = services()["seaweedfs"]
    argv = command_argv(store.get("command"))
    assert argv[0] == "mini", argv
    buckets = [a.split("=", 1)[1] for a in argv if a.startswith("-bucket=")]
    store_env = env_dict(store.get("environment"))
    for name in ("api", "worker"):
        env = env_dict(services()[name].get("environment"))
        url = env.get("GLIDEPATH_ARTIFACT_URL", "")
        assert url.startswith("s3://"), (name, url)
        assert url.removeprefix("s3://").split("/")[0] in buckets, (name, url, buckets)
        assert env.get("AWS_ENDPOINT_URL") == "http://seaweedfs:8333", name
        for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert env.get(var) and env[var] == store_env.get(var), (name, var)
        assert env.get("AWS_REGION"), name
        assert services()[name]["depends_on"]["seaweedfs"]["condition"] == "service_healthy"


def test_compose_api_and_worker_share_no_volume() -> None:
    """Artifacts travel through the store alone: no volume is mounted by both the API and the
    worker (a shared DATA_DIR would hide a missing store setting on one machine)."""
    api, worker = (set(volume_mounts(services()[n])) for n in ("api", "worker"))
    assert not api & worker, api & worker


def test_compose_worker_reserves_nvidia_gpu() -> None:
    devices = services()["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    argv = glidepath_services()["worker"]
    assert argv[argv.index("--gpus") + 1] == "all"  # one worker process per reserved GPU


def test_compose_redis_never_evicts() -> None:
    argv = command_argv(services()["redis"].get("command"))
    assert "--maxmemory-policy" in argv
    assert argv[argv.index("--maxmemory-policy") + 1] == "noeviction"


def test_compose_api_waits_for_migrations() -> None:
    deps = services()["api"]["depends_on"]
    assert deps["migrate"]["condition"] == "service_completed_successfully"
    assert services()["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


# --- Dockerfile ---------------------------------------------------------------------------------


def test_dockerfile_cmd_is_real() -> None:
    argv = dockerfile_cmd()
    problem = glidepath_command_problem(argv)
    assert problem is None, problem


def test_dockerfile_installs_the_project() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"pip install[^\n]*\s(-e\s+)?\.(\s|$)", text), "Dockerfile must pip install ."


def test_dockerfile_env_vars_are_settings_fields() -> None:
    names = re.findall(r"\b(GLIDEPATH_[A-Z0-9_]+)=", DOCKERFILE.read_text())
    assert "GLIDEPATH_DATA_DIR" in names
    for name in names:
        assert is_settings_env_var(name), name


# --- deploy/: the Grafana dashboard and the Prometheus rules over /metrics -----------------------

DASHBOARD = ROOT / "deploy" / "grafana" / "glidepath.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
SCRAPE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
# The contract's names (CONTRACT.md, "Live events, metrics, access"), as Prometheus stores them.
CONTRACT_METRICS = {
    "glidepath_runs",
    "glidepath_queue_depth",
    "glidepath_queue_wait_seconds_bucket",
    "glidepath_epoch_duration_seconds_bucket",
    "glidepath_epochs_total",
    "glidepath_decisions_total",
    "glidepath_workers",
    "glidepath_http_requests_total",
    "glidepath_http_request_duration_seconds_bucket",
}
_METRIC = re.compile(r"\b(glidepath_[a-z0-9_]+)\b")
_MATCHER = re.compile(r"[{,]\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
TARGET_LABELS = {"instance", "job"}  # added by Prometheus to every series it scrapes


def metric_names(expr: str) -> set[str]:
    return set(_METRIC.findall(expr))


def label_names(expr: str) -> set[str]:
    """Labels an expression selects or groups by."""
    out = set(_MATCHER.findall(expr))
    for group in _GROUPING.findall(expr):
        out |= {g.strip() for g in group.split(",") if g.strip()}
    return out


def rule_file_problems(data: Any) -> list[str]:
    """What makes `data` not a Prometheus rule file (groups of alerting or recording rules)."""
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list) or not data["groups"]:
        return ["a rule file is {groups: [...]}"]
    problems: list[str] = []
    for group in data["groups"]:
        if not isinstance(group, dict) or not isinstance(group.get("name"), str):
            problems.append(f"a group needs a name: {group!r}")
            continue
        for rule in group.get("rules") or [None]:
            if not isinstance(rule, dict):
                problems.append(f"group {group['name']}: a rule is a mapping: {rule!r}")
                continue
            name = rule.get("alert", rule.get("record"))
            if ("alert" in rule) == ("record" in rule) or not isinstance(name, str):
                problems.append(f"{rule!r}: exactly one of alert or record")
            if not isinstance(rule.get("expr"), str) or not rule["expr"].strip():
                problems.append(f"{name}: expr must be a PromQL string")
            if "for" in rule and not _DURATION.match(str(rule["for"])):
                problems.append(f"{name}: for: {rule['for']!r} is not a duration")
            for key in ("labels", "annotations"):
                table = rule.get(key, {})
                if not isinstance(table, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in table.items()
                ):
                    problems.append(f"{name}: {key} maps strings to strings")
            if set(rule) - {"alert", "record", "expr", "for", "keep_firing_for", "labels",
                            "annotations"}:  # fmt: skip
                problems.append(f"{name}: unknown keys {sorted(rule)}")
    return problems


def alert_rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text())
    assert not rule_file_problems(data), rule_file_problems(data)
    return [rule for group in data["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p["targets"]]


def exposed(client: Any) -> tuple[set[str], set[str]]:
    """Sample names and label names GET /metrics gives, after one request of each kind."""
    from prometheus_client.parser import text_string_to_metric_families

    assert client.get("/healthz").status_code == 200
    text = client.get("/metrics").text
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    return {s.name for s in samples}, {k for s in samples for k in s.labels}


@pytest.mark.parametrize(
    "data",
    [
        None,
        {"groups": []},
        {"groups": [{"rules": [{"alert": "A", "expr": "up == 0"}]}]},  # no group name
        {"groups": [{"name": "g", "rules": [{"alert": "A"}]}]},  # no expr
        {"groups": [{"name": "g", "rules": [{"alert": "A", "record": "b", "expr": "up"}]}]},
        {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up", "for": "ten"}]}]},
        {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up", "labels": {"a": 1}}]}]},
        {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up", "severity": "x"}]}]},
    ],
)
def test_rule_checker_rejects_what_prometheus_would(data: Any) -> None:
    assert rule_file_problems(data)


def test_expression_helpers_find_names_and_labels() -> None:
    expr = 'sum by (le, route) (rate(glidepath_x_bucket{status=~"5..", a!="b"}[5m])) / up'
    assert metric_names(expr) == {"glidepath_x_bucket"}
    assert label_names(expr) == {"le", "route", "status", "a"}


def test_alert_rules_have_the_prometheus_rule_shape() -> None:
    names = {r["alert"] for r in alert_rules()}
    assert {
        "GlidepathQueueGrowingNoBusyWorker",
        "GlidepathNoWorkers",
        "GlidepathHttp5xx",
        "GlidepathQueueWaitHigh",
    } <= names


def test_dashboard_shows_every_contract_metric() -> None:
    data = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in data["panels"]:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
    used = set().union(*map(metric_names, dashboard_exprs()))
    assert used >= CONTRACT_METRICS, CONTRACT_METRICS - used


def test_scrape_config_reads_metrics_and_loads_the_alerts() -> None:
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    assert config["rule_files"] == [ALERTS.name]
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["authorization"]["type"] == "Bearer"


@pytest.mark.parametrize("backend", ["embedded"], indirect=True)
def test_every_metric_and_label_the_deploy_files_use_is_exposed(client: Any) -> None:
    names, labels = exposed(client)
    exprs = dashboard_exprs() + [r["expr"] for r in alert_rules()]
    for expr in exprs:
        missing = metric_names(expr) - names
        assert not missing, f"{expr}: /metrics has no {sorted(missing)}"
        unknown = label_names(expr) - labels - TARGET_LABELS
        assert not unknown, f"{expr}: no metric has the labels {sorted(unknown)}"
