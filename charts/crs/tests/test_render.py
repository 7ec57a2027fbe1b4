"""What the rendered objects promise: labels, probes and shutdown, hardening, secrets kept out of
ConfigMaps, migrations as hooks, NetworkPolicies that follow the flow, and the optional parts."""

from __future__ import annotations

import base64
import tomllib
from typing import Any

import helm_python as helm
import pytest
import yaml

from conftest import CHART_DIR, COMPONENTS, NAMESPACE, RELEASE, VALUE_SETS, Rendered, load_values, render

STANDARD_LABELS = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
]
PRIVATE_RANGES = {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def config_of(rendered: Rendered, component: str) -> dict[str, Any]:
    return tomllib.loads(rendered.get("ConfigMap", f"{RELEASE}-{component}")["data"]["config.toml"])


def selects(peer: dict[str, Any], component: str) -> bool:
    labels = peer.get("podSelector", {}).get("matchLabels", {})
    return labels.get("app.kubernetes.io/component") == component and labels.get("app.kubernetes.io/instance") == RELEASE


def grpc_ingress(policy: dict[str, Any]) -> dict[str, Any]:
    rules = [r for r in policy["spec"]["ingress"] if any(p["port"] == 50051 for p in r["ports"])]
    assert len(rules) == 1
    return rules[0]


# -- lint and schema --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", VALUE_SETS, ids=lambda p: p.name)
def test_helm_lint_finds_nothing_wrong(path) -> None:
    report = helm.lint(CHART_DIR, load_values(path), strict=True, namespace=NAMESPACE)
    serious = [m for m in report["messages"] if m["severity"] >= 2]
    assert not report["errors"] and not serious, report


@pytest.mark.parametrize(
    "values",
    [
        {"globl": {}},
        {"intake": {"replica": 3}},
        {"global": {"tls": {"enable": True}}},
        {"global": {"tls": {"configureServices": True}}},
        {"intake": {"config": {"tls": {"reload_interval": 5}}}},
        {"global": {"networkPolicy": {"postgresql": {"port": [5432]}}}},
        {"triage": {"config": {"polices": {"file": "x"}}}},
        {"legalReview": {"config": {"review": {"claim_lease_sec": 60}}}},
        {"notification": {"resources": {"limit": {"memory": "1Gi"}}}},
        {"metrics": {"serviceMonitor": {"enabled": True, "intervall": "1m"}}},
    ],
    ids=lambda v: yaml.safe_dump(v, default_flow_style=True).strip(),
)
def test_a_misspelled_key_fails_the_install(values: dict[str, Any]) -> None:
    with pytest.raises(helm.HelmValuesError, match="additional properties"):
        render(values)


def test_a_wrong_type_fails_the_install() -> None:
    with pytest.raises(helm.HelmValuesError):
        render({"intake": {"replicas": "two"}})


def test_the_schema_is_strict_everywhere() -> None:
    """Every object in the schema refuses unknown keys, except Kubernetes objects passed through
    as they are (Kubernetes checks those) and maps of names."""
    schema = yaml.safe_load((CHART_DIR / "values.schema.json").read_text())
    passthrough = {"#/$defs/affinity", "#/$defs/topologySpreadConstraint", "#/$defs/envVar/properties/valueFrom"}
    loose = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and where not in passthrough:
                if "additionalProperties" not in node or node["additionalProperties"] is True:
                    loose.append(where)
            for key, child in node.items():
                walk(child, f"{where}/{key}")
        elif isinstance(node, list):
            for i, child in enumerate(node):
                walk(child, f"{where}/{i}")

    walk(schema, "#")
    assert not loose, loose


# -- every object ---------------------------------------------------------------------------------


def test_objects_carry_the_standard_labels(rendered: Rendered) -> None:
    for obj in rendered.objects:
        labels = obj["metadata"].get("labels", {})
        missing = [label for label in STANDARD_LABELS if label not in labels]
        if obj["kind"] in {"Secret", "ServiceMonitor", "PrometheusRule"}:  # shared by every component
            missing = [m for m in missing if m != "app.kubernetes.io/component"]
        assert not missing, f"{obj['kind']}/{obj['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert obj["metadata"]["namespace"] == NAMESPACE


def test_names_are_dns_labels(rendered: Rendered) -> None:
    for obj in rendered.objects:
        name = obj["metadata"]["name"]
        assert len(name) <= 63 and name == name.lower(), name


def test_long_release_names_are_shortened() -> None:
    with helm.Chart.load(CHART_DIR) as chart:
        manifests = chart.render({}, name="a-release-name-that-is-quite-long-indeed-1234567", namespace="crs")
    for source, text in manifests.items():
        if source.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                assert len(doc["metadata"]["name"]) <= 63, doc["metadata"]["name"]


# -- the services' pods -----------------------------------------------------------------------------


def test_each_service_runs_its_binary_from_the_one_image(rendered: Rendered) -> None:
    images = set()
    for component in COMPONENTS:
        container = pod_spec(rendered.deployment(component))["containers"][0]
        assert container["command"] == [f"/usr/local/bin/crs-{component}"]
        assert container["args"] == ["--config", "/etc/crs/config.toml"]
        images.add(container["image"])
    for job in rendered.of_kind("Job"):
        images.add(pod_spec(job)["containers"][0]["image"])
    assert len(images) == 1, images


def test_probes_are_native_grpc_health_checks(rendered: Rendered) -> None:
    tls = rendered.values.get("global", {}).get("tls", {}).get("enabled", False)
    for component in COMPONENTS:
        container = pod_spec(rendered.deployment(component))["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        # With TLS on, the kubelet's gRPC probes (which cannot speak TLS) ask a plaintext port
        # that serves health alone.
        probed = 50052 if tls else 50051
        assert ports == {"grpc": 50051, "metrics": 9100, **({"health": 50052} if tls else {})}
        for probe in ("startupProbe", "readinessProbe"):
            assert container[probe]["grpc"] == {"port": probed, "service": ""}, probe
        # Liveness asks whether the process runs, not whether its database answers: an outage
        # takes pods out of rotation without restarting them.
        assert container["livenessProbe"]["grpc"] == {"port": probed, "service": "liveness"}


def test_the_grace_period_covers_the_pause_and_the_drain(rendered: Rendered) -> None:
    for component in COMPONENTS:
        spec = pod_spec(rendered.deployment(component))
        container = spec["containers"][0]
        pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
        drain = config_of(rendered, component)["server"]["shutdown_grace_secs"]
        assert pause >= 1 and drain >= 1
        assert spec["terminationGracePeriodSeconds"] > pause + drain


def test_a_grace_period_too_short_is_refused() -> None:
    with pytest.raises(helm.HelmError, match="must exceed"):
        render({"global": {"terminationGracePeriodSeconds": 15}})
    grace = render({"global": {"terminationGracePeriodSeconds": 16}})
    assert pod_spec(grace.deployment("intake"))["terminationGracePeriodSeconds"] == 16


def test_pods_are_hardened(rendered: Rendered) -> None:
    for workload in rendered.workloads():
        spec = pod_spec(workload)
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] > 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0
            assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
            tmp = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
            assert tmp and "emptyDir" in volumes[tmp[0]["name"]]
            for mount in container["volumeMounts"]:
                if mount["mountPath"] != "/tmp":
                    assert mount.get("readOnly") is True, mount
            assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
            assert container["resources"]["limits"]["memory"]


def test_service_accounts_mount_no_token(rendered: Rendered) -> None:
    for sa in rendered.of_kind("ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False


def test_every_service_supports_several_replicas(defaults: Rendered) -> None:
    for component in COMPONENTS:
        assert defaults.deployment(component)["spec"]["replicas"] >= 2
        assert defaults.get("PodDisruptionBudget", f"{RELEASE}-{component}")["spec"]["maxUnavailable"] == 1


def test_peers_are_the_in_cluster_services(defaults: Rendered) -> None:
    assert config_of(defaults, "intake")["peers"] == {
        "triage": "http://crs-triage.crs.svc:50051",
        "legal_review": "http://crs-legal-review.crs.svc:50051",
        "notification": "http://crs-notification.crs.svc:50051",
    }
    assert set(config_of(defaults, "triage")["peers"]) == {"legal_review"}
    assert set(config_of(defaults, "legal-review")["peers"]) == {"intake", "notification", "triage"}
    assert "peers" not in config_of(defaults, "notification")


def test_services_listen_on_every_address_with_fixed_ports(defaults: Rendered) -> None:
    for component in COMPONENTS:
        cfg = config_of(defaults, component)
        assert cfg["server"]["listen_addr"] == "0.0.0.0:50051"
        assert cfg["admin"]["listen_addr"] == "0.0.0.0:9100"
    ipv6 = render({"global": {"listenHost": "::"}})
    assert config_of(ipv6, "intake")["server"]["listen_addr"] == "[::]:50051"


def test_service_config_values_keep_their_types(production: Rendered) -> None:
    """Whole numbers stay integers in the TOML (the services refuse 30.0 for a count)."""
    intake = config_of(production, "intake")
    assert intake["limits"]["max_items"] == 500 and isinstance(intake["limits"]["max_items"], int)
    standard = intake["rate_limits"]["tiers"]["standard"]["normal"]["requests"]
    assert standard == {"rate_per_sec": 2.5, "burst": 60}
    assert intake["rate_limits"]["tiers"]["national"]["binding"]["requests"]["shadow"] is True
    assert intake["outbox"]["batch_size"] == 128
    assert intake["database"]["max_connections"] == 20
    assert config_of(production, "legal-review")["timers"]["batch"] == 512


# -- configuration and secrets ----------------------------------------------------------------------


def secret_values(rendered: Rendered) -> list[str]:
    values = []
    for secret in rendered.of_kind("Secret"):
        values += list(secret.get("stringData", {}).values())
        values += [base64.b64decode(v).decode() for v in secret.get("data", {}).values()]
    return values


def test_configmaps_hold_no_secrets(rendered: Rendered) -> None:
    secrets = secret_values(rendered)
    for cm in rendered.of_kind("ConfigMap"):
        for key, text in cm["data"].items():
            where = f"ConfigMap/{cm['metadata']['name']}:{key}"
            for forbidden in ("postgres://", "postgresql://", "redis://", "rediss://", "PRIVATE KEY", "password"):
                assert forbidden not in text, f"{where} holds {forbidden!r}"
            for value in secrets:
                assert value not in text, f"{where} holds a Secret's value"


def test_urls_and_keys_come_from_secrets(rendered: Rendered) -> None:
    for component in COMPONENTS:
        spec = pod_spec(rendered.deployment(component))
        env = env_of(spec["containers"][0])
        for name in ("CRS_DATABASE__URL", "CRS_REDIS__URL"):
            assert "secretKeyRef" in env[name]["valueFrom"], name
        assert env["CRS_DATABASE__MIGRATE"]["value"] == "false"
        auth = config_of(rendered, component)["auth"]
        assert auth["service_key_file"] == f"/var/run/secrets/crs/keys/{component}.key"
        assert auth["token_public_key_files"] == ["/var/run/secrets/crs/keys/tokens.pub"]
        assert auth["service_public_keys_dir"] == "/var/run/secrets/crs/keys"
        assert ("token_signing_key_file" in auth) == (component == "intake")


def test_each_pod_holds_every_public_key_and_only_its_own_private_key(rendered: Rendered) -> None:
    public = {"tokens.pub"} | {f"{c}.pub" for c in COMPONENTS}
    for component in COMPONENTS:
        keys = next(v for v in pod_spec(rendered.deployment(component))["volumes"] if v["name"] == "keys")
        files = {item["path"] for item in keys["secret"]["items"]}
        # Only intake issues agencies' and reviewers' tokens.
        private = {f"{component}.key"} | ({"tokens.key"} if component == "intake" else set())
        assert files == public | private, component


def test_existing_secrets_are_used_and_no_secret_is_created(production: Rendered) -> None:
    assert production.of_kind("Secret") == []
    intake = env_of(pod_spec(production.deployment("intake"))["containers"][0])
    assert intake["CRS_DATABASE__URL"]["valueFrom"]["secretKeyRef"] == {"name": "crs-databases", "key": "intake"}
    assert intake["CRS_REDIS__URL"]["valueFrom"]["secretKeyRef"] == {"name": "crs-redis", "key": "url"}
    notification = env_of(pod_spec(production.deployment("notification"))["containers"][0])
    assert notification["CRS_REDIS__URL"]["valueFrom"]["secretKeyRef"] == {"name": "crs-redis-notification", "key": "url"}
    keys = next(v for v in pod_spec(production.deployment("triage"))["volumes"] if v["name"] == "keys")
    assert keys["secret"]["secretName"] == "crs-keys"
    assert "WARNING" not in production.notes


def test_trial_secrets_are_marked_and_announced(defaults: Rendered) -> None:
    connections = defaults.get("Secret", "crs-connections")
    assert "not-for-production" in yaml.safe_dump(connections["metadata"]["annotations"])
    assert set(connections["stringData"]) == {f"{c}-database-url" for c in COMPONENTS} | {"redis-url"}
    keys = defaults.get("Secret", "crs-keys")
    assert keys["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    names = ["tokens", *COMPONENTS]
    assert set(keys["data"]) == {f"{n}.{half}" for n in names for half in ("key", "pub")}
    # Distinct Ed25519 keys: the services check each (test_check_config runs them on these files).
    private = [base64.b64decode(keys["data"][f"{n}.key"]).decode() for n in names]
    assert all(k.startswith("-----BEGIN PRIVATE KEY-----") for k in private)
    assert len(set(private)) == len(names)
    assert "crs-keys" in defaults.notes
    assert "WARNING" in defaults.notes and "crs-connections" in defaults.notes


def test_the_policy_file_ships_with_the_chart_and_rolls_triage(defaults: Rendered) -> None:
    triage_cm = defaults.get("ConfigMap", "crs-triage")
    assert triage_cm["data"]["sla-policies.toml"] == (CHART_DIR / "files" / "sla-policies.toml").read_text()
    policies = config_of(defaults, "triage")["policies"]
    assert policies["sla_file"] == "/etc/crs/policies/sla-policies.toml"
    assert policies["rules_file"] == "/etc/crs/rules/triage-rules.toml"
    shipped = (CHART_DIR.parents[1] / "config" / "sla-policies.toml").read_text()
    assert triage_cm["data"]["sla-policies.toml"] == shipped, "files/sla-policies.toml differs from config/"
    rules = (CHART_DIR.parents[1] / "config" / "triage-rules.toml").read_text()
    assert triage_cm["data"]["triage-rules.toml"] == rules, "files/triage-rules.toml differs from config/"

    def checksums(r: Rendered) -> dict[str, str]:
        return {c: r.deployment(c)["spec"]["template"]["metadata"]["annotations"]["checksum/config"] for c in COMPONENTS}

    before = checksums(defaults)
    changed = checksums(render({"triage": {"slaPolicies": {"content": "# edited\n" + shipped}}}))
    assert changed["triage"] != before["triage"]
    changed = checksums(render({"triage": {"rules": {"content": "# edited\n" + rules}}}))
    assert changed["triage"] != before["triage"]
    assert {c: v for c, v in changed.items() if c != "triage"} == {c: v for c, v in before.items() if c != "triage"}
    assert checksums(render({"intake": {"config": {"limits": {"max_items": 10}}}}))["intake"] != before["intake"]


def test_telemetry_settings_reach_every_service(production: Rendered) -> None:
    for component in COMPONENTS:
        env = env_of(pod_spec(production.deployment(component))["containers"][0])
        assert env["OTEL_SERVICE_NAME"]["value"] == f"crs-{component}"
        assert env["OTEL_TRACES_SAMPLER"]["value"] == "parentbased_traceidratio"
        assert env["OTEL_TRACES_SAMPLER_ARG"]["value"] == "0.25"
        assert "deployment.environment.name=production" in env["OTEL_RESOURCE_ATTRIBUTES"]["value"]
        assert config_of(production, component)["telemetry"]["otlp_endpoint"] == "http://otel-collector.observability.svc:4317"


def test_tls_turns_on_mutual_tls_in_every_service(production: Rendered, defaults: Rendered) -> None:
    for component in COMPONENTS:
        container = pod_spec(production.deployment(component))["containers"][0]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert {"/var/run/secrets/crs/tls", "/var/run/secrets/crs/ca"} <= mounts
        env = env_of(container)
        assert env["CRS_TLS__ENABLED"]["value"] == "true"
        assert env["CRS_TLS__CERT_FILE"]["value"] == "/var/run/secrets/crs/tls/tls.crt"
        assert env["CRS_TLS__KEY_FILE"]["value"] == "/var/run/secrets/crs/tls/tls.key"
        assert env["CRS_TLS__CA_FILE"]["value"] == "/var/run/secrets/crs/ca/ca.crt"
        assert env["CRS_TLS__CLIENT_AUTH"]["value"] == "optional"
        config = config_of(production, component)
        assert config["server"]["health_listen_addr"] == "0.0.0.0:50052"
        assert all(url.startswith("https://") for url in config.get("peers", {}).values()), config
    assert config_of(production, "triage")["peers"]["legal_review"] == "https://crs-legal-review.crs.svc:50051"
    assert "Mutual TLS is on" in production.notes

    # Off by default: plaintext, peers over http, health on the gRPC port.
    for component in COMPONENTS:
        container = pod_spec(defaults.deployment(component))["containers"][0]
        assert not [e for e in env_of(container) if e.startswith("CRS_TLS__")]
        assert "health_listen_addr" not in config_of(defaults, component)["server"]
    assert config_of(defaults, "triage")["peers"]["legal_review"].startswith("http://")

    required = render({"global": {"tls": {"enabled": True, "serverSecretName": "s", "caSecretName": "c", "clientAuth": "required"}}})
    env = env_of(pod_spec(required.deployment("intake"))["containers"][0])
    assert env["CRS_TLS__CLIENT_AUTH"]["value"] == "required"
    with pytest.raises(helm.HelmValuesError):
        render({"global": {"tls": {"enabled": True, "serverSecretName": "s", "caSecretName": "c", "clientAuth": "sometimes"}}})


def test_the_webhook_secret_key_is_generated_once_and_mounted_where_it_is_used(defaults: Rendered) -> None:
    secret = defaults.get("Secret", "crs-webhook-secret-key")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(base64.b64decode(secret["data"]["webhook-secret.key"])) >= 32
    for component in COMPONENTS:
        container = pod_spec(defaults.deployment(component))["containers"][0]
        holds = component in ("intake", "notification")
        env = env_of(container)
        assert ("CRS_WEBHOOKS__SECRET_KEY_FILE" in env) == holds, component
        assert ("/var/run/secrets/crs/webhooks" in {m["mountPath"] for m in container["volumeMounts"]}) == holds
        if holds:
            assert env["CRS_WEBHOOKS__SECRET_KEY_FILE"]["value"] == "/var/run/secrets/crs/webhooks/secret.key"
    assert "generated" in defaults.notes and "webhook" in defaults.notes
    own = render({"global": {"webhookSecretKey": {"existingSecret": "crs-webhooks", "existingSecretKey": "key"}}})
    assert own.find("Secret", "crs-webhook-secret-key") is None
    volumes = {v["name"]: v for v in pod_spec(own.deployment("intake"))["volumes"]}
    assert volumes["webhook-secret-key"]["secret"]["secretName"] == "crs-webhooks"
    assert volumes["webhook-secret-key"]["secret"]["items"] == [{"key": "key", "path": "secret.key"}]


def test_email_takes_its_smtp_url_from_a_secret_and_may_reach_only_the_mail_server(defaults: Rendered) -> None:
    container = pod_spec(defaults.deployment("notification"))["containers"][0]
    assert "CRS_EMAIL__SMTP_URL" not in env_of(container)
    policy = defaults.get("NetworkPolicy", "crs-notification")["spec"]["egress"]
    assert not [r for r in policy if 587 in {p["port"] for p in r.get("ports", [])}], "no mail egress without email"
    with_email = render({
        "notification": {
            "email": {"existingSecret": "crs-smtp"},
            "networkPolicy": {"smtpEgress": {"to": [{"ipBlock": {"cidr": "203.0.113.25/32"}}]}},
        }
    })
    env = env_of(pod_spec(with_email.deployment("notification"))["containers"][0])
    assert env["CRS_EMAIL__SMTP_URL"]["valueFrom"]["secretKeyRef"] == {"name": "crs-smtp", "key": "smtp-url"}
    mail = [r for r in with_email.get("NetworkPolicy", "crs-notification")["spec"]["egress"]
            if {p["port"] for p in r.get("ports", [])} == {465, 587}]
    assert len(mail) == 1 and mail[0]["to"] == [{"ipBlock": {"cidr": "203.0.113.25/32"}}]


def test_development_mode_cannot_be_set_through_the_chart() -> None:
    with pytest.raises(helm.HelmError):
        render({"notification": {"config": {"delivery": {"development_mode": True}}}})


# -- migrations ----------------------------------------------------------------------------------


def hook_weight(obj: dict[str, Any]) -> int:
    return int(obj["metadata"]["annotations"]["helm.sh/hook-weight"])


def test_migrations_run_as_hooks_before_the_services(defaults: Rendered) -> None:
    jobs = defaults.of_kind("Job")
    assert sorted(j["metadata"]["name"] for j in jobs) == sorted(f"crs-{c}-migrations" for c in COMPONENTS)
    for job in jobs:
        annotations = job["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
        assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
        spec = job["spec"]["template"]["spec"]
        assert spec["restartPolicy"] == "Never"
        assert spec["containers"][0]["args"][-1] == "--migrate-only"
        assert job["spec"]["backoffLimit"] >= 1 and job["spec"]["activeDeadlineSeconds"] > 0


def test_a_migration_job_needs_nothing_created_after_it(rendered: Rendered) -> None:
    """Hooks run before the release's objects exist: whatever a Job uses is an earlier hook or
    something the operator made."""
    regular = {(o["kind"], o["metadata"]["name"]) for o in rendered.objects if "helm.sh/hook" not in o["metadata"]["annotations"]}
    hooks = {(o["kind"], o["metadata"]["name"]): hook_weight(o) for o in rendered.hooks()}
    for job in rendered.of_kind("Job"):
        spec = pod_spec(job)
        used = [("ServiceAccount", spec["serviceAccountName"])]
        used += [("ConfigMap", v["configMap"]["name"]) for v in spec["volumes"] if "configMap" in v]
        used += [("Secret", e["valueFrom"]["secretKeyRef"]["name"]) for e in spec["containers"][0]["env"] if "valueFrom" in e]
        for ref in used:
            assert ref not in regular, f"{job['metadata']['name']} uses {ref}, created only after the hooks"
            if ref in hooks:
                assert hooks[ref] < hook_weight(job), f"{ref} is not created before {job['metadata']['name']}"


def test_migrations_can_be_left_to_the_operator() -> None:
    minimal = render(load_values(CHART_DIR / "ci" / "minimal-values.yaml"))
    assert minimal.hooks() == []
    for component in COMPONENTS:
        env = env_of(pod_spec(minimal.deployment(component))["containers"][0])
        assert env["CRS_DATABASE__MIGRATE"]["value"] == "false"


# -- network policies --------------------------------------------------------------------------------


def test_grpc_is_reachable_only_along_the_flow(defaults: Rendered) -> None:
    callers = {"triage": {"intake", "legal-review"}, "legal-review": {"triage", "intake"}, "notification": {"intake", "legal-review"}}
    assert "from" not in grpc_ingress(defaults.get("NetworkPolicy", "crs-intake")), "intake's gRPC port is public"
    for component, expected in callers.items():
        peers = grpc_ingress(defaults.get("NetworkPolicy", f"crs-{component}"))["from"]
        allowed = {c for c in COMPONENTS if any(selects(p, c) for p in peers)}
        assert allowed == expected, component
        assert len(peers) == len(expected), f"{component} admits more than its callers"


def test_extra_callers_are_admitted(production: Rendered) -> None:
    review = grpc_ingress(production.get("NetworkPolicy", "crs-legal-review"))["from"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "reviewers"}}} in review
    notification = grpc_ingress(production.get("NetworkPolicy", "crs-notification"))["from"]
    assert any(p.get("podSelector", {}).get("matchLabels") == {"app": "enforcement-consumer"} for p in notification)
    intake = grpc_ingress(production.get("NetworkPolicy", "crs-intake"))["from"]
    assert {c for c in COMPONENTS if any(selects(p, c) for p in intake)} == {"legal-review"}


def test_metrics_are_open_to_monitoring_only(rendered: Rendered) -> None:
    for policy in rendered.of_kind("NetworkPolicy"):
        if policy["metadata"]["name"].endswith("-migrations"):
            assert "ingress" not in policy["spec"] and "Ingress" in policy["spec"]["policyTypes"]
            continue
        metrics = [r for r in policy["spec"]["ingress"] if any(p["port"] == 9100 for p in r["ports"])]
        assert len(metrics) == 1 and metrics[0]["from"], policy["metadata"]["name"]
        for peer in metrics[0]["from"]:
            assert "namespaceSelector" in peer


def test_egress_is_dns_storage_peers_and_telemetry(production: Rendered) -> None:
    for component in COMPONENTS:
        policy = production.get("NetworkPolicy", f"crs-{component}")
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        rules = policy["spec"]["egress"]
        ports = [{(p["port"], p["protocol"]) for p in r.get("ports", [])} for r in rules]
        assert {(53, "UDP"), (53, "TCP")} in ports
        assert {(5432, "TCP")} in ports and {(6379, "TCP"), (6380, "TCP")} in ports and {(4317, "TCP")} in ports
        peers = [r for r in rules if {(50051, "TCP")} == {(p["port"], p["protocol"]) for p in r.get("ports", [])}]
        called = {c for r in peers for c in COMPONENTS for p in r["to"] if selects(p, c)}
        expected = {"intake": {"triage", "legal-review", "notification"}, "triage": {"legal-review"},
                    "legal-review": {"intake", "notification", "triage"}, "notification": set()}[component]
        assert called == expected, component
        for rule in rules:
            if component != "notification":
                assert rule.get("ports"), f"{component} has an egress rule open on every port"


def test_webhooks_reach_public_addresses_only(defaults: Rendered) -> None:
    rules = defaults.get("NetworkPolicy", "crs-notification")["spec"]["egress"]
    webhook = [r for r in rules if any("ipBlock" in t for t in r.get("to", []))]
    assert len(webhook) == 1
    blocks = {t["ipBlock"]["cidr"]: set(t["ipBlock"].get("except", [])) for t in webhook[0]["to"]}
    assert PRIVATE_RANGES <= blocks["0.0.0.0/0"]
    assert {"fc00::/7", "fe80::/10"} <= blocks["::/0"]
    assert [p["port"] for p in webhook[0]["ports"]] == [443]


def test_otlp_egress_only_when_exporting(defaults: Rendered) -> None:
    for policy in defaults.of_kind("NetworkPolicy"):
        for rule in policy["spec"].get("egress", []):
            assert all(p["port"] != 4317 for p in rule.get("ports", []))


# -- optional parts ------------------------------------------------------------------------------


def test_optional_parts_are_off_by_default(defaults: Rendered) -> None:
    for kind in ("HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule", "Ingress", "GRPCRoute", "HTTPRoute"):
        assert defaults.of_kind(kind) == [], kind


def test_autoscaling_replaces_fixed_replicas(production: Rendered) -> None:
    for component in COMPONENTS:
        assert "replicas" not in production.deployment(component)["spec"]
        hpa = production.get("HorizontalPodAutoscaler", f"crs-{component}")
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"crs-{component}"}
        assert hpa["spec"]["minReplicas"] >= 2
    metrics = production.get("HorizontalPodAutoscaler", "crs-intake")["spec"]["metrics"]
    assert {m["resource"]["name"] for m in metrics} == {"cpu", "memory"}


def test_alerts_cover_what_operators_act_on(production: Rendered) -> None:
    rules = production.get("PrometheusRule", "crs")["spec"]["groups"]
    exprs = " ".join(r["expr"] for g in rules for r in g["rules"])
    for needle in ('crs_sla_firings_total{kind="breach"', 'crs_deliveries_total{state="failed"', "crs_outbox_dead_letters",
                   "crs_outbox_lag_seconds", "crs_ratelimit_fallback_active", "crs_review_queue_oldest_age_seconds"):
        assert needle in exprs, needle
    monitor = production.get("ServiceMonitor", "crs")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchExpressions"][0]["values"] == COMPONENTS


def test_intake_is_published_with_tls(production: Rendered) -> None:
    ingress = production.get("Ingress", "crs-intake")
    assert ingress["spec"]["tls"] == [{"hosts": ["crs.example.org"], "secretName": "crs-public-tls"}]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "crs-intake", "port": {"name": "grpc"}}
    gateway = render(load_values(CHART_DIR / "ci" / "gateway-values.yaml"))
    route = gateway.get("GRPCRoute", "crs-intake")
    assert route["spec"]["rules"][0]["backendRefs"] == [{"name": "crs-intake", "port": 50051}]
    with pytest.raises(helm.HelmError, match="parentRefs"):
        render({"intake": {"route": {"enabled": True}}})


def test_notes_say_what_was_installed_and_how_to_reach_it(rendered: Rendered) -> None:
    for component in COMPONENTS:
        assert f"crs-{component}" in rendered.notes
    assert "port-forward svc/crs-intake 50051:50051" in rendered.notes
    if rendered.values.get("global", {}).get("tls", {}).get("enabled", False):
        # TLS: grpcurl verifies intake's certificate for its Service name.
        assert "grpcurl -cacert ca.crt -authority crs-intake.crs.svc 127.0.0.1:50051 list" in rendered.notes
    else:
        assert "grpcurl -plaintext 127.0.0.1:50051 list" in rendered.notes
    assert "grpc.health.v1.Health/Check" in rendered.notes


def test_the_chart_packages_without_its_tests(tmp_path) -> None:
    archive = helm.package(CHART_DIR, destination=tmp_path)
    with helm.Chart.load(archive) as chart:
        assert chart.name == "crs"
        names = [f["name"] for f in chart.files]
        assert "files/sla-policies.toml" in names and "README.md" in names
        assert not [n for n in names if n.startswith("tests/")]


def test_a_missing_url_is_named() -> None:
    with pytest.raises(helm.HelmError, match="existingSecret is needed for triage-database-url"):
        render({"triage": {"database": {"url": ""}}})
    with pytest.raises(helm.HelmError, match="existingSecret is needed for redis-url"):
        render({"global": {"redis": {"url": ""}}})


def test_migrations_may_run_as_the_table_owner() -> None:
    """The audit trail's grant needs the service's role to be less than the owner: the Job then
    takes the owner's URL from a Secret of its own, the service keeps its own."""
    rendered = render(
        {
            "legalReview": {
                "database": {
                    "existingSecret": "review-db",
                    "migrationsExistingSecret": "review-db-owner",
                    "migrationsExistingSecretKey": "owner-url",
                }
            }
        }
    )
    job = next(j for j in rendered.of_kind("Job") if "legal-review" in j["metadata"]["name"])
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CRS_DATABASE__URL"]["valueFrom"]["secretKeyRef"] == {"name": "review-db-owner", "key": "owner-url"}
    service = rendered.deployment("legal-review")["spec"]["template"]["spec"]["containers"][0]
    url = next(e for e in service["env"] if e["name"] == "CRS_DATABASE__URL")
    assert url["valueFrom"]["secretKeyRef"]["name"] == "review-db"
