"""The migration Jobs' command works: the Job container, re-created as for --check-config, migrates
a database (SQLite here, so the test needs no server) and says so, and names the problem when it
cannot."""

from __future__ import annotations

from pathlib import Path

from conftest import COMPONENTS, Rendered
from test_check_config import Sandbox


def job_sandbox(rendered: Rendered, component: str, root: Path) -> Sandbox:
    job = rendered.get("Job", f"crs-{component}-migrations")
    pod = job["spec"]["template"]["spec"]
    return Sandbox(root, rendered, pod, pod["containers"][0])


def test_each_job_migrates_its_database_once(defaults: Rendered, tmp_path: Path) -> None:
    for component in COMPONENTS:
        url = f"sqlite://{tmp_path}/{component}.db?mode=rwc"
        first = job_sandbox(defaults, component, tmp_path / component).run(env={"CRS_DATABASE__URL": url})
        assert first.returncode == 0, f"{component}: {first.stderr}"
        assert "database up to date" in first.stdout and "(0 pending" not in first.stdout, first.stdout
        again = job_sandbox(defaults, component, tmp_path / f"{component}-again").run(env={"CRS_DATABASE__URL": url})
        assert again.returncode == 0 and "(0 pending migrations applied)" in again.stdout, again


def test_a_job_that_cannot_migrate_fails_and_says_why(defaults: Rendered, tmp_path: Path) -> None:
    # /proc refuses new directories, even to root.
    url = "sqlite:///proc/crs-no-such-dir/triage.db?mode=rwc"
    result = job_sandbox(defaults, "triage", tmp_path / "job").run(env={"CRS_DATABASE__URL": url})
    assert result.returncode == 1, result
    assert "database" in result.stderr, result.stderr
    bad = job_sandbox(defaults, "triage", tmp_path / "bad").run(env={"CRS_DATABASE__URL": "mysql://db/crs"})
    assert bad.returncode == 2 and "database.url" in bad.stderr
