"""Every Kustomize layout renders (kubectl's built-in kustomize), every rendered object validates strictly against
current Kubernetes versions' schemas (kubernetes-validate), the custom resources it cannot check (KServe's
InferenceService) have their required fields, and yamllint passes on every YAML file of the deployment."""

import os
import re
import subprocess
import sys

import pytest
from kubernetes_validate import utils as validation
from manifests import KUBERNETES, OVERLAYS, ROOT, kustomize, of_kind, render

# The Kubernetes minors still supported upstream or by the big providers' extended support, newest first.
KUBERNETES_VERSIONS = ("1.37.0", "1.35.0", "1.33.0", "1.31.0")
LAYOUTS = ("base", *OVERLAYS)
BUILT_IN_GROUPS = ("v1", "apps/", "policy/", "autoscaling/", "networking.k8s.io/")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def test_the_required_overlays_exist():
    assert {"split", "gcs", "kserve"} <= set(OVERLAYS)


@pytest.fixture(scope="module", params=LAYOUTS)
def rendered(request):
    return request.param, render(request.param)


def test_each_layout_renders_objects_with_unique_names(rendered):
    layout, objects = rendered
    assert objects, f"{layout} renders nothing"
    keys = [(item["kind"], item["metadata"]["name"]) for item in objects]
    assert len(keys) == len(set(keys)), f"{layout}: duplicate objects {keys}"
    for kind, name in keys:
        assert DNS_LABEL.fullmatch(name) and len(name) <= 63, f"{layout}: {kind} {name} is not a DNS label"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_built_in_object_validates_strictly(rendered, version):
    layout, objects = rendered
    built_in = [item for item in objects if item["apiVersion"].startswith(BUILT_IN_GROUPS)]
    assert len(built_in) + len(of_kind(objects, "InferenceService")) == len(objects), "an object nobody checks"
    for item in built_in:
        try:
            validation.validate(item, version, strict=True)
        except validation.ValidationError as error:
            pytest.fail(f"{layout}: {item['kind']} {item['metadata']['name']} on {version}: {error.message}")


def test_the_validator_rejects_what_strict_mode_is_for():
    """kubernetes-validate --strict must refuse an unknown field (a typo such as `readinesProbe`), or the test above
    proves nothing."""
    (deployment,) = of_kind(render("base"), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(validation.ValidationError):
        validation.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_the_cli_validator_agrees(tmp_path):
    """The kubernetes-validate command line, as users run it on `kustomize build` output."""
    path = tmp_path / "base.yaml"
    path.write_text(subprocess.run(["kubectl", "kustomize", str(KUBERNETES / "base")], capture_output=True,
                                   text=True, check=True).stdout)  # fmt: skip
    command = [sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- KServe's InferenceService: a custom resource, which the validator skips -----------------------------------------


def inference_services():
    return of_kind(render("kserve"), "InferenceService")


def test_the_inference_services_have_kserves_required_fields():
    services = inference_services()
    assert len(services) == 3
    for service in services:
        assert service["apiVersion"] == "serving.kserve.io/v1beta1"
        assert DNS_LABEL.fullmatch(service["metadata"]["name"])
        predictor = service["spec"]["predictor"]  # the one required component
        model = predictor["model"]
        assert model["modelFormat"]["name"] == "tensorflow"  # selects the kserve-tensorflow-serving runtime
        assert re.fullmatch(r"(pvc|gs|s3|https?)://\S+", model["storageUri"])
        assert re.fullmatch(r"\d+\.\d+\.\d+(-gpu)?", model["runtimeVersion"])
        assert 1 <= predictor["minReplicas"] <= predictor["maxReplicas"]
        assert set(predictor) <= {"model", "minReplicas", "maxReplicas"}, "a field outside this test's knowledge"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS[:1])
def test_the_inference_services_container_fields_validate_as_a_container(version):
    """The predictor's model spec embeds a core Container (args, resources): check those fields with the Pod schema."""
    for service in inference_services():
        model = service["spec"]["predictor"]["model"]
        fields = {key: model[key] for key in ("args", "resources")}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "check"},
               "spec": {"containers": [{"name": "kserve-container", "image": "tensorflow/serving", **fields}]}}  # fmt: skip
        validation.validate(pod, version, strict=True)


# --- the optional Ingress component --------------------------------------------------------------------------------


def test_the_ingress_component_renders_onto_the_rest_service(tmp_path):
    base, component = (os.path.relpath(KUBERNETES / path, tmp_path) for path in ("base", "components/ingress"))
    (tmp_path / "kustomization.yaml").write_text(  # kustomize takes relative paths only
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"resources:\n  - {base}\ncomponents:\n  - {component}\n"
    )
    objects = kustomize(tmp_path)
    (ingress,) = of_kind(objects, "Ingress")
    validation.validate(ingress, KUBERNETES_VERSIONS[0], strict=True)
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    services = {item["metadata"]["name"]: item for item in of_kind(objects, "Service")}
    assert backend["port"]["name"] in [port["name"] for port in services[backend["name"]]["spec"]["ports"]]


# --- yamllint ------------------------------------------------------------------------------------------------------


def test_yamllint_passes_on_the_deployment_files():
    targets = [str(KUBERNETES), str(ROOT / "compose.yaml")]
    result = subprocess.run([sys.executable, "-m", "yamllint", "--strict", *targets], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
