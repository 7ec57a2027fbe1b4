"""Renders the chart with Helm's own engine (helm-python-sdk, Helm v4's Go library) and hands the
tests the rendered objects, for every value set in ci/."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

CHART_DIR = Path(__file__).resolve().parents[1]
REPO_DIR = CHART_DIR.parents[1]
VALUE_SETS = sorted((CHART_DIR / "ci").glob("*-values.yaml"))
COMPONENTS = ["intake", "triage", "legal-review", "notification"]
VALUES_KEYS = {"intake": "intake", "triage": "triage", "legal-review": "legalReview", "notification": "notification"}
RELEASE = "crs"
NAMESPACE = "crs"


def load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


class Rendered:
    """One rendering of the chart: its objects, and NOTES.txt."""

    def __init__(self, manifests: dict[str, str], values: dict[str, Any]):
        self.values = values
        self.notes = ""
        self.objects: list[dict[str, Any]] = []
        for source, text in sorted(manifests.items()):
            if source.endswith("NOTES.txt"):
                self.notes = text
                continue
            for doc in yaml.safe_load_all(text):
                if doc:
                    doc.setdefault("metadata", {}).setdefault("annotations", {})
                    self.objects.append(doc)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]

    def find(self, kind: str, name: str) -> dict[str, Any] | None:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        return found[0] if found else None

    def deployment(self, component: str) -> dict[str, Any]:
        return self.get("Deployment", f"{RELEASE}-{component}")

    def hooks(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if "helm.sh/hook" in o["metadata"]["annotations"]]

    def workloads(self) -> list[dict[str, Any]]:
        return self.of_kind("Deployment") + self.of_kind("Job")


def render(values: dict[str, Any] | None = None) -> Rendered:
    """Renders as `helm install crs charts/crs -n crs` would, schema validation included."""
    values = values or {}
    with helm.Chart.load(CHART_DIR) as chart:
        manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return Rendered(manifests, values)


@pytest.fixture(scope="session", params=VALUE_SETS, ids=lambda p: p.name.removesuffix("-values.yaml"))
def value_set(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    path: Path = request.param
    return path.name.removesuffix("-values.yaml"), load_values(path)


@pytest.fixture(scope="session")
def rendered(value_set: tuple[str, dict[str, Any]]) -> Rendered:
    return render(value_set[1])


@pytest.fixture(scope="session")
def defaults() -> Rendered:
    return render()


@pytest.fixture(scope="session")
def production() -> Rendered:
    return render(load_values(CHART_DIR / "ci" / "production-values.yaml"))


def binaries_dir() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO_DIR / "target"))
    if not target.is_absolute():
        target = REPO_DIR / target
    return target / "debug"
