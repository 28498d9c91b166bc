"""Static checks of the deployment files (no docker engine or helm here): schema, commands, env names, dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from veilnet.cli import app as cli_app
from veilnet.settings import Settings
from veilnet.validator.service import ROLES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
HELM = DEPLOY / "helm" / "veilnet"
# vendored from compose-spec/compose-spec schema/compose-spec.json @ 170098ba07d9f53c383a41bfd4c5166b0a4529a6
COMPOSE_SCHEMA = Path(__file__).with_name("compose-spec.json")
ENV_NAME = re.compile(r"\bVEILNET_[A-Z0-9_]*[A-Z0-9]\b")


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def veilnet_commands() -> set[tuple[str, ...]]:
    """Every veilnet subcommand the compose file and Helm chart run (options stripped)."""
    commands: set[tuple[str, ...]] = set()
    for service in compose()["services"].values():
        if service.get("image", "").startswith("${IMAGE"):
            commands.add(tuple(a for a in service["command"] if not a.startswith("-"))[:2])
    for template in (HELM / "templates").glob("*.yaml"):
        for match in re.finditer(r'args: \["([a-z]+)", "([a-z]+)"', template.read_text()):
            commands.add(match.groups())
    return commands


def test_helm_runs_each_validator_role_with_the_validator_wallet() -> None:
    template = (HELM / "templates" / "validator.yaml").read_text()
    listed = re.search(r'range \$role := list ((?:"[a-z]+" ?)+)', template)
    assert listed is not None and re.findall(r'"([a-z]+)"', listed.group(1)) == list(ROLES)
    assert 'args: ["validator", "run", "--role", {{ $role | quote }}]' in template
    values = yaml.safe_load((HELM / "values.yaml").read_text())
    assert set(values["validator"]["roles"]) == set(ROLES) and values["validator"]["roles"]["scorer"]["replicas"] >= 1
    # every container gets its component's wallet and, for servers, a host and port to listen on
    for name, wallet in [("miner", ".Values.miner.wallet"), ("gateway", ".Values.validator.wallet"),
                         ("validator", "$.Values.validator.wallet")]:
        text = (HELM / "templates" / f"{name}.yaml").read_text()
        assert f'"wallet" {wallet}' in text, name
    assert '"VEILNET_MINER__HOST" "0.0.0.0"' in (HELM / "templates" / "miner.yaml").read_text()
    assert '"VEILNET_GATEWAY__HOST" "0.0.0.0"' in (HELM / "templates" / "gateway.yaml").read_text()


def test_compose_matches_official_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)  # the spec declares draft-07
    errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(compose())]
    assert errors == []


def test_compose_has_every_service() -> None:
    services = compose()["services"]
    assert {
        "redis",
        "postgres",
        "miner",
        "validator-challenger",
        "validator-scorer",
        "validator-weights",
        "gateway",
        "prometheus",
        "grafana",
    } <= set(services)
    for role in ROLES:
        assert services[f"validator-{role}"]["command"] == ["validator", "run", "--role", role]
        assert services[f"validator-{role}"]["environment"]["VEILNET_WALLET__NAME"].startswith("${VALIDATOR_WALLET")
    for mount in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        host = mount.split(":")[0]
        if host.startswith("./"):
            assert (ROOT / host).exists(), host


def test_commands_are_real_veilnet_subcommands() -> None:
    commands = veilnet_commands()
    assert commands == {("miner", "run"), ("validator", "run"), ("gateway", "run")}
    runner = CliRunner()
    missing = [" ".join(c) for c in sorted(commands) if runner.invoke(cli_app, [*c, "--help"]).exit_code != 0]
    assert missing == [], f"`veilnet <cmd> --help` fails for: {missing}"


def _field_exists(model: type[BaseModel], parts: list[str]) -> bool:
    field = model.model_fields.get(parts[0])
    if field is None:
        return False
    if len(parts) == 1:
        return True
    sub = field.annotation
    return isinstance(sub, type) and issubclass(sub, BaseModel) and _field_exists(sub, parts[1:])


def test_env_names_map_to_settings_fields() -> None:
    files = [
        ROOT / "docker-compose.yml",
        ROOT / "Dockerfile",
        *HELM.rglob("*.yaml"),
        *HELM.rglob("*.tpl"),
        ROOT / "docs" / "deploy.md",
    ]
    names = {n for f in files for n in ENV_NAME.findall(f.read_text())}
    assert "VEILNET_CHAIN__NETWORK" in names
    bad = sorted(
        n for n in names if not _field_exists(Settings, n.removeprefix("VEILNET_").lower().split("__"))
    )
    assert bad == []


def test_prometheus_and_grafana_provisioning() -> None:
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert "gateway:8080" in targets
    for path in (DEPLOY / "grafana" / "provisioning").rglob("*.yml"):
        assert yaml.safe_load(path.read_text())["apiVersion"] == 1


def test_grafana_dashboard_queries_veilnet_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "veilnet.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert exprs
    functions = {
        "rate",
        "sum",
        "by",
        "histogram_quantile",
        "le",
        "status",
        "miner_uid",
        "irate",
        "avg",
        "max",
    }
    for expr in exprs:
        # identifiers that are not PromQL functions/labels, outside of strings and [ranges], are metric names
        bare = re.sub(r'"[^"]*"|\[[^\]]*\]|\{[^}]*\}', "", expr)
        metrics = [w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare) if w not in functions]
        assert metrics and all(m.startswith("veilnet_") for m in metrics), expr


def test_helm_chart_metadata_and_values() -> None:
    chart = yaml.safe_load((HELM / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "veilnet" and chart["version"]
    values = yaml.safe_load((HELM / "values.yaml").read_text())
    assert {"image", "chain", "miner", "validator", "gateway", "serviceMonitor"} <= set(values)
    assert {t.name for t in (HELM / "templates").iterdir()} >= {
        "configmap.yaml",
        "miner.yaml",
        "validator.yaml",
        "gateway.yaml",
        "servicemonitor.yaml",
        "_helpers.tpl",
    }


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm not installed: templates not rendered")
def test_helm_templates_render(tmp_path: Path) -> None:
    out = subprocess.run(
        ["helm", "template", "t", str(HELM), "--set", "serviceMonitor.enabled=true"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    kinds = [d["kind"] for d in yaml.safe_load_all(out) if d]
    assert kinds.count("Deployment") == 5 and "ServiceMonitor" in kinds and "ConfigMap" in kinds
