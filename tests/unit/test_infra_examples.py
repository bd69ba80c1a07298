"""The deployment examples in infra/ stay true to the code: every command they run parses, the ports, probes,
user id and image version agree with the Containerfile and the service, and no secret sits in a ConfigMap."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tiering import __version__
from tiering.cli import app
from tiering.service.security import OPEN_PATHS

INFRA = Path(__file__).resolve().parents[2] / "infra"


def k8s_objects() -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((INFRA / "kubernetes").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return out


def assert_command_parses(args: list[str]) -> None:
    """Unknown commands or options fail click's parsing even with --help (exit 2); valid ones print help."""
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, f"`tiering {' '.join(args)}` does not parse:\n{result.output}"


def containerfile_uid() -> str:
    text = (INFRA / "Containerfile").read_text()
    m = re.search(r"^USER (\d+):(\d+)$", text, re.M)
    assert m, "the Containerfile must set a numeric non-root USER"
    assert m.group(1) != "0"
    return m.group(1)


def test_containerfile_base_user_and_entrypoint() -> None:
    text = (INFRA / "Containerfile").read_text()
    assert re.search(r"^ARG BASE=docker\.io/library/python:3\.11-slim\S*$", text, re.M)
    assert re.search(r"^FROM \$\{BASE\}$", text, re.M)
    assert re.search(r'^ENTRYPOINT \["tiering"\]$', text, re.M)
    assert "--no-index" in text, "the image installs only from the wheelhouse built on the host"
    containerfile_uid()


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "CronJob":
        return dict(obj["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(obj["spec"]["template"]["spec"])


def test_kubernetes_examples_run_real_commands_as_the_image_user() -> None:
    objs = k8s_objects()
    assert {"ConfigMap/tiering", "CronJob/tiering-archive", "Deployment/tiering", "Service/tiering"} <= set(objs)
    config = objs["ConfigMap/tiering"]["data"]
    assert not [k for k in config if re.search(r"SECRET|PASSWORD|TOKEN|DATABASE_URL|ACCESS_KEY", k)], (
        "secrets belong in the Secret, not the ConfigMap"
    )
    uid = containerfile_uid()
    for name in ("CronJob/tiering-archive", "Deployment/tiering"):
        spec = pod_spec(objs[name])
        assert str(spec["securityContext"]["runAsUser"]) == uid and spec["securityContext"]["runAsNonRoot"]
        (container,) = spec["containers"]
        assert container["image"].endswith(f":{__version__}")
        sources = {next(iter(s)): next(iter(s.values()))["name"] for s in container["envFrom"]}
        assert sources == {"configMapRef": "tiering", "secretRef": "tiering"}
        assert_command_parses(container["args"])
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert container["securityContext"]["readOnlyRootFilesystem"] and {"/tmp", "/var/lib/tiering"} <= mounts
    assert objs["CronJob/tiering-archive"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"][
        :2
    ] == ["archive", "run"]


def test_deployment_probes_and_metrics_port_agree_with_the_service() -> None:
    objs = k8s_objects()
    deployment = objs["Deployment/tiering"]
    (container,) = pod_spec(deployment)["containers"]
    assert container["args"][0] == "serve"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    args = container["args"]
    assert int(args[args.index("--port") + 1]) == ports["http"]
    assert args[args.index("--host") + 1] == "0.0.0.0"
    ready = container["readinessProbe"]["httpGet"]
    assert ready["path"] in OPEN_PATHS and ready["port"] in ports, "the probe must not need the API token"
    assert container["livenessProbe"]["tcpSocket"]["port"] in ports
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["TIERING_METRICS_PORT"]) == ports["metrics"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    service_ports = {p["name"]: p["targetPort"] for p in objs["Service/tiering"]["spec"]["ports"]}
    assert set(service_ports.values()) <= set(ports)


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((INFRA / "systemd" / name).read_text())
    return parser


def test_systemd_units_run_a_real_command_and_a_valid_schedule() -> None:
    service = unit("tiering-archive.service")["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[0] == "/opt/tiering/bin/tiering"
    assert_command_parses(argv[1:])
    assert "--metrics-file" in argv and service["Type"] == "oneshot" and service["User"] == "tiering"
    timer = unit("tiering-archive.timer")
    assert timer["Install"]["WantedBy"] == "timers.target"
    calendar = timer["Timer"]["OnCalendar"]
    env_keys = {
        line.split("=", 1)[0]
        for line in (INFRA / "systemd" / "tiering.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert {"DATABASE_URL", "TIERING_STORE_URL"} <= env_keys
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: OnCalendar not checked")
    checked = subprocess.run(["systemd-analyze", "calendar", calendar], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
