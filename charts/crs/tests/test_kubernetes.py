"""Every rendered object is valid for the oldest Kubernetes the chart supports and the newest that
kubernetes-validate knows, in strict mode (no field Kubernetes does not have)."""

from __future__ import annotations

import re

import kubernetes_validate
import pytest
import yaml
from packaging.version import Version

from conftest import CHART_DIR, Rendered

# Custom resources of operators the chart integrates with; Kubernetes itself has no schema for them.
CUSTOM_RESOURCES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("gateway.networking.k8s.io/v1", "GRPCRoute"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
}


def minimum_kubernetes() -> str:
    constraint = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["kubeVersion"]
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)\.0-0", constraint)
    assert match, f"kubeVersion {constraint!r} is not of the form >=X.Y.0-0"
    return f"{match.group(1)}.{match.group(2)}"


OLDEST = minimum_kubernetes()
NEWEST = kubernetes_validate.latest_version()
KUBERNETES_VERSIONS = [OLDEST, NEWEST]


def test_the_oldest_version_is_the_first_with_the_native_pre_stop_sleep() -> None:
    # lifecycle.preStop.sleep (KEP-3960) is beta and on by default from 1.30.
    assert Version(OLDEST) == Version("1.30")
    assert Version(NEWEST) > Version(OLDEST)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_objects_are_valid_kubernetes(rendered: Rendered, version: str) -> None:
    problems = []
    for obj in rendered.objects:
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_RESOURCES:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {'.'.join(map(str, e.path))}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {e.message}")
    assert not problems, "\n".join(problems)


def test_custom_resources_have_their_required_fields(production: Rendered) -> None:
    monitor = production.get("ServiceMonitor", "crs")
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    rule = production.get("PrometheusRule", "crs")
    for group in rule["spec"]["groups"]:
        for r in group["rules"]:
            assert r["alert"] and r["expr"] and r["labels"]["severity"] in {"warning", "critical"}
