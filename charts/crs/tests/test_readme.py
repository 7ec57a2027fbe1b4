"""The chart's README lists every value of values.yaml with its default."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from conftest import CHART_DIR


def leaves(node: Any, prefix: str = ""):
    """Every key whose value is not a non-empty map: scalars, lists and empty maps."""
    if isinstance(node, dict) and node:
        for key, value in node.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix, node


def readme_values() -> dict[str, str]:
    section = (CHART_DIR / "README.md").read_text().split("\n## Values\n", 1)[1]
    rows = re.findall(r"^\| `([^`]+)` \| `(.*?)` \|", section, re.MULTILINE)
    return dict(rows)


def test_the_readme_lists_every_value_with_its_default() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    documented = readme_values()
    missing, wrong = [], []
    for key, default in leaves(values):
        if key not in documented:
            missing.append(key)
        elif json.loads(documented[key]) != default:
            wrong.append(f"{key}: README says {documented[key]}, values.yaml has {json.dumps(default)}")
    assert not missing, f"README.md lacks {missing}"
    assert not wrong, "\n".join(wrong)


def test_the_readme_lists_no_value_that_does_not_exist() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    known = {key for key, _ in leaves(values)}
    assert not set(readme_values()) - known
