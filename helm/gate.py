#!/usr/bin/env python3
"""Offline validation gate for the Helm chart helm/baemin (no cluster, no network).

Every ``helm/ci/*.yaml`` is one value set. For each, the chart is rendered with Helm's own library
(helm-python-sdk, Helm v4's Go code), linted (warnings fail), split into objects and checked:

* namespace   every namespaced object sets ``metadata.namespace`` to the release namespace;
* kubernetes  core kinds validate in strict mode (unknown fields rejected) against every version in
              ``KUBE_VERSIONS`` (kubernetes-validate's bundled OpenAPI schemas);
* crd-schema  Istio (``*.istio.io``) and NACK (``jetstream.nats.io``) objects validate against the JSON
              schemas in ``../shared/schemas`` (``index.json`` per folder); Prometheus-operator kinds only
              get a shape check (no schema is available offline);
* crd-cel     the CEL rules (``x-kubernetes-validations``) of those schemas, which the API server enforces
              and JSON Schema does not: every rule of every schema in the indexes is compiled at start
              (one that does not compile, or calls a function helm/kube_cel.py does not implement, stops
              the gate), and every rule is evaluated on every rendered object at its place in the schema
              (``properties``, ``items``, ``additionalProperties``, any depth) with ``self`` bound to the
              value there; transition rules (``oldSelf``) are skipped and counted: an install has no old
              object;
* checkov     one ``checkov --framework kubernetes`` run over every value set's output, any failed check
              fails (skips only through ``SKIPPED_CHECKS``, each with its reason);
* rule:*      the mesh's own rules (probes, port naming, principals, Istio hosts, HPA targets, PDB and
              workload selectors, service accounts, images).

Every ``helm/ci/broken/*.yaml`` is a value set that must make the gate fail (a render error, a
``values.schema.json`` rejection or any failed check); the gate fails if one of them passes.

Usage: scripts/chart-gate [--values FILE] [--chart DIR] [--values-dir DIR] [--schemas DIR]
Exit status: 0 all good, 1 a check failed, 2 the gate could not run (missing chart, schemas, tools).
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import yaml

import kube_cel  # helm/kube_cel.py: the Kubernetes CEL environment for the CRDs' rules

Obj = dict[str, Any]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHART = REPO_ROOT / "helm" / "baemin"
DEFAULT_VALUES_DIR = REPO_ROOT / "helm" / "ci"
# The repository is cloned with ../shared beside it.
DEFAULT_SCHEMAS_DIR = REPO_ROOT.parent / "shared" / "schemas"
BROKEN_SUBDIR = "broken"

RELEASE_NAME = "baemin"
RELEASE_NAMESPACE = "baemin"
KUBE_VERSIONS = ("1.29", "1.37")
TRUST_DOMAIN = "cluster.local"

# Principals from outside the chart that an AuthorizationPolicy may name: the ingress gateway's
# ServiceAccount (whatever namespace the gateway runs in). Keep this list explicit.
INGRESS_GATEWAY_SERVICE_ACCOUNTS = frozenset(
    {
        "istio-ingressgateway-service-account",  # istioctl / IstioOperator default profile
        "istio-ingressgateway",  # `helm install istio-ingressgateway istio/gateway`
        "istio-ingress",  # `helm install istio-ingress istio/gateway`
    }
)

# Checkov checks not run at all. Every entry needs a reason (why the finding does not apply to this
# chart, or what covers the risk instead); an entry without one fails the gate.
SKIPPED_CHECKS: dict[str, str] = {
    "CKV_K8S_43": (
        "image digest: a digest exists only once an image is released; `image.digest` renders "
        "repository:tag@digest (the production value set does), and the gate's own rule still demands "
        "an explicit tag everywhere"
    ),
}

# Checkov checks that do not apply to Helm test hooks (one-shot pods that run and exit); their
# findings on objects annotated `helm.sh/hook: test*` are ignored. Every other check applies.
NOT_APPLICABLE_TO_TEST_HOOKS: dict[str, str] = {
    "CKV_K8S_8": "liveness probe: a test pod runs once and exits",
    "CKV_K8S_9": "readiness probe: a test pod serves no traffic",
}

CLUSTER_SCOPED_KINDS = frozenset(
    {
        "APIService",
        "CSIDriver",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "IngressClass",
        "MutatingWebhookConfiguration",
        "Namespace",
        "PersistentVolume",
        "PriorityClass",
        "RuntimeClass",
        "StorageClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
    }
)

# Kinds that run pods and stay up: probes, service accounts and selectors are checked on these.
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet")
ISTIO_GROUP_SUFFIX = ".istio.io"
NACK_GROUP = "jetstream.nats.io"
PROMETHEUS_OPERATOR_GROUP = "monitoring.coreos.com"
PROMETHEUS_OPERATOR_KINDS = frozenset({"ServiceMonitor", "PodMonitor", "PrometheusRule"})

SERVICE_PORT_PREFIXES = ("grpc", "http")
SERVICE_APP_PROTOCOLS = frozenset({"grpc", "grpc-web", "http"})
GRPC_APP_PROTOCOLS = frozenset({"grpc", "grpc-web"})

MAX_LINES_PER_CHECK = 15


# ---------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class Finding:
    """One failure: the check that found it and a message naming the object."""

    check: str
    message: str


@dataclass(frozen=True)
class ValueSet:
    """A values file to render the chart with; ``must_fail`` for the ones under ci/broken/."""

    label: str
    path: Path
    must_fail: bool


@dataclass
class Result:
    """What the checks found for one value set."""

    value_set: ValueSet
    objects: list[Obj] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def failed_checks(self) -> list[str]:
        return sorted({f.check for f in self.findings})


class GateError(Exception):
    """The gate cannot run at all (exit status 2)."""


# ---------------------------------------------------------------------------------------------
# Object helpers


def api_group(obj: Obj) -> str:
    """The API group of an object's apiVersion ("" for the core group)."""
    api_version = str(obj.get("apiVersion", ""))
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def name_of(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", "?"))


def namespace_of(obj: Obj) -> str | None:
    namespace = (obj.get("metadata") or {}).get("namespace")
    return None if namespace is None else str(namespace)


def ref(obj: Obj) -> str:
    """``Kind/name`` for messages."""
    return f"{obj.get('kind', '?')}/{name_of(obj)}"


def is_test_hook(obj: Obj) -> bool:
    """A Helm test hook (``helm.sh/hook: test``, ``test-success``, ``test-failure``)."""
    hooks = ((obj.get("metadata") or {}).get("annotations") or {}).get("helm.sh/hook", "")
    return any(hook.strip().startswith("test") for hook in str(hooks).split(","))


def of_kind(objects: Iterable[Obj], kind: str, group: str | None = None) -> list[Obj]:
    """Objects of ``kind`` (and API ``group`` when given)."""
    return [
        obj
        for obj in objects
        if obj.get("kind") == kind and (group is None or api_group(obj) == group)
    ]


def is_istio(obj: Obj) -> bool:
    return api_group(obj).endswith(ISTIO_GROUP_SUFFIX)


def istio_objects(objects: Iterable[Obj], kind: str) -> list[Obj]:
    return [obj for obj in objects if obj.get("kind") == kind and is_istio(obj)]


def workloads(objects: Iterable[Obj]) -> list[Obj]:
    """Long-running pod controllers the chart renders (test hooks excluded)."""
    return [obj for obj in objects if obj.get("kind") in WORKLOAD_KINDS and not is_test_hook(obj)]


def pod_spec(obj: Obj) -> Obj | None:
    """The pod spec inside any pod-bearing object, or None."""
    spec = obj.get("spec") or {}
    kind = obj.get("kind")
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        return (((spec.get("jobTemplate") or {}).get("spec") or {}).get("template") or {}).get("spec")
    if kind in (*WORKLOAD_KINDS, "ReplicaSet", "Job"):
        return (spec.get("template") or {}).get("spec")
    return None


def pod_labels(obj: Obj) -> dict[str, str]:
    """The labels of the pods a workload creates."""
    template = (obj.get("spec") or {}).get("template") or {}
    return dict((template.get("metadata") or {}).get("labels") or {})


def containers(spec: Obj, *, init: bool = True) -> Iterator[Obj]:
    """Containers of a pod spec; init and ephemeral containers too unless ``init`` is False."""
    yield from spec.get("containers") or []
    if init:
        yield from spec.get("initContainers") or []
        yield from spec.get("ephemeralContainers") or []


def selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels + matchExpressions) against a label set."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def matches_some_workload(selector: Obj, objects: list[Obj]) -> bool:
    return any(selector_matches(selector, pod_labels(obj)) for obj in workloads(objects))


# ---------------------------------------------------------------------------------------------
# Rendering


class _ManifestLoader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as strings (as Kubernetes' decoder does) and reads a bare
    ``=`` as a string (PyYAML otherwise fails on it)."""


_ManifestLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_ManifestLoader.add_constructor(
    "tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node)
)


def load_values(path: Path) -> Obj:
    """Parse a values file the way ``helm -f`` does (Helm's own YAML reader)."""
    return helm_python.values_from_yaml(path.read_text())


def lint(chart_dir: Path, values: Obj) -> list[Finding]:
    """``helm lint --strict`` with the value set, once per Kubernetes version (deprecations
    depend on it). Warnings and errors fail; info messages ("icon is recommended") do not."""
    messages: dict[str, None] = {}
    for version in KUBE_VERSIONS:
        report = helm_python.lint(
            chart_dir,
            values,
            strict=True,
            namespace=RELEASE_NAMESPACE,
            kube_version=f"v{version}.0",
        )
        for message in report.get("messages", []):
            if message.get("severity", 0) >= 2:
                text = str(message.get("error", "")).strip()
                messages[f"{message.get('path', '')}: {text}"] = None
        if not report.get("messages"):
            for error in report.get("errors", []):
                messages[str(error).strip()] = None
    return [Finding("lint", message) for message in messages]


def render(chart: helm_python.Chart, values: Obj) -> dict[str, str]:
    """``helm template baemin <chart> -n baemin -f <values>``: template path -> manifest text."""
    return chart.render(values=values, name=RELEASE_NAME, namespace=RELEASE_NAMESPACE, is_install=True)


def split_objects(manifests: dict[str, str]) -> tuple[list[Obj], list[Finding]]:
    """Every non-empty YAML document of the rendered templates (NOTES.txt left out), and the
    documents that are not Kubernetes objects or that repeat an object."""
    objects: list[Obj] = []
    findings: list[Finding] = []
    seen: set[tuple[str, str, str, str | None]] = set()
    for template, text in sorted(manifests.items()):
        if template.endswith("NOTES.txt") or not text.strip():
            continue
        try:
            documents = list(yaml.load_all(text, Loader=_ManifestLoader))
        except yaml.YAMLError as error:
            findings.append(Finding("objects", f"{template}: not valid YAML: {error}"))
            continue
        for document in documents:
            if document is None:
                continue
            problem = object_shape_problem(document)
            if problem:
                findings.append(Finding("objects", f"{template}: {problem}"))
                continue
            key = (api_group(document), document["kind"], name_of(document), namespace_of(document))
            if key in seen:
                findings.append(Finding("objects", f"{template}: {ref(document)} rendered twice"))
            seen.add(key)
            objects.append(document)
    return objects, findings


def object_shape_problem(document: Any) -> str | None:
    if not isinstance(document, dict):
        return f"a document is not a mapping: {str(document)[:60]!r}"
    for key in ("apiVersion", "kind"):
        if not isinstance(document.get(key), str) or not document[key]:
            return f"a document has no {key}"
    if not isinstance(document.get("metadata"), dict) or not document["metadata"].get("name"):
        return f"{document['kind']} without metadata.name"
    return None


# ---------------------------------------------------------------------------------------------
# Namespace and schema checks


def check_namespaces(objects: list[Obj]) -> list[Finding]:
    """Every namespaced object sets metadata.namespace to the release namespace (checkov and
    `kubectl apply -f` of the rendered output both depend on it)."""
    findings = []
    for obj in objects:
        if obj["kind"] in CLUSTER_SCOPED_KINDS:
            continue
        namespace = namespace_of(obj)
        if namespace != RELEASE_NAMESPACE:
            found = "no metadata.namespace" if namespace is None else f"namespace {namespace!r}"
            findings.append(Finding("namespace", f"{ref(obj)}: {found}, want {RELEASE_NAMESPACE!r}"))
    return findings


def is_kubernetes_group(group: str) -> bool:
    """Groups served by Kubernetes itself (core, apps, policy, *.k8s.io, ...)."""
    return group == "" or "." not in group or group.endswith(".k8s.io")


def needs_crd_schema(group: str) -> bool:
    return group.endswith(ISTIO_GROUP_SUFFIX) or group == NACK_GROUP


class KubeValidator:
    """kubernetes-validate in strict mode against every version in KUBE_VERSIONS. Identical
    objects (most of them across value sets) are validated once."""

    def __init__(self) -> None:
        supported = kubernetes_validate.utils.all_versions()
        missing = [v for v in KUBE_VERSIONS if not any(s.startswith(f"{v}.") for s in supported)]
        if missing:
            raise GateError(
                f"kubernetes-validate {kubernetes_validate.__version__} has no schemas for "
                f"Kubernetes {', '.join(missing)} (it has {supported[0]}..{supported[-1]})"
            )
        self._cache: dict[str, list[str]] = {}

    def problems(self, obj: Obj) -> list[str]:
        key = json.dumps(obj, sort_keys=True, default=str)
        if key not in self._cache:
            self._cache[key] = [p for v in KUBE_VERSIONS for p in self._problems_in(obj, v)]
        return self._cache[key]

    @staticmethod
    def _problems_in(obj: Obj, version: str) -> list[str]:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path) or "(root)"
            return [f"Kubernetes {version}: {path}: {error.message}"]
        except kubernetes_validate.SchemaNotFoundError:
            return [f"Kubernetes {version} has no {obj['apiVersion']} {obj['kind']} (removed API?)"]
        return []


class CrdSchemas:
    """The JSON schemas of ../shared/schemas: every folder's index.json maps group/version/kind
    to a draft 2020-12 schema that rejects unknown fields.

    jsonschema ignores their `x-kubernetes-validations` (CEL rules, mostly "duration >= 1ms"): those are
    compiled here, for every schema of every index, and evaluated by `cel` (helm/kube_cel.py)."""

    def __init__(self, root: Path) -> None:
        indexes = sorted(root.glob("*/index.json"))
        if not indexes:
            raise GateError(f"no schemas: {root}/*/index.json not found (clone ../shared beside the repo)")
        self._files: dict[tuple[str, str, str], Path] = {}
        for index in indexes:
            for entry in json.loads(index.read_text())["schemas"]:
                key = (entry["group"], entry["version"], entry["kind"])
                self._files[key] = index.parent / entry["file"]
        self._validators: dict[Path, jsonschema.protocols.Validator] = {}
        self._cel: dict[Path, kube_cel.CompiledSchema] = {}
        self._cel_cache: dict[str, kube_cel.Evaluation] = {}
        try:
            for path in sorted(set(self._files.values())):
                self._cel[path] = kube_cel.CompiledSchema(json.loads(path.read_text()), path.name)
        except kube_cel.CelLibraryError as error:
            raise GateError(f"CEL rules: {error}")

    def cel_summary(self) -> str:
        """How many CEL rules were compiled, from how many schemas, and the transition rules skipped."""
        rules = sum(c.rule_count for c in self._cel.values())
        with_rules = sum(bool(c.rule_count) for c in self._cel.values())
        transition = sum(c.transition_count for c in self._cel.values())
        return (
            f"{rules} CEL rules compiled from {with_rules} of {len(self._cel)} CRD schemas "
            f"({transition} transition rules, skipped: they need the old object of an update)"
        )

    def cel(self, obj: Obj) -> kube_cel.Evaluation:
        """Every CEL rule of the object's schema, evaluated where the object has a value."""
        group, _, version = str(obj["apiVersion"]).partition("/")
        path = self._files.get((group, version, obj["kind"]))
        if path is None:  # `problems` already reports the missing schema
            return kube_cel.Evaluation(0, 0, [])
        key = json.dumps(obj, sort_keys=True, default=str)
        if key not in self._cel_cache:
            self._cel_cache[key] = kube_cel.evaluate(self._cel[path], obj)
        return self._cel_cache[key]

    def problems(self, obj: Obj) -> list[str]:
        group, _, version = str(obj["apiVersion"]).partition("/")
        path = self._files.get((group, version, obj["kind"]))
        if path is None:
            return [f"no schema for {obj['apiVersion']} {obj['kind']} in shared/schemas"]
        validator = self._validator(path)
        errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
        return [
            f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message[:300]}"
            for e in errors[:5]
        ]

    def _validator(self, path: Path) -> jsonschema.protocols.Validator:
        if path not in self._validators:
            schema = json.loads(path.read_text())
            cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
            cls.check_schema(schema)
            self._validators[path] = cls(schema)
        return self._validators[path]


# Objects every run evaluates before trusting the CEL check, each with the paths its rules must refuse:
# rules on `spec`, under `properties`, `items` (nested lists) and `additionalProperties` (map values and
# keys), with macros, `has`, `int`, `substring`, `matches` and `url`. None of these is refused by the JSON
# schemas alone.
CEL_PLACEMENT_CASES: tuple[tuple[Obj, frozenset[str]], ...] = (
    (
        {
            "apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
            "metadata": {"name": "cel-self-test", "namespace": RELEASE_NAMESPACE},
            "spec": {
                "selector": {"matchLabels": {"app": "a*", "": "b"}},
                "targetRef": {"kind": "Service", "name": "s", "namespace": "other"},
                "rules": [{"from": [{"source": {"serviceAccounts": ["a"], "principals": ["b"]}}]}],
            },
        },
        frozenset({
            "spec", "spec.selector.matchLabels", "spec.selector.matchLabels.app", "spec.targetRef.namespace",
            "spec.rules[0].from[0].source",
        }),
    ),
    (
        {
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "cel-self-test", "namespace": RELEASE_NAMESPACE},
            "spec": {"hosts": ["a"], "http": [
                {"timeout": "1ms", "route": [{"destination": {"host": "a"}}]},
                {"timeout": "0s", "retries": {"attempts": 1, "perTryTimeout": "500us"},
                 "fault": {"delay": {"fixedDelay": "0.5ms"}}, "route": [{"destination": {"host": "a"}}]},
            ]},
        },
        frozenset({"spec.http[1].timeout", "spec.http[1].retries.perTryTimeout", "spec.http[1].fault.delay.fixedDelay"}),
    ),
    (
        {
            "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": "cel-self-test", "namespace": RELEASE_NAMESPACE},
            "spec": {
                "hosts": ["*"], "resolution": "DNS_ROUND_ROBIN",
                "ports": [{"number": 80, "name": "a"}, {"number": 80, "name": "b"}, {"number": 0, "name": "c"}],
                "endpoints": [{"address": "unix://x/", "ports": {"a": 70000, "-bad": 1}}, {"address": "b"}],
            },
        },
        frozenset({
            "spec", "spec.hosts[0]", "spec.ports", "spec.ports[2].number", "spec.endpoints[0]",
            "spec.endpoints[0].address", "spec.endpoints[0].ports", "spec.endpoints[0].ports.a",
        }),
    ),
    (
        {
            "apiVersion": "security.istio.io/v1", "kind": "RequestAuthentication",
            "metadata": {"name": "cel-self-test", "namespace": RELEASE_NAMESPACE},
            "spec": {"jwtRules": [{"issuer": "i", "jwksUri": "ftp://idp.example.com/jwks"}]},
        },
        frozenset({"spec.jwtRules[0].jwksUri"}),
    ),
)


def cel_placement_self_test(crds: CrdSchemas) -> int:
    """CEL_PLACEMENT_CASES through `crds.cel`: GateError unless exactly the expected paths are refused."""
    wrong = []
    for obj, expected in CEL_PLACEMENT_CASES:
        refused = {problem.split(": ", 1)[0] for problem in crds.cel(obj).problems}
        if refused != expected:
            wrong.append(f"{ref(obj)}: refused {sorted(refused)}, want {sorted(expected)}")
        if crds.problems(obj):
            wrong.append(f"{ref(obj)}: its JSON schema refuses it already: {crds.problems(obj)}")
    if wrong:
        raise GateError("the CEL check misplaces rules: " + "; ".join(wrong))
    return len(CEL_PLACEMENT_CASES)


def prometheus_shape_problems(obj: Obj) -> list[str]:
    """No schema for the Prometheus operator's kinds is available offline: only the shape is
    checked (apiVersion, kind, metadata.name, metadata.namespace, a non-empty spec)."""
    problems = []
    if not namespace_of(obj):
        problems.append("no metadata.namespace")
    if not isinstance(obj.get("spec"), dict) or not obj["spec"]:
        problems.append("no spec")
    return problems


def check_schemas(
    objects: list[Obj], kube: KubeValidator, crds: CrdSchemas, counts: dict[str, int]
) -> list[Finding]:
    """Validate each object with the validator for its API group; an object no validator knows
    fails (nothing reaches the cluster unvalidated)."""
    findings = []
    for obj in objects:
        group = api_group(obj)
        if is_kubernetes_group(group):
            check, problems = "kubernetes", kube.problems(obj)
            counts["kubernetes"] = counts.get("kubernetes", 0) + 1
        elif needs_crd_schema(group):
            check, problems = "crd-schema", crds.problems(obj)
            kind = "nack" if group == NACK_GROUP else "istio"
            counts[kind] = counts.get(kind, 0) + 1
            evaluation = crds.cel(obj)
            counts["cel"] = counts.get("cel", 0) + evaluation.evaluated
            findings += [Finding("crd-cel", f"{ref(obj)}: {problem}") for problem in evaluation.problems]
        elif group == PROMETHEUS_OPERATOR_GROUP and obj["kind"] in PROMETHEUS_OPERATOR_KINDS:
            check, problems = "prometheus-shape", prometheus_shape_problems(obj)
            counts["prometheus"] = counts.get("prometheus", 0) + 1
        else:
            check, problems = "crd-schema", [f"no schema to validate {obj['apiVersion']} against"]
        findings += [Finding(check, f"{ref(obj)}: {problem}") for problem in problems]
    return findings


# ---------------------------------------------------------------------------------------------
# The mesh's rules. Each takes every rendered object and returns one message per violation.


def rule_probes(objects: list[Obj]) -> list[str]:
    """Every Deployment's (StatefulSet's, DaemonSet's) containers, not init containers, have a
    readinessProbe, a livenessProbe and a startupProbe."""
    problems = []
    for obj in workloads(objects):
        for container in containers(pod_spec(obj) or {}, init=False):
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                if not container.get(probe):
                    problems.append(f"{ref(obj)} container {container.get('name')}: no {probe}")
    return problems


def rule_service_ports(objects: list[Obj]) -> list[str]:
    """Every Service port is named grpc* or http* and sets an appProtocol (grpc, grpc-web or
    http); a port named grpc* has appProtocol grpc or grpc-web (Istio picks the protocol from it)."""
    problems = []
    for service in of_kind(objects, "Service", ""):
        for port in (service.get("spec") or {}).get("ports") or []:
            name, protocol = str(port.get("name", "")), port.get("appProtocol")
            where = f"{ref(service)} port {port.get('port')}"
            if not name.startswith(SERVICE_PORT_PREFIXES):
                problems.append(f"{where}: name {name!r} does not start with grpc or http")
            if protocol not in SERVICE_APP_PROTOCOLS:
                wanted = ", ".join(sorted(SERVICE_APP_PROTOCOLS))
                problems.append(f"{where}: appProtocol {protocol!r}, want one of {wanted}")
            elif name.startswith("grpc") and protocol not in GRPC_APP_PROTOCOLS:
                problems.append(f"{where}: named {name!r} but appProtocol {protocol!r}")
    return problems


def principal_problem(principal: str, service_accounts: set[str]) -> str | None:
    """Why a principal is not allowed, or None when it names a chart ServiceAccount in the
    release namespace or an ingress gateway account (INGRESS_GATEWAY_SERVICE_ACCOUNTS)."""
    match = re.fullmatch(rf"{re.escape(TRUST_DOMAIN)}/ns/([^/*]+)/sa/([^/*]+)", principal)
    if not match:
        return f"{TRUST_DOMAIN}/ns/<namespace>/sa/<name> expected (no wildcards)"
    namespace, account = match.groups()
    if account in INGRESS_GATEWAY_SERVICE_ACCOUNTS:
        return None
    if namespace != RELEASE_NAMESPACE:
        return f"namespace {namespace!r} is not the release's and {account!r} is no ingress gateway account"
    if account not in service_accounts:
        return f"the chart renders no ServiceAccount {account!r}"
    return None


def rule_authorization_principals(objects: list[Obj]) -> list[str]:
    """Every AuthorizationPolicy principal (and notPrincipal) is `cluster.local/ns/<ns>/sa/<name>`
    naming a ServiceAccount the chart renders in the release namespace, or an ingress gateway's
    account from INGRESS_GATEWAY_SERVICE_ACCOUNTS."""
    service_accounts = {name_of(sa) for sa in of_kind(objects, "ServiceAccount", "")}
    problems = []
    for policy in istio_objects(objects, "AuthorizationPolicy"):
        for rule in (policy.get("spec") or {}).get("rules") or []:
            for entry in rule.get("from") or []:
                source = entry.get("source") or {}
                principals = [*(source.get("principals") or []), *(source.get("notPrincipals") or [])]
                for principal in principals:
                    problem = principal_problem(str(principal), service_accounts)
                    if problem:
                        problems.append(f"{ref(policy)} principal {principal!r}: {problem}")
    return problems


def service_for_host(host: str, services: dict[str, Obj]) -> Obj | None:
    """The chart Service a mesh host names: a short name or `<svc>.<release ns>.svc.cluster.local`."""
    if "." not in host:
        return services.get(host)
    match = re.fullmatch(rf"([a-z0-9-]+)\.([a-z0-9-]+)\.svc\.{re.escape(TRUST_DOMAIN)}", host)
    if match and match.group(2) == RELEASE_NAMESPACE:
        return services.get(match.group(1))
    return None


def chart_services(objects: list[Obj]) -> dict[str, Obj]:
    return {name_of(service): service for service in of_kind(objects, "Service", "")}


def destination_problem(destination: Obj, services: dict[str, Obj]) -> str | None:
    """Why a route destination is not a chart Service (or names a port it lacks)."""
    host = str(destination.get("host", ""))
    service = service_for_host(host, services)
    if service is None:
        return f"destination {host!r} is not a Service the chart renders"
    number = (destination.get("port") or {}).get("number")
    ports = {port.get("port") for port in (service.get("spec") or {}).get("ports") or []}
    if number is not None and number not in ports:
        return f"destination {host!r} port {number} is not a port of {ref(service)} {sorted(ports)}"
    return None


def route_destinations(spec: Obj) -> Iterator[Obj]:
    """Every destination of a VirtualService: http/tcp/tls routes and http mirrors."""
    for section in ("http", "tcp", "tls"):
        for route in spec.get(section) or []:
            for target in route.get("route") or []:
                yield target.get("destination") or {}
            if route.get("mirror"):
                yield route["mirror"]
            for mirror in route.get("mirrors") or []:
                yield mirror.get("destination") or {}


def gateway_ref_problem(reference: str, gateways: dict[str, Obj]) -> str | None:
    """Why a VirtualService `gateways` entry is not a Gateway the chart renders."""
    namespace, _, name = reference.rpartition("/")
    if namespace and namespace != RELEASE_NAMESPACE:
        return f"gateway {reference!r} is outside the release namespace"
    if name not in gateways:
        return f"gateway {reference!r} is not a Gateway the chart renders"
    return None


def gateway_hosts(gateway: Obj) -> list[str]:
    """Host patterns a Gateway's servers accept (the `namespace/` prefix dropped)."""
    servers = (gateway.get("spec") or {}).get("servers") or []
    return [host.rpartition("/")[2] for server in servers for host in server.get("hosts") or []]


def virtual_service_host_problem(
    host: str, spec: Obj, services: dict[str, Obj], gateways: dict[str, Obj]
) -> str | None:
    """Why a VirtualService host is wrong: for the mesh (no `gateways`, or `mesh` among them) it must
    be a chart Service; for an ingress Gateway it must be a hostname one of its servers accepts."""
    listed = spec.get("gateways") or ["mesh"]
    if "mesh" in listed and service_for_host(host, services) is not None:
        return None
    patterns = [
        pattern
        for reference in listed
        if reference != "mesh" and reference.rpartition("/")[2] in gateways
        for pattern in gateway_hosts(gateways[reference.rpartition("/")[2]])
    ]
    if any(fnmatch.fnmatchcase(host, pattern) for pattern in patterns):
        return None
    if listed == ["mesh"]:
        return f"host {host!r} is not a Service the chart renders"
    return f"host {host!r} is neither a chart Service on the mesh nor accepted by its gateways {listed}"


def rule_virtual_services(objects: list[Obj]) -> list[str]:
    """Every VirtualService host is a chart Service (short name or `<svc>.<ns>.svc.cluster.local`);
    a VirtualService bound to an ingress Gateway has external hostnames instead: its `gateways`
    must name Gateways the chart renders and its hosts must be accepted by them. Every route
    destination (and mirror) is a chart Service, on one of its ports when a port is given."""
    services = chart_services(objects)
    gateways = {name_of(gw): gw for gw in istio_objects(objects, "Gateway")}
    problems = []
    for vs in istio_objects(objects, "VirtualService"):
        spec = vs.get("spec") or {}
        bound = [g for g in spec.get("gateways") or [] if g != "mesh"]
        for reference in bound:
            problem = gateway_ref_problem(reference, gateways)
            if problem:
                problems.append(f"{ref(vs)}: {problem}")
        for host in spec.get("hosts") or []:
            problem = virtual_service_host_problem(str(host), spec, services, gateways)
            if problem:
                problems.append(f"{ref(vs)}: {problem}")
        for destination in route_destinations(spec):
            problem = destination_problem(destination, services)
            if problem:
                problems.append(f"{ref(vs)}: {problem}")
    return problems


def rule_destination_rules(objects: list[Obj]) -> list[str]:
    """Every DestinationRule host is a chart Service (short name or `<svc>.<ns>.svc.cluster.local`)."""
    services = chart_services(objects)
    return [
        f"{ref(dr)}: host {host!r} is not a Service the chart renders"
        for dr in istio_objects(objects, "DestinationRule")
        if service_for_host(host := str((dr.get("spec") or {}).get("host", "")), services) is None
    ]


def rule_hpa_targets(objects: list[Obj]) -> list[str]:
    """Every HorizontalPodAutoscaler's scaleTargetRef names a Deployment the chart renders."""
    deployments = {name_of(d) for d in of_kind(objects, "Deployment", "apps")}
    problems = []
    for hpa in of_kind(objects, "HorizontalPodAutoscaler", "autoscaling"):
        target = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if target.get("kind") != "Deployment" or target.get("apiVersion") != "apps/v1":
            found = f"{target.get('apiVersion')} {target.get('kind')}"
            problems.append(f"{ref(hpa)}: scaleTargetRef is {found}, want apps/v1 Deployment")
        elif target.get("name") not in deployments:
            problems.append(f"{ref(hpa)}: scaleTargetRef Deployment {target.get('name')!r} is not rendered")
    return problems


def rule_pdb_selectors(objects: list[Obj]) -> list[str]:
    """Every PodDisruptionBudget has a selector and it matches a Deployment's pod labels."""
    problems = []
    for pdb in of_kind(objects, "PodDisruptionBudget", "policy"):
        selector = (pdb.get("spec") or {}).get("selector")
        if not selector:
            problems.append(f"{ref(pdb)}: no selector (it would cover every pod in the namespace)")
        elif not matches_some_workload(selector, objects):
            problems.append(f"{ref(pdb)}: selector {json.dumps(selector)} matches no Deployment's pods")
    return problems


def workload_selectors(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """(object, label selector) for Services and Istio policies that select workloads."""
    for service in of_kind(objects, "Service", ""):
        selector = (service.get("spec") or {}).get("selector")
        if selector:
            yield service, {"matchLabels": selector}
    for kind in ("AuthorizationPolicy", "PeerAuthentication", "RequestAuthentication", "Telemetry"):
        for obj in istio_objects(objects, kind):
            selector = (obj.get("spec") or {}).get("selector")
            if selector:
                yield obj, selector
    for sidecar in istio_objects(objects, "Sidecar"):
        labels = ((sidecar.get("spec") or {}).get("workloadSelector") or {}).get("labels")
        if labels:
            yield sidecar, {"matchLabels": labels}


def rule_selectors_match_workloads(objects: list[Obj]) -> list[str]:
    """Every Service selector and Istio workload selector (AuthorizationPolicy, PeerAuthentication,
    RequestAuthentication, Telemetry, Sidecar) matches a workload's pod labels: a typo there leaves
    a Service without endpoints or a policy that applies to nothing."""
    return [
        f"{ref(obj)}: selector {json.dumps(selector)} matches no workload's pods"
        for obj, selector in workload_selectors(objects)
        if not matches_some_workload(selector, objects)
    ]


def rule_service_accounts(objects: list[Obj]) -> list[str]:
    """Every Deployment (StatefulSet, DaemonSet) runs as a ServiceAccount the chart renders (not
    the namespace's `default`): mesh principals are built from it."""
    accounts = {name_of(sa) for sa in of_kind(objects, "ServiceAccount", "")}
    problems = []
    for obj in workloads(objects):
        account = (pod_spec(obj) or {}).get("serviceAccountName") or "default"
        if account not in accounts:
            problems.append(f"{ref(obj)}: ServiceAccount {account!r} is not rendered by the chart")
    return problems


def split_image(image: str) -> tuple[str, str | None]:
    """(repository, tag) of an image reference; tag None when absent (digest-only or bare)."""
    name = image.split("@", 1)[0]
    repository, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:  # no tag, or the colon belonged to a registry port
        return name, None
    return repository, tag


def rule_images(objects: list[Obj]) -> list[str]:
    """Every container image (init containers and test hooks too) comes from one repository and
    carries an explicit tag other than `latest` (a digest may follow it)."""
    problems = []
    repositories: dict[str, str] = {}
    for obj in objects:
        for container in containers(pod_spec(obj) or {}):
            image = str(container.get("image", ""))
            repository, tag = split_image(image)
            where = f"{ref(obj)} container {container.get('name')}"
            if not tag:
                problems.append(f"{where}: image {image!r} has no tag (use <repo>:<tag>[@<digest>])")
            elif tag == "latest":
                problems.append(f"{where}: image {image!r} is tagged latest")
            repositories.setdefault(repository, where)
    if len(repositories) > 1:
        listed = ", ".join(f"{repo} ({where})" for repo, where in sorted(repositories.items()))
        problems.append(f"images come from {len(repositories)} repositories, want one: {listed}")
    return problems


def rule_identity_without_istio(objects: list[Obj]) -> list[str]:
    """Without Istio (no AuthorizationPolicy rendered) nothing but the signed caller identity keeps
    other pods of the cluster out: every service must require it (BAEMIN_REQUIRE_IDENTITY=true)."""
    if of_kind(objects, "AuthorizationPolicy"):
        return []
    problems = []
    for config in of_kind(objects, "ConfigMap", ""):
        data = config.get("data") or {}
        if "BAEMIN_REQUIRE_IDENTITY" in data or "DATABASE_POOL_SIZE" in data:
            if str(data.get("BAEMIN_REQUIRE_IDENTITY", "")).lower() != "true":
                problems.append(
                    f"{ref(config)}: BAEMIN_REQUIRE_IDENTITY must be true without Istio, "
                    f"is {data.get('BAEMIN_REQUIRE_IDENTITY')!r}"
                )
    return problems


RULES: tuple[Callable[[list[Obj]], list[str]], ...] = (
    rule_probes,
    rule_service_ports,
    rule_authorization_principals,
    rule_virtual_services,
    rule_destination_rules,
    rule_hpa_targets,
    rule_pdb_selectors,
    rule_selectors_match_workloads,
    rule_service_accounts,
    rule_images,
    rule_identity_without_istio,
)


def rule_name(rule: Callable[[list[Obj]], list[str]]) -> str:
    return "rule:" + rule.__name__.removeprefix("rule_").replace("_", "-")


def check_rules(objects: list[Obj]) -> list[Finding]:
    return [Finding(rule_name(rule), message) for rule in RULES for message in rule(objects)]


# ---------------------------------------------------------------------------------------------
# Checkov (once over every value set's output)


def checkov_binary() -> str:
    candidate = Path(sys.executable).parent / "checkov"
    if candidate.exists():
        return str(candidate)
    raise GateError(f"checkov not found beside {sys.executable}: run through scripts/chart-gate")


def write_manifests(results: list[Result], root: Path) -> dict[str, tuple[Result, Obj]]:
    """One file per object under root/<value set>/; returns absolute file path -> (result, object)."""
    files: dict[str, tuple[Result, Obj]] = {}
    for number, result in enumerate(results):
        directory = root / f"{number:02d}-{re.sub(r'[^A-Za-z0-9_.-]', '_', result.value_set.label)}"
        directory.mkdir(parents=True)
        for index, obj in enumerate(result.objects):
            path = directory / f"{index:03d}-{obj['kind'].lower()}-{name_of(obj)}.yaml"
            path.write_text(yaml.safe_dump(obj, sort_keys=False))
            files[str(path.resolve())] = (result, obj)
    return files


def run_checkov(directory: Path) -> Obj:
    """`checkov -d DIR --framework kubernetes` offline; its JSON report for the kubernetes runner."""
    command = [
        checkov_binary(), "-d", str(directory), "--framework", "kubernetes",
        "--skip-download", "--quiet", "--compact", "-o", "json",
    ]
    if SKIPPED_CHECKS:
        command += ["--skip-check", ",".join(sorted(SKIPPED_CHECKS))]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        detail = done.stderr.strip()[-800:]
        raise GateError(f"checkov exited {done.returncode} without a JSON report: {detail}")
    reports = report if isinstance(report, list) else [report]
    for entry in reports:
        if entry.get("check_type") == "kubernetes":
            return entry
    return {"results": {"failed_checks": []}, "summary": reports[0] if reports else {}}


def inline_checkov_skips(objects: list[Obj]) -> list[Finding]:
    """`checkov.io/skipN: CHECK=reason` annotations would skip checks outside SKIPPED_CHECKS: only
    the ones NOT_APPLICABLE_TO_TEST_HOOKS exempts anyway are tolerated, on test hooks."""
    findings = []
    for obj in objects:
        for key, value in ((obj.get("metadata") or {}).get("annotations") or {}).items():
            if not str(key).startswith("checkov.io/skip"):
                continue
            check = str(value).partition("=")[0].strip()
            if is_test_hook(obj) and check in NOT_APPLICABLE_TO_TEST_HOOKS:
                continue
            message = f"{ref(obj)}: annotation {key}: {value!r}: skips belong in SKIPPED_CHECKS in helm/gate.py"
            findings.append(Finding("checkov", message))
    return findings


def check_checkov(results: list[Result]) -> None:
    """Adds checkov's failed checks (and inline skips) to each value set's findings."""
    for result in results:
        result.findings += inline_checkov_skips(result.objects)
    with tempfile.TemporaryDirectory(prefix="chart-gate-") as temp:
        files = write_manifests(results, Path(temp))
        if not files:
            return
        report = run_checkov(Path(temp))
    for result in results:
        result.counts["checkov"] = 0
    summary = report.get("summary") or {}
    if summary.get("parsing_errors"):
        for result in results:
            message = f"checkov could not parse {summary['parsing_errors']} file(s)"
            result.findings.append(Finding("checkov", message))
    for failed in report.get("results", {}).get("failed_checks", []):
        owner = files.get(str(Path(failed.get("file_abs_path", "")).resolve()))
        if owner is None:
            continue
        result, obj = owner
        if is_test_hook(obj) and failed["check_id"] in NOT_APPLICABLE_TO_TEST_HOOKS:
            continue
        result.counts["checkov"] += 1
        message = f"{failed['check_id']} {failed.get('check_name', '')}: {ref(obj)}"
        result.findings.append(Finding("checkov", message))


# ---------------------------------------------------------------------------------------------
# Running a value set


def check_value_set(
    value_set: ValueSet, chart: helm_python.Chart, chart_dir: Path, kube: KubeValidator, crds: CrdSchemas
) -> Result:
    """Render, lint and check one value set (checkov runs later, over every value set at once)."""
    result = Result(value_set)
    try:
        values = load_values(value_set.path)
    except helm_python.HelmError as error:
        result.findings.append(Finding("values", f"{value_set.path}: {error}"))
        return result
    try:
        manifests = render(chart, values)
    except helm_python.HelmValuesError as error:
        result.findings.append(Finding("values-schema", str(error).strip()))
        return result
    except helm_python.HelmError as error:
        result.findings.append(Finding("render", str(error).strip()))
        return result
    result.findings += lint(chart_dir, values)
    result.objects, findings = split_objects(manifests)
    result.findings += findings
    result.counts["objects"] = len(result.objects)
    result.findings += check_namespaces(result.objects)
    result.findings += check_schemas(result.objects, kube, crds, result.counts)
    result.findings += check_rules(result.objects)
    return result


def find_value_sets(values_dir: Path, only: Path | None) -> list[ValueSet]:
    """The value sets to run: helm/ci/*.yaml, then helm/ci/broken/*.yaml (or just `only`)."""
    if only is not None:
        if not only.is_file():
            raise GateError(f"no values file {only}")
        broken = only.parent.name == BROKEN_SUBDIR
        return [ValueSet(f"{BROKEN_SUBDIR}/{only.stem}" if broken else only.stem, only, broken)]
    good = sorted(values_dir.glob("*.yaml"))
    if not good:
        raise GateError(f"no value sets: {values_dir}/*.yaml matches nothing")
    broken = sorted((values_dir / BROKEN_SUBDIR).glob("*.yaml"))
    return [ValueSet(p.stem, p, False) for p in good] + [
        ValueSet(f"{BROKEN_SUBDIR}/{p.stem}", p, True) for p in broken
    ]


# ---------------------------------------------------------------------------------------------
# Reporting


def describe(result: Result) -> str:
    """The one-line account of a value set that passed."""
    counts = result.counts
    parts = [
        f"{counts.get('objects', 0)} objects",
        "lint clean",
        f"{counts.get('kubernetes', 0)} on kubernetes {'/'.join(KUBE_VERSIONS)} strict",
        f"{counts.get('istio', 0)} Istio",
        f"{counts.get('nack', 0)} NACK",
        f"{counts.get('cel', 0)} CEL rule evaluations",
    ]
    if counts.get("prometheus"):
        parts.append(f"{counts['prometheus']} Prometheus (shape only)")
    parts += [f"checkov {counts.get('checkov', 0)} failed", f"{len(RULES)} mesh rules"]
    return ", ".join(parts)


def print_findings(findings: list[Finding], limit: int = MAX_LINES_PER_CHECK) -> None:
    by_check: dict[str, list[str]] = {}
    for finding in findings:
        by_check.setdefault(finding.check, []).append(finding.message)
    for check, messages in by_check.items():
        for message in messages[:limit]:
            one_line = re.sub(r"\s*\n\s*", " | ", message.strip())
            print(f"       [{check}] {one_line}")
        if len(messages) > limit:
            print(f"       [{check}] ... and {len(messages) - limit} more")


def report(results: list[Result], verbose_broken: bool) -> bool:
    """Print a line per value set and per check, then the summary; True when the gate passes."""
    passed = True
    for result in results:
        label, findings = result.value_set.label, result.findings
        if result.value_set.must_fail:
            if findings:
                print(f"ok   {label}: fails as it must, caught by {', '.join(result.failed_checks)}")
                print_findings(findings, limit=MAX_LINES_PER_CHECK if verbose_broken else 1)
            else:
                passed = False
                print(f"FAIL {label}: passed every check, but a broken value set must fail")
        elif findings:
            passed = False
            print(f"FAIL {label}: {len(findings)} problem(s) in {', '.join(result.failed_checks)}")
            print_findings(findings)
        else:
            print(f"ok   {label}: {describe(result)}")
    print_check_lines([r for r in results if not r.value_set.must_fail])
    good = [r for r in results if not r.value_set.must_fail]
    broken = [r for r in results if r.value_set.must_fail]
    print(
        f"chart gate {'PASSED' if passed else 'FAILED'}: "
        f"{sum(not r.findings for r in good)}/{len(good)} value sets clean, "
        f"{sum(bool(r.findings) for r in broken)}/{len(broken)} broken value sets caught, "
        f"{len(SKIPPED_CHECKS)} checkov check(s) skipped"
    )
    return passed


CHECK_ORDER = (
    "values", "values-schema", "render", "lint", "objects", "namespace", "kubernetes",
    "crd-schema", "crd-cel", "prometheus-shape", "checkov", *(rule_name(rule) for rule in RULES),
)


def print_check_lines(results: list[Result]) -> None:
    """One line per check: which (non-broken) value sets it failed on."""
    if not results:
        return
    print("checks:")
    for check in CHECK_ORDER:
        failing = [r.value_set.label for r in results if check in r.failed_checks]
        status = f"FAIL on {', '.join(failing)}" if failing else f"ok on {len(results)} value set(s)"
        print(f"  {check:<34} {status}")


# ---------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--values", type=Path, help="run one values file (one under broken/ must fail)")
    parser.add_argument("--chart", type=Path, default=DEFAULT_CHART, help="default helm/baemin")
    parser.add_argument("--values-dir", type=Path, default=DEFAULT_VALUES_DIR, help="default helm/ci")
    parser.add_argument("--schemas", type=Path, default=DEFAULT_SCHEMAS_DIR, help="default ../shared/schemas")
    return parser.parse_args(argv)


def check_configuration() -> None:
    unexplained = [check for check, reason in SKIPPED_CHECKS.items() if not reason.strip()]
    if unexplained:
        raise GateError(f"SKIPPED_CHECKS without a reason: {', '.join(unexplained)}")


def run(args: argparse.Namespace) -> bool:
    check_configuration()
    if not (args.chart / "Chart.yaml").is_file():
        raise GateError(f"no chart at {args.chart} (Chart.yaml missing)")
    value_sets = find_value_sets(args.values_dir, args.values)
    kube, crds = KubeValidator(), CrdSchemas(args.schemas)
    try:
        cases = kube_cel.self_test()
    except kube_cel.CelLibraryError as error:
        raise GateError(str(error))
    placements = cel_placement_self_test(crds)
    release = f"release {RELEASE_NAME} in namespace {RELEASE_NAMESPACE}"
    print(f"chart {args.chart}: {release}, {len(value_sets)} value sets")
    print(
        f"{crds.cel_summary()}; self-tests passed: {cases} CEL library cases, "
        f"{placements} objects refused exactly where their rules sit"
    )
    try:
        chart = helm_python.Chart.load(args.chart)
    except helm_python.HelmError as error:
        raise GateError(f"helm cannot load {args.chart}: {error}")
    with chart:
        results = [check_value_set(vs, chart, args.chart, kube, crds) for vs in value_sets]
    check_checkov(results)
    return report(results, verbose_broken=args.values is not None)


def main(argv: list[str]) -> int:
    try:
        return 0 if run(parse_args(argv)) else 1
    except GateError as error:
        print(f"chart gate cannot run: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
