"""The manifests agree with compose.yaml, .env and the exporter: image tags, TF Serving flags, ports, paths, the
models.config each layout serves, probes, memory, rollout and autoscaling wiring."""

import re
from pathlib import Path

import pytest
import yaml
from manifests import (
    CONFIG_DIR,
    KUBERNETES,
    ROOT,
    compose_file,
    container,
    env_settings,
    flags,
    model_entries,
    mounted_config_maps,
    named,
    of_kind,
    render,
)

from sd_export import contract
from sd_export.repository import CONTAINER_ROOT, write_configs

SERVING_LAYOUTS = ("base", "split", "gcs")  # the layouts that run TF Serving Deployments
GB = 1e9
# Measured float32 parameter bytes per version (README, Benchmarks) and the TensorFlow runtime's own memory.
PARAMETER_BYTES = {"text_encoder": 0.49 * GB, "diffusion_model": 3.44 * GB, "decoder": 0.20 * GB}
RUNTIME_BYTES = 0.7 * GB
QUANTITY = re.compile(r"(\d+)(Gi|Mi)")


def deployments(layout):
    objects = render(layout)
    return objects, of_kind(objects, "Deployment")


def quantity(text):
    number, unit = QUANTITY.fullmatch(text).groups()
    return int(number) * {"Gi": 2**30, "Mi": 2**20}[unit]


def served_models(deployment, objects):
    return model_entries(mounted_config_maps(deployment, objects)["models.config"])


def is_gpu(deployment):
    return "nvidia.com/gpu" in container(deployment)["resources"]["limits"]


# --- image tags ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", SERVING_LAYOUTS)
def test_images_are_the_ones_in_env(layout):
    settings = env_settings()
    objects, found = deployments(layout)
    for deployment in found:
        expected = settings["TF_SERVING_IMAGE" if is_gpu(deployment) else "TF_SERVING_CPU_IMAGE"]
        assert container(deployment)["image"] == expected, deployment["metadata"]["name"]
    if layout == "split":
        assert sorted(is_gpu(d) for d in found) == [False, True], "one CPU and one GPU Deployment"


def test_kserve_runtime_versions_are_the_tags_in_env():
    settings = env_settings()
    for service in of_kind(render("kserve"), "InferenceService"):
        model = service["spec"]["predictor"]["model"]
        gpu = "nvidia.com/gpu" in model["resources"]["limits"]
        image = settings["TF_SERVING_IMAGE" if gpu else "TF_SERVING_CPU_IMAGE"]
        assert model["runtimeVersion"] == image.split(":", 1)[1]


def test_the_image_tag_is_written_once_per_tool():
    """.env for compose; base/kustomization.yaml (and the split overlay's CPU image) for Kustomize; nowhere else."""
    written = sorted(
        str(path.relative_to(ROOT))
        for path in [*KUBERNETES.rglob("*.yaml"), ROOT / "compose.yaml"]
        if re.search(r"tensorflow/serving:\d|newTag:", path.read_text())
    )
    assert written == ["kubernetes/base/kustomization.yaml", "kubernetes/overlays/split/cpu/kustomization.yaml"]


# --- TF Serving flags, ports, paths --------------------------------------------------------------------------------


def compose_flags():
    command = compose_file()["x-serving"]["command"]
    return flags(argument.replace("${SD_MODEL_CONFIG:-models.config}", "models.config") for argument in command)


@pytest.mark.parametrize("layout", SERVING_LAYOUTS)
def test_tf_serving_flags_are_composes(layout):
    expected = dict(compose_flags(), model_config_file=f"{CONFIG_DIR}/models.config")
    objects, found = deployments(layout)
    for deployment in found:
        settings = flags(container(deployment)["args"])
        assert settings == expected
        data = mounted_config_maps(deployment, objects)
        assert {Path(settings["model_config_file"]).name, Path(settings["monitoring_config_file"]).name} <= set(data)


def test_the_mounted_tools_are_the_compose_files():
    """ready.sh and monitoring.config: one copy each, mounted by compose and projected into the pods."""
    volumes = compose_file()["x-serving"]["volumes"]
    for name in ("ready.sh", "monitoring.config"):
        assert f"./kubernetes/base/{name}:{CONFIG_DIR}/{name}:ro" in volumes
        objects = render("base")
        data = mounted_config_maps(named(objects, "Deployment", "sd-serving"), objects)
        assert data[name] == (KUBERNETES / "base" / name).read_text()


@pytest.mark.parametrize("layout", SERVING_LAYOUTS)
def test_ports_and_services(layout):
    compose_ports = sorted(int(port.rsplit(":", 1)[1]) for port in compose_file()["x-serving"]["ports"])
    objects, found = deployments(layout)
    services = of_kind(objects, "Service")
    assert len(services) == 2 * len(found), "a REST and a gRPC Service per Deployment"
    for deployment in found:
        ports = {port["name"]: port["containerPort"] for port in container(deployment)["ports"]}
        assert sorted(ports.values()) == compose_ports == [8500, 8501]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        mine = [s for s in services if s["spec"]["selector"].items() <= pod_labels.items()]
        by_port = {port["targetPort"]: service for service in mine for port in service["spec"]["ports"]}
        assert set(by_port) == {"grpc", "http"} and len(mine) == 2, deployment["metadata"]["name"]
        # gRPC: headless (one DNS record per ready pod, for the client's round_robin); REST: a ClusterIP.
        assert by_port["grpc"]["spec"]["clusterIP"] == "None"
        assert by_port["http"]["spec"]["type"] == "ClusterIP" and "clusterIP" not in by_port["http"]["spec"]
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert int(annotations["prometheus.io/port"]) == ports["http"]
        monitoring = mounted_config_maps(deployment, objects)["monitoring.config"]
        assert f'path: "{annotations["prometheus.io/path"]}"' in monitoring


@pytest.mark.parametrize("layout", ("base", "split"))
def test_models_are_mounted_read_only_where_the_config_says(layout):
    objects, found = deployments(layout)
    (claim,) = of_kind(objects, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadOnlyMany"]
    for deployment in found:
        (mount,) = [m for m in container(deployment)["volumeMounts"] if m["mountPath"] == CONTAINER_ROOT]
        assert mount["readOnly"] is True
        volume = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}[mount["name"]]
        assert volume["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"], "readOnly": True}
        for base_path, _, _ in served_models(deployment, objects).values():
            assert base_path.startswith(CONTAINER_ROOT + "/")


# --- models.config: the exporter's, per layout ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported_config(tmp_path_factory):
    """models.config as the exporter writes it for a first export (version 1 of the three split models)."""
    models_dir = tmp_path_factory.mktemp("export") / "models"
    for model in contract.SPLIT_MODELS:
        (models_dir / model / "1").mkdir(parents=True)
    write_configs(models_dir, {})
    return model_entries((models_dir / "models.config").read_text())


def test_base_serves_the_exporters_config(exported_config):
    objects, (deployment,) = deployments("base")
    assert served_models(deployment, objects) == exported_config
    assert (KUBERNETES / "base" / "models.config").read_text().count("config {") == len(contract.SPLIT_MODELS)


def test_split_puts_the_unet_on_gpus_and_the_rest_on_cpus(exported_config):
    objects, found = deployments("split")
    by_device = {is_gpu(d): served_models(d, objects) for d in found}
    assert list(by_device[True]) == [contract.DIFFUSION_MODEL]
    assert sorted(by_device[False]) == sorted([contract.TEXT_ENCODER, contract.DECODER])
    assert {**by_device[True], **by_device[False]} == exported_config


def test_gcs_reads_the_exporters_models_from_a_bucket(exported_config):
    objects, (deployment,) = deployments("gcs")
    served = served_models(deployment, objects)
    assert list(served) == list(exported_config)
    for model, (base_path, versions, labels) in served.items():
        assert re.fullmatch(rf"gs://[a-z0-9][-a-z0-9_.]+/models/{model}", base_path)
        assert (versions, labels) == exported_config[model][1:]
    assert not of_kind(objects, "PersistentVolumeClaim")
    assert CONTAINER_ROOT not in [m["mountPath"] for m in container(deployment)["volumeMounts"]]
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    assert "iam.gke.io/gcp-service-account" in named(objects, "ServiceAccount", account)["metadata"]["annotations"]


def test_kserve_serves_each_model_under_its_contract_name():
    objects = render("kserve")
    claim = of_kind(objects, "PersistentVolumeClaim")[0]["metadata"]["name"]
    served = {}
    for service in of_kind(objects, "InferenceService"):
        model = service["spec"]["predictor"]["model"]
        name = flags(model["args"])["model_name"]
        assert model["storageUri"] == f"pvc://{claim}/{name}"
        assert int(flags(model["args"])["rest_api_timeout_in_ms"]) == int(compose_flags()["rest_api_timeout_in_ms"])
        served[name] = service
    assert sorted(served) == sorted(contract.SPLIT_MODELS)


# --- probes, memory, rollout, disruption, autoscaling --------------------------------------------------------------


@pytest.mark.parametrize("layout", SERVING_LAYOUTS)
def test_probes_run_the_readiness_script_on_the_served_config(layout):
    start_period = int(re.fullmatch(r"(\d+)s", compose_file()["x-serving"]["healthcheck"]["start_period"]).group(1))
    objects, found = deployments(layout)
    for deployment in found:
        settings = flags(container(deployment)["args"])
        expected = ["bash", f"{CONFIG_DIR}/ready.sh", settings["model_config_file"]]
        for probe in ("startupProbe", "readinessProbe"):
            assert container(deployment)[probe]["exec"]["command"] == expected
        startup = container(deployment)["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= start_period, "U-Net loading + warmup"


@pytest.mark.parametrize("layout", SERVING_LAYOUTS)
def test_memory_covers_the_measured_model_sizes(layout):
    objects, found = deployments(layout)
    for deployment in found:
        resources = container(deployment)["resources"]
        weights = sum(PARAMETER_BYTES[model] for model in served_models(deployment, objects))
        assert quantity(resources["requests"]["memory"]) >= weights + RUNTIME_BYTES
        assert quantity(resources["limits"]["memory"]) >= 2 * weights + RUNTIME_BYTES, "room for a version swap"
        gpus = resources["limits"].get("nvidia.com/gpu")
        assert gpus == (1 if contract.DIFFUSION_MODEL in served_models(deployment, objects) else None)


@pytest.mark.parametrize("layout", SERVING_LAYOUTS)
def test_rollout_and_disruption_suit_scarce_gpus(layout):
    objects, found = deployments(layout)
    budgets = of_kind(objects, "PodDisruptionBudget")
    for deployment in found:
        assert deployment["spec"]["strategy"] == {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
        }
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        mine = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= labels.items()]
        assert len(mine) == 1 and mine[0]["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("layout", SERVING_LAYOUTS)
def test_each_deployment_scales_on_tf_serving_metrics_the_adapter_provides(layout):
    rules = yaml.safe_load((KUBERNETES / "prometheus-adapter" / "values.yaml").read_text())["rules"]["custom"]
    provided = {rule["name"]["as"]: rule for rule in rules}
    for rule in rules:  # TF Serving's metric names start with a colon
        assert re.search(r'__name__=":tensorflow:serving:request_(latency_sum|count)"', rule["seriesQuery"])
    objects, found = deployments(layout)
    scalers = {hpa["spec"]["scaleTargetRef"]["name"]: hpa for hpa in of_kind(objects, "HorizontalPodAutoscaler")}
    assert sorted(scalers) == sorted(d["metadata"]["name"] for d in found)
    for hpa in scalers.values():
        for metric in hpa["spec"]["metrics"]:
            assert metric["pods"]["metric"]["name"] in provided
        assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300
