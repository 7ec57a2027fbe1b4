"""The chart is checked against the binaries it runs: every rendered Deployment and Job container
is re-created on this machine (the ConfigMaps it mounts written to a temporary directory, stand-ins
for the Secrets it mounts or reads, its environment and arguments with mount paths moved into that
directory) and its real binary is run with --check-config, which loads the configuration exactly as
at start-up. A key the binary does not know, an unreadable file or a malformed URL fails the test."""

from __future__ import annotations

import base64
import copy
import datetime
import os
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import CHART_DIR, COMPONENTS, NAMESPACE, RELEASE, Rendered, binaries_dir, load_values, render


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def tls_material() -> dict[str, str]:
    """What the TLS Secrets hold, made here: a CA, and a certificate it signs for every service's
    name with both the server and client usages (the services check all of it)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("CRS chart test CA"))
        .issuer_name(_name("CRS chart test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(f"{RELEASE}-{c}.{NAMESPACE}.svc") for c in COMPONENTS]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("crs"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return {
        "tls.crt": cert.public_bytes(serialization.Encoding.PEM).decode(),
        "tls.key": _pem_key(key),
        "ca.crt": ca.public_bytes(serialization.Encoding.PEM).decode(),
    }


def key_set() -> dict[str, str]:
    """An operator's keys Secret, as `crsctl keygen` writes it."""
    crsctl = binaries_dir() / "crsctl"
    if not crsctl.exists():
        pytest.fail(f"{crsctl} is missing: build the binaries first (cargo build --bins)")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([str(crsctl), "keygen", "--key-dir", tmp], check=True, capture_output=True)
        return {p.name: p.read_text() for p in Path(tmp).iterdir()}


# Stand-ins for what a Secret holds, by the file name or key the pod uses.
SECRET_FILES = {
    **key_set(),
    "secret.key": "w" * 32,
    **tls_material(),
}
SECRET_ENV = {
    "CRS_DATABASE__URL": "postgres://crs:stand-in@postgresql.example:5432/crs",
    "CRS_REDIS__URL": "redis://:stand-in@redis.example:6379/0",
    "CRS_EMAIL__SMTP_URL": "smtps://crs:stand-in@smtp.example:465",
}
# ConfigMaps an operator brings (not rendered by the chart): stand-ins by the path the pod reads.
EXTERNAL_CONFIGMAP_FILES = {
    name: (CHART_DIR / "files" / name).read_text() for name in ("sla-policies.toml", "triage-rules.toml")
}


def binary(container: dict[str, Any]) -> Path:
    path = binaries_dir() / Path(container["command"][0]).name
    if not path.exists():
        pytest.fail(f"{path} is missing: build the services first (cargo build --bins)")
    return path


class Sandbox:
    """A pod's container laid out under a temporary directory."""

    def __init__(
        self,
        root: Path,
        rendered: Rendered,
        pod: dict[str, Any],
        container: dict[str, Any],
        secret_files: dict[str, str] | None = None,
    ):
        self.root = root
        self.rendered = rendered
        self.pod = pod
        self.container = container
        self.secret_files = {**SECRET_FILES, **(secret_files or {})}
        mounts = sorted((m["mountPath"] for m in container.get("volumeMounts", [])), key=len, reverse=True)
        self._mount_re = re.compile("|".join(re.escape(m) for m in mounts) + r"(?=/|$|\"|'|\s)") if mounts else None

    def moved(self, text: str) -> str:
        """`text` with every mount path moved under the sandbox."""
        if self._mount_re is None:
            return text
        return self._mount_re.sub(lambda m: str(self.root) + m.group(0), text)

    def lay_out(self) -> None:
        volumes = {v["name"]: v for v in self.pod.get("volumes", [])}
        for mount in self.container.get("volumeMounts", []):
            target = Path(str(self.root) + mount["mountPath"])
            target.mkdir(parents=True, exist_ok=True)
            volume = volumes[mount["name"]]
            if "emptyDir" in volume:
                continue
            if "configMap" in volume:
                self._write_config_map(target, volume["configMap"])
            elif "secret" in volume:
                self._write_secret(target, volume["secret"])
            else:
                pytest.fail(f"no stand-in for volume {volume}")

    def _write_config_map(self, target: Path, source: dict[str, Any]) -> None:
        cm = self.rendered.find("ConfigMap", source["name"])
        items = source.get("items") or [{"key": k, "path": k} for k in (cm or {}).get("data", {})]
        for item in items:
            if cm is not None:
                content = cm["data"][item["key"]]
            else:
                content = EXTERNAL_CONFIGMAP_FILES.get(item["path"])
                assert content is not None, f"no stand-in for ConfigMap {source['name']} key {item['key']}"
            (target / item["path"]).write_text(self.moved(content))

    def _write_secret(self, target: Path, source: dict[str, Any]) -> None:
        assert source.get("items"), f"Secret {source['secretName']} is mounted without items: which files?"
        for item in source["items"]:
            value = self._secret_value(source["secretName"], item["key"])
            if value is None:
                value = self.secret_files.get(item["path"])
            assert value is not None, f"no stand-in for {source['secretName']}/{item['key']}"
            (target / item["path"]).write_text(value)

    def _secret_value(self, name: str, key: str) -> str | None:
        """The value when the chart renders the Secret itself (trial installs), else None."""
        secret = self.rendered.find("Secret", name)
        if secret is None:
            return None
        if key in secret.get("stringData", {}):
            return secret["stringData"][key]
        if key in secret.get("data", {}):
            return base64.b64decode(secret["data"][key]).decode()
        pytest.fail(f"Secret {name} has no key {key}")

    def environment(self) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        if self.pod.get("enableServiceLinks", True):
            env.update(service_links(self.rendered))
        for var in self.container.get("env", []):
            env[var["name"]] = self._env_value(var, env)
        return env

    def _env_value(self, var: dict[str, Any], env: dict[str, str]) -> str:
        if "value" in var:
            # Kubernetes expands $(NAME) from the variables defined before.
            return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)),
                          self.moved(var["value"]))
        source = var["valueFrom"]
        if "fieldRef" in source:
            return {"metadata.name": "pod-0", "metadata.namespace": "crs"}[source["fieldRef"]["fieldPath"]]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            value = self._secret_value(ref["name"], ref["key"])
            return value if value is not None else SECRET_ENV[var["name"]]
        pytest.fail(f"no stand-in for {var}")

    def run(self, *extra_args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Runs the container's command with its arguments and `extra_args`."""
        self.lay_out()
        args = [self.moved(a) for a in self.container.get("args", [])]
        return subprocess.run(
            [str(binary(self.container)), *args, *extra_args],
            env={**self.environment(), **(env or {})},
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def check_config(self) -> subprocess.CompletedProcess[str]:
        return self.run("--check-config")


def service_links(rendered: Rendered) -> dict[str, str]:
    """The variables the kubelet adds for every Service unless enableServiceLinks is false."""
    env = {}
    for svc in rendered.of_kind("Service"):
        name = svc["metadata"]["name"].upper().replace("-", "_")
        env[f"{name}_SERVICE_HOST"] = "10.0.0.1"
        for port in svc["spec"]["ports"]:
            env[f"{name}_SERVICE_PORT_{port['name'].upper()}"] = str(port["port"])
            env[f"{name}_PORT_{port['port']}_TCP"] = f"tcp://10.0.0.1:{port['port']}"
    return env


def containers(rendered: Rendered):
    for workload in rendered.workloads():
        pod = workload["spec"]["template"]["spec"]
        for container in pod["containers"]:
            yield f"{workload['kind']}/{workload['metadata']['name']}", pod, container


def check_all(rendered: Rendered, tmp_path: Path) -> list[str]:
    ran = []
    for i, (name, pod, container) in enumerate(containers(rendered)):
        result = Sandbox(tmp_path / str(i), rendered, pod, container).check_config()
        assert result.returncode == 0, f"{name}: --check-config exited {result.returncode}: {result.stderr.strip()}"
        assert "configuration OK" in result.stdout, f"{name}: {result.stdout}"
        ran.append(name)
    return ran


def test_every_container_passes_its_binarys_check(rendered: Rendered, tmp_path: Path) -> None:
    ran = check_all(rendered, tmp_path)
    assert {n.split("/")[1] for n in ran if n.startswith("Deployment/")} == {f"crs-{c}" for c in COMPONENTS}
    if rendered.values.get("global", {}).get("migrations", {}).get("enabled", True):
        assert {n for n in ran if n.startswith("Job/")} == {f"Job/crs-{c}-migrations" for c in COMPONENTS}


def run_one(
    rendered: Rendered, tmp_path: Path, name: str, secret_files: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    for i, (n, pod, container) in enumerate(containers(rendered)):
        if n == name:
            return Sandbox(tmp_path / str(i), rendered, pod, container, secret_files).check_config()
    raise AssertionError(f"{name} not rendered")


def test_a_key_the_binary_does_not_know_fails(tmp_path: Path) -> None:
    rendered = render({"intake": {"extraEnv": [{"name": "CRS_SERVER__LISTEN_ADR", "value": "0.0.0.0:1"}]}})
    result = run_one(rendered, tmp_path, "Deployment/crs-intake")
    assert result.returncode == 2, result
    assert "listen_adr" in result.stderr


def test_service_links_would_break_the_configuration(defaults: Rendered, tmp_path: Path) -> None:
    """Why pods set enableServiceLinks: false: the kubelet's CRS_<SERVICE>_... variables would be
    read as configuration keys."""
    with_links = copy.deepcopy(defaults)
    for deployment in with_links.of_kind("Deployment"):
        deployment["spec"]["template"]["spec"]["enableServiceLinks"] = True
    result = run_one(with_links, tmp_path, "Deployment/crs-triage")
    assert result.returncode == 2, result
    assert "unknown field" in result.stderr


def test_an_unparsable_policy_file_fails(tmp_path: Path) -> None:
    rendered = render({"triage": {"slaPolicies": {"content": "[[policy]]\nid = 1\n"}}})
    result = run_one(rendered, tmp_path, "Deployment/crs-triage")
    assert result.returncode == 2, result
    # The problem names the mounted file and the line.
    assert "/etc/crs/policies/sla-policies.toml:2:" in result.stderr, result.stderr


def test_tls_material_is_checked_by_the_binary(tmp_path: Path) -> None:
    """With global.tls.enabled the services read the mounted certificate, key and CA: a key that
    does not belong to the certificate, or a CA that did not sign it, fails the check."""
    production = render(load_values(CHART_DIR / "ci" / "production-values.yaml"))
    assert run_one(production, tmp_path / "ok", "Deployment/crs-triage").returncode == 0
    other = tls_material()
    result = run_one(production, tmp_path / "key", "Deployment/crs-triage", {"tls.key": other["tls.key"]})
    assert result.returncode == 2, result
    assert "tls.key_file" in result.stderr
    result = run_one(production, tmp_path / "ca", "Deployment/crs-intake", {"ca.crt": other["ca.crt"]})
    assert result.returncode == 2, result
    assert "tls.ca_file" in result.stderr


def test_migration_jobs_are_checked_for_migrating_only(defaults: Rendered, tmp_path: Path) -> None:
    """A Job holds no key: its check covers what --migrate-only needs, the database."""
    job = defaults.get("Job", "crs-intake-migrations")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert "--migrate-only" in container["args"]
    assert not any(m["mountPath"].startswith("/var/run/secrets") for m in container["volumeMounts"])
    result = run_one(defaults, tmp_path, "Job/crs-intake-migrations")
    assert result.returncode == 0, result.stderr
