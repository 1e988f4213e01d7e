"""The Helm chart in k8s/cxpt: lint, render and validate it for the default values and every example.

State: the chart, its values files, Helm built by deploy/tools.sh, the Kubernetes JSON schemas of
kubernetes-validate (offline). Action: helm lint / helm template. Expectation: clean lint, every
object valid for KUBE_VERSION, and the chart's own rules (docs/deploy-kubernetes.md) hold.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "k8s" / "cxpt"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
VALUES_FILES: list[Path | None] = [None, *EXAMPLES]
KUBE_VERSION = "1.33.0"  # validated against this version's schemas (kubernetes-validate bundles them)
RELEASE = "cxpt"

SINGLETONS = {"oracle", "funding", "watcher", "settlement", "metrics"}
PARTITIONED = {"matcher", "risk"}
AUTOSCALED = {"gateway", "wspush"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "Job", "Pod"}
RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)


def _ids(path: Path | None) -> str:
    return "default" if path is None else path.stem


def _args(values: Path | None, *extra: str) -> list[str]:
    return [*(["-f", str(values)] if values else []), "--kube-version", KUBE_VERSION, *extra]


def _run(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120, check=False)


@cache
def _render(helm: Path, values: Path | None, *sets: str) -> tuple[dict[str, Any], ...]:
    done = _run(helm, "template", RELEASE, str(CHART), *_args(values, *sets))
    assert done.returncode == 0, done.stderr
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def _component(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["labels"].get("app.kubernetes.io/component", ""))


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]
    return spec


def _workloads(objs: tuple[dict[str, Any], ...]) -> Iterator[dict[str, Any]]:
    return (o for o in objs if o["kind"] in WORKLOAD_KINDS)


def _services_in_dev_sh() -> set[str]:
    """The services `deploy/dev.sh up` runs, less the local-only developer feeds."""
    match = re.search(r"^SERVICES=\(([^)]*)\)", (ROOT / "deploy" / "dev.sh").read_text(), re.M)
    assert match
    return {s for s in match.group(1).split() if not s.startswith("devtools.")}


@pytest.mark.parametrize("values", VALUES_FILES, ids=_ids)
def test_lint_is_clean(helm: Path, values: Path | None) -> None:
    done = _run(helm, "lint", "--strict", str(CHART), *_args(values))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[WARNING]" not in done.stdout and "[ERROR]" not in done.stdout, done.stdout


@pytest.mark.parametrize("values", VALUES_FILES, ids=_ids)
def test_every_object_validates_against_the_kubernetes_schema(helm: Path, values: Path | None) -> None:
    objs = _render(helm, values)
    assert objs
    for obj in objs:
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")


@pytest.mark.parametrize("values", VALUES_FILES, ids=_ids)
def test_one_workload_per_service_with_its_replica_rule(helm: Path, values: Path | None) -> None:
    objs = _render(helm, values)
    workloads = {_component(o): o for o in objs if o["kind"] in {"Deployment", "StatefulSet"}}
    assert set(workloads) == _services_in_dev_sh()
    for name in SINGLETONS:
        assert workloads[name]["spec"]["replicas"] == 1, name
        if workloads[name]["kind"] == "Deployment":
            assert workloads[name]["spec"]["strategy"] == {"type": "Recreate"}, name
    assert workloads["settlement"]["kind"] == "StatefulSet"  # at most one pod of its identity
    for name in PARTITIONED:
        sts = workloads[name]
        assert sts["kind"] == "StatefulSet"
        assert 1 <= sts["spec"]["replicas"] <= 8
        env = {e["name"]: e for e in _pod_spec(sts)["containers"][0]["env"]}
        assert env["INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    hpas = {o["spec"]["scaleTargetRef"]["name"]: o for o in objs if o["kind"] == "HorizontalPodAutoscaler"}
    assert {_component(workloads[n]) for n in AUTOSCALED} <= {_component(h) for h in hpas.values()}
    for name in AUTOSCALED:
        assert workloads[name]["metadata"]["name"] in hpas
        assert "replicas" not in workloads[name]["spec"]  # the HPA owns it


@pytest.mark.parametrize("values", VALUES_FILES, ids=_ids)
def test_every_container_is_restricted_sized_and_probed(helm: Path, values: Path | None) -> None:
    for obj in _workloads(_render(helm, values)):
        pod = _pod_spec(obj)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod.get("automountServiceAccountToken") is False
        for c in pod["containers"]:
            where = f"{obj['kind']}/{obj['metadata']['name']}/{c['name']}"
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), where
            if obj["kind"] in {"Deployment", "StatefulSet"}:
                assert c["livenessProbe"] and c["readinessProbe"], where


@pytest.mark.parametrize("values", VALUES_FILES, ids=_ids)
def test_labels_pdbs_network_policies_and_no_secrets(helm: Path, values: Path | None) -> None:
    objs = _render(helm, values)
    for obj in objs:
        labels = obj["metadata"]["labels"]
        assert all(k in labels for k in RECOMMENDED_LABELS), obj["metadata"]["name"]
        assert labels["app.kubernetes.io/instance"] == RELEASE
    assert not [o for o in objs if o["kind"] == "Secret"]  # only references to existing Secrets
    pdbs = {_component(o): o for o in objs if o["kind"] == "PodDisruptionBudget"}
    assert set(pdbs) == _services_in_dev_sh()
    for name in SINGLETONS:  # minAvailable 1 on one pod would block every drain
        assert pdbs[name]["spec"]["maxUnavailable"] == 1, name
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    default = [
        p
        for p in policies
        if p["spec"]["podSelector"]["matchLabels"].keys()
        == {"app.kubernetes.io/name", "app.kubernetes.io/instance"}
    ]
    assert default and default[0]["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert {_component(p) for p in policies} >= {"gateway", "wspush", "metrics", "oracle"}
    for cm in (o for o in objs if o["kind"] == "ConfigMap"):
        assert not {k for k in cm["data"] if re.search(r"SECRET|KEY$|PASSWORD", k)}, cm["data"]


def test_keys_come_from_the_existing_secret_only_where_used(helm: Path) -> None:
    objs = _render(helm, None)
    refs: dict[str, set[str]] = {}
    for obj in _workloads(objs):
        for c in _pod_spec(obj)["containers"]:
            for e in c.get("env", []):
                if "secretKeyRef" in e.get("valueFrom", {}):
                    assert e["valueFrom"]["secretKeyRef"]["name"] == "cxpt-secrets"
                    refs.setdefault(_component(obj), set()).add(e["name"])
    assert refs == {
        "gateway": {"GATEWAY_SESSION_SECRET", "ADMIN_JWT_KEY"},
        "wspush": {"GATEWAY_SESSION_SECRET"},
        "settlement": {"CHAIN_SETTLEMENT_KEY"},
    }


def test_bootstrap_job_and_gateway_test_are_hooks(helm: Path) -> None:
    objs = _render(helm, None)
    job = next(o for o in objs if o["kind"] == "Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert _pod_spec(job)["containers"][0]["command"] == ["python", "-m", "services.common.bootstrap"]
    test = next(o for o in objs if o["kind"] == "Pod")
    assert test["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert "/ready" in test["spec"]["containers"][0]["command"][-1]


def test_clickhouse_dsn_from_a_secret_is_not_in_the_config_map(helm: Path) -> None:
    objs = _render(helm, CHART / "examples" / "clickhouse-operator.yaml")
    cm = next(o for o in objs if o["kind"] == "ConfigMap")
    assert "CLICKHOUSE_DSN" not in cm["data"]
    metrics = next(o for o in objs if o["kind"] == "Deployment" and _component(o) == "metrics")
    env = {e["name"]: e for e in _pod_spec(metrics)["containers"][0]["env"]}
    assert env["CLICKHOUSE_DSN"]["valueFrom"]["secretKeyRef"]["name"] == "cxpt-clickhouse"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("services.settlement.replicas=2", "singleton: replicas must be 1"),
        ("services.oracle.replicas=3", "singleton: replicas must be 1"),
        ("services.matcher.replicas=9", "9 replicas but 8 partitions"),
        ("clickhouse.dsn=chdb:///data", "embedded chdb:// engine"),
        ("kafka.securityProtocol=SASL_SSL", "set kafka.sasl.username and kafka.sasl.passwordSecret.name"),
        ("cassandra.username=cxpt", "set cassandra.passwordSecret.name too"),
    ],
)
def test_the_chart_refuses_values_that_break_its_rules(helm: Path, override: str, message: str) -> None:
    done = _run(helm, "template", RELEASE, str(CHART), *_args(None, "--set", override))
    assert done.returncode != 0
    assert message in done.stderr


def test_store_credentials_come_from_their_secrets_and_cas_are_mounted(helm: Path) -> None:
    # State / Action: Strimzi's SCRAM user over TLS, K8ssandra's superuser.
    objs = _render(helm, CHART / "examples" / "strimzi.yaml", "--set", "cassandra.username=cxpt-superuser",
                   "--set", "cassandra.passwordSecret.name=cxpt-superuser")  # fmt: skip
    # Expectation: the config map names the protocol, mechanism, user and CA path, never a
    # password; every workload reads the passwords from the Secrets and mounts the Kafka CA.
    cm = next(o for o in objs if o["kind"] == "ConfigMap")["data"]
    assert (cm["KAFKA_SECURITY_PROTOCOL"], cm["KAFKA_SASL_MECHANISM"], cm["KAFKA_SASL_USERNAME"]) == (
        "SASL_SSL", "SCRAM-SHA-512", "cxpt")  # fmt: skip
    assert cm["KAFKA_SSL_CA_LOCATION"] == "/etc/cxpt/kafka-ca/ca.crt"
    assert cm["CASSANDRA_USERNAME"] == "cxpt-superuser"
    for obj in _workloads(objs):
        if obj["kind"] == "Pod":  # the chart's test pod only calls the gateway
            continue
        spec = _pod_spec(obj)
        env = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef") for e in spec["containers"][0]["env"]}
        assert env["KAFKA_SASL_PASSWORD"] == {"name": "cxpt", "key": "password"}, obj["metadata"]["name"]
        assert env["CASSANDRA_PASSWORD"] == {"name": "cxpt-superuser", "key": "password"}
        mounts = {m["name"]: m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
        assert mounts["kafka-ca"] == "/etc/cxpt/kafka-ca"
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["kafka-ca"]["secret"]["secretName"] == "cxpt-cluster-ca-cert"
