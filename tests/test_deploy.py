"""Running beyond one container: the Kubernetes manifests validate and keep their safety settings, the Compose
file comes up and answers, and the swarm stack rolls its replicas without a failed request through a
retrying and a non-retrying balancer."""

import copy
import json
import subprocess
import uuid
from pathlib import Path

import kubernetes_validate
import pytest
import requests
import yaml
from conftest import ROOT, require_image
from support import docker

from bench import deploy
from bench.studies import rollout
from service.config import Settings

KUBERNETES = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes minor the manifests are meant for (the preStop sleep action is on by default from
# 1.30; 1.34 is the oldest schema kubernetes-validate ships) and the newest it knows.
KUBERNETES_VERSIONS = ("1.34.0", kubernetes_validate.latest_version())


def manifests() -> dict[str, dict]:
    """Every document under deploy/kubernetes/, by kind."""
    documents = [d for f in sorted(KUBERNETES.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    return {document["kind"]: document for document in documents}


def pod_spec() -> dict:
    return manifests()["Deployment"]["spec"]["template"]["spec"]


def api_container() -> dict:
    (container,) = pod_spec()["containers"]
    return container


# ---- Kubernetes (validated, not run: no cluster on these machines) -----------------------------------

def test_the_manifests_are_a_deployment_a_service_and_a_disruption_budget():
    assert set(manifests()) == {"Deployment", "Service", "PodDisruptionBudget"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_validates_strictly_against_the_kubernetes_schema(version: str):
    for kind, document in manifests().items():
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{kind} is not valid Kubernetes {version}: {error}")


def test_the_validator_rejects_a_misspelt_security_setting():
    """The check above can fail: strict validation refuses a field Kubernetes would silently ignore."""
    deployment = copy.deepcopy(manifests()["Deployment"])
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_the_pods_run_as_nonroot_read_only_with_no_capabilities_and_the_default_seccomp_profile():
    security = api_container()["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 65532
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod_spec()["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod_spec()["automountServiceAccountToken"] is False


def test_a_stopping_pod_leaves_the_endpoints_before_it_stops_listening_and_drains_before_the_kill():
    container, settings = api_container(), Settings()
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pause >= 5, "the endpoint removal needs a few seconds to reach every node's kube-proxy"
    assert pause + settings.shutdown_grace < pod_spec()["terminationGracePeriodSeconds"]
    assert manifests()["Deployment"]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_the_probes_ask_the_services_health_endpoint_on_its_port():
    container = api_container()
    (port,) = container["ports"]
    assert port["containerPort"] == Settings().port
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": port["name"]}
    assert {"requests", "limits"} <= set(container["resources"])


def test_the_service_and_the_budget_select_the_deployments_pods():
    documents = manifests()
    deployment = documents["Deployment"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert documents["Service"]["spec"]["selector"].items() <= labels.items()
    assert documents["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert documents["Service"]["spec"]["ports"][0]["targetPort"] == api_container()["ports"][0]["name"]
    assert documents["PodDisruptionBudget"]["spec"]["maxUnavailable"] < deployment["spec"]["replicas"]


# ---- Compose -------------------------------------------------------------------------------------------

def compose_config() -> dict:
    """compose.yaml as Compose itself reads it (interpolated, defaults filled in)."""
    result = subprocess.run([*deploy.compose_command(), "-f", str(deploy.COMPOSE_FILE), "config", "--format",
                             "json"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["services"]["api"]


def test_the_compose_service_is_the_distroless_image_locked_down():
    service = compose_config()
    assert service["image"].endswith(":distroless")
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert service["restart"] == "unless-stopped"
    assert service["environment"]["APP_ENV"] == "production"
    assert service["healthcheck"]["test"][-2:] == ["-m", "service.healthcheck"]


def test_compose_waits_for_the_services_drain_before_it_kills():
    stop_grace = compose_config()["stop_grace_period"]
    assert stop_grace.endswith("s") and float(stop_grace[:-1]) > Settings().shutdown_grace


def hardening(label: str) -> list[dict]:
    """Read-only root, dropped capabilities and security options of the running containers with the label."""
    names = docker("ps", "-q", "--filter", f"label={label}", quiet=True).stdout.split()
    assert names, f"no running container has the label {label}"
    template = '{"read_only": {{json .HostConfig.ReadonlyRootfs}}, "cap_drop": {{json .HostConfig.CapDrop}}}'
    return [json.loads(docker("inspect", "--format", template, name, quiet=True).stdout) for name in names]


@pytest.mark.docker
def test_compose_up_answers_on_the_published_port_from_a_locked_down_container(engine):
    require_image("distroless")
    project = f"hello-api-test-{uuid.uuid4().hex[:8]}"
    with deploy.compose_project(project) as port:
        answer = requests.get(f"http://127.0.0.1:{port}/hello/compose", timeout=5)
        (container,) = hardening(f"com.docker.compose.project={project}")
    assert answer.status_code == 200
    assert answer.json() == {"message": "Hello, compose!", "environment": "production"}
    assert container == {"read_only": True, "cap_drop": ["ALL"]}


# ---- Swarm ---------------------------------------------------------------------------------------------

STACK = yaml.safe_load((ROOT / "deploy" / "swarm" / "stack.yaml").read_text())
HAPROXY_CONFIG = (ROOT / "deploy" / "swarm" / "haproxy" / "haproxy.cfg").read_text()
QUICK = rollout.Plan(replicas=1, rollouts=1, clients=2, settle_seconds=1.0)


def test_the_stack_rolls_one_replica_at_a_time_starting_the_new_one_first():
    deploy = STACK["services"]["api"]["deploy"]
    assert deploy["endpoint_mode"] == "dnsrr"
    assert deploy["update_config"]["order"] == "start-first"
    assert deploy["update_config"]["parallelism"] == 1
    assert STACK["services"]["lb"]["ports"][0]["mode"] == "host"


def test_the_balancer_retries_only_idempotent_requests_at_layer_7():
    assert "http-request disable-l7-retry if !idempotent" in HAPROXY_CONFIG
    assert "acl idempotent method GET HEAD OPTIONS PUT DELETE" in HAPROXY_CONFIG
    assert "POST" not in HAPROXY_CONFIG.split("acl idempotent", 1)[1].splitlines()[0]


@pytest.fixture(scope="module")
def swarm(engine):
    """Swarm mode for these tests; left again afterwards if they initialised it."""
    require_image("lb")
    with deploy.swarm_mode():
        yield


@pytest.fixture
def stack(swarm, image: str):
    """The stack with one replica of the image behind both balancers: (service name, balancer ports)."""
    require_image(image)
    name = f"hello-api-test-{uuid.uuid4().hex[:8]}"
    with deploy.deployed_stack(name, image, replicas=1) as ports:
        yield f"{name}_api", ports


def assert_every_request_answered(outcome: dict) -> None:
    for config in rollout.CONFIGS:
        tally = outcome[config]
        assert tally["failed"] == 0, f"{config}: {tally['failed']} of {tally['sent']} failed: {tally['failed_by_kind']}"
        assert tally["ok"] >= 100, f"{config}: only {tally['ok']} requests went through during the update"


@pytest.mark.docker
def test_a_rolling_update_fails_no_request_through_either_balancer(stack):
    service, ports = stack
    outcome = rollout.rollout_under_load(ports, service, QUICK)
    assert outcome["update"]["update_state"] == "completed"
    assert outcome["update"]["all_replaced"], outcome["update"]
    assert_every_request_answered(outcome)
    for replica in hardening(f"com.docker.swarm.service.name={service}"):
        assert replica == {"read_only": True, "cap_drop": ["ALL"]}


@pytest.mark.docker
@pytest.mark.parametrize("image", ["distroless"])  # one image is enough to show the measurement sees failures
def test_stopping_the_old_replica_first_loses_requests_so_the_check_above_can_fail(stack):
    """The same measurement with the stack's start-first order overridden: with one replica there is no one
    to answer while it is replaced, and the failures are counted."""
    service, ports = stack
    outcome = rollout.rollout_under_load(ports, service, QUICK, "--update-order", "stop-first")
    assert outcome["update"]["all_replaced"], outcome["update"]
    for config in rollout.CONFIGS:
        assert outcome[config]["failed"] > 0, outcome[config]


def test_the_committed_rollout_results_render_to_their_report():
    committed = sorted((ROOT / "bench" / "results").glob("*-rollout*"))
    assert committed, "no committed rollout run under bench/results/"
    for directory in committed:
        assert rollout.STUDY.check(Path(directory)) == []


def test_a_request_lost_by_a_project_image_breaks_the_rollout_guarantee_one_lost_by_the_seed_does_not():
    results = json.loads((ROOT / "bench" / "results" / "2026-11-25-rollout-3" / "rollout.json").read_text())
    assert rollout.failures(results) == []
    assert results["images"]["seed"]["runs"][0]["no_retry"]["failed"] > 0  # the tutorial's losses are reported
    results["images"]["distroless"]["runs"][1]["no_retry"]["failed"] = 1
    (problem,) = rollout.failures(results)
    assert problem.startswith("distroless: rolling update 2 lost 1 of")
