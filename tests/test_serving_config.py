"""serving/: every file parses as TF Serving reads it, and models.config points at servable models."""  # noqa: E501

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from genkeras.serving import config as config_lib
from genkeras.serving.protos import BatchingParameters, MonitoringConfig

ROOT = Path(__file__).resolve().parents[1]
SERVING = ROOT / "serving"
SAVEDMODELS = ROOT / "savedmodels"
FOUNDATION = ("pca", "dense_ae", "conv_ae", "denoising_ae")


def parse(name, message):
    return text_format.Parse((SERVING / name).read_text(), message)


def models_config():
    return parse("models.config", model_server_config_pb2.ModelServerConfig())


def test_models_config_is_a_model_server_config():
    config = models_config()
    models = {m.name: m for m in config.model_config_list.config}
    assert set(FOUNDATION) <= set(models)
    for name, model in models.items():
        assert model.base_path == f"/models/{name}"  # the docker-compose / k8s mount
        assert model.model_platform == "tensorflow"
        assert model.model_version_policy.WhichOneof("policy_choice") in (
            "latest",
            "specific",
            "all",
        )
        assert "stable" in model.version_labels


def test_every_savedmodels_folder_is_listed():
    listed = {m.name for m in models_config().model_config_list.config}
    on_disk = (
        {p.name for p in SAVEDMODELS.iterdir() if p.is_dir() and not p.name.startswith(".")}
        if SAVEDMODELS.exists()
        else set()
    )
    assert on_disk <= listed, f"add these to serving/models.config: {sorted(on_disk - listed)}"


def test_genkeras_serve_maps_container_paths_to_savedmodels():
    maps = config_lib.parse_path_maps([], SERVING / "models.config")
    assert (
        config_lib.resolve_base_path("/models/conv_ae", SERVING / "models.config", maps)
        == SAVEDMODELS / "conv_ae"
    )
    custom = config_lib.parse_path_maps(["/models=/srv/exports"], None)
    assert config_lib.resolve_base_path("/models/pca", None, custom) == Path("/srv/exports/pca")
    assert (
        config_lib.resolve_base_path("rel/pca", SERVING / "models.config", ())
        == SERVING / "rel" / "pca"
    )


def _listed_models_on_disk():
    config = models_config()
    maps = config_lib.parse_path_maps([], SERVING / "models.config")
    for model in config.model_config_list.config:
        yield model, config_lib.resolve_base_path(model.base_path, SERVING / "models.config", maps)


@pytest.mark.parametrize(
    "name", FOUNDATION + ("conv_vae", "vae", "cvae", "pixelcnn", "cpixelcnn", "pixelrnn")
)
@pytest.mark.slow
def test_each_base_path_holds_a_loadable_version_with_the_documented_signatures(name):
    from genkeras.registry import SPECS
    from genkeras.serving.servable import Servable

    found = {model.name: (model, path) for model, path in _listed_models_on_disk()}
    if name not in found:
        pytest.skip(f"{name} is not in serving/models.config")
    model, base = found[name]
    versions = (
        sorted(int(p.name) for p in base.glob("*") if p.is_dir() and p.name.isdigit())
        if base.exists()
        else []
    )
    if not versions:
        pytest.skip(f"{base} has no version yet (the lead exports the shipped models)")
    aspired = config_lib.aspired_versions(model, versions)
    assert aspired, f"{name}: the version policy selects none of {versions}"
    for label, version in model.version_labels.items():
        assert version in versions, f"{name}: label {label} -> {version}, not on disk"
    servable = Servable(name, aspired[-1], base / str(aspired[-1]))
    promised = (
        set(SPECS[name].signatures) | {"serving_default"} if name in SPECS else {"serving_default"}
    )
    assert promised <= set(servable.functions)
    count = servable.warm_up()  # the export's warm-up records run against the model
    assert count == 0 or count >= len(promised), "one warm-up record per signature"


def test_batching_config_is_batching_parameters_and_matches_the_export():
    from genkeras.export import BATCHING_PARAMS

    params = parse("batching.config", BatchingParameters())
    assert params.max_batch_size.value == 64
    assert 0 < params.batch_timeout_micros.value <= 10_000
    assert params.num_batch_threads.value >= 1
    sizes = list(params.allowed_batch_sizes)
    assert sizes == sorted(sizes) and sizes[-1] == params.max_batch_size.value
    assert text_format.Parse(BATCHING_PARAMS, BatchingParameters()) == params


def test_monitoring_config_enables_prometheus():
    config = parse("monitoring.config", MonitoringConfig())
    assert config.prometheus_config.enable
    assert config.prometheus_config.path.startswith("/")


def _flags(args):
    return dict(arg.lstrip("-").split("=", 1) for arg in args)


def test_docker_compose_runs_tensorflow_serving_with_these_files():
    compose = yaml.safe_load((SERVING / "docker-compose.yml").read_text())
    (service,) = compose["services"].values()
    assert service["image"].split(":")[0].endswith("tensorflow/serving")
    ports = {p.rsplit(":", 1)[-1]: p for p in service["ports"]}
    assert set(ports) == {"8500", "8501"}
    flags = _flags(service["command"])
    assert flags["port"] == "8500" and flags["rest_api_port"] == "8501"
    assert flags["enable_batching"] == "true"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
    assert mounts["/models"] == "../savedmodels"
    for flag in ("model_config_file", "batching_parameters_file", "monitoring_config_file"):
        target = flags[flag]
        assert target in mounts, f"{flag}={target} is not mounted"
        assert (SERVING / mounts[target]).exists()


def test_kubernetes_manifests():
    docs = {}
    for path in sorted((SERVING / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[doc["kind"]] = doc
    assert {"Deployment", "Service", "HorizontalPodAutoscaler"} <= set(docs)
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("tensorflow/serving")
    for probe in ("readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert get["path"].startswith("/v1/models/") and get["port"] in ("http", 8501)
    flags = _flags(container["args"])
    assert flags["model_config_file"].startswith("/config/")
    ports = {p["port"] for p in docs["Service"]["spec"]["ports"]}
    assert ports == {8500, 8501}
    assert (
        docs["Service"]["spec"]["selector"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]
    )
    target = docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == (
        "Deployment",
        docs["Deployment"]["metadata"]["name"],
    )


@pytest.mark.parametrize(
    "policy, expected",
    [
        ("", [5]),
        ("model_version_policy { latest { num_versions: 2 } }", [3, 5]),
        ("model_version_policy { all {} }", [1, 3, 5]),
        ("model_version_policy { specific { versions: 1 versions: 4 } }", [1]),
    ],
)
def test_version_policies(policy, expected):
    model = text_format.Parse(
        f'name: "m" base_path: "/m" {policy}', model_server_config_pb2.ModelConfig()
    )
    assert config_lib.aspired_versions(model, [5, 1, 3]) == expected


def label_problems(model, versions: list[int]) -> list[str]:
    """Labels of `model` naming a version its policy does not keep loaded, given `versions`
    on disk and given them plus the next export (what `python train.py` writes)."""
    problems = []
    for on_disk in (versions, [*versions, max(versions, default=0) + 1]):
        kept = config_lib.aspired_versions(model, on_disk)
        for label, version in sorted(model.version_labels.items()):
            if version not in kept:
                problems.append(
                    f"{model.name}: label {label} -> {version}, but with versions {on_disk} on "
                    f"disk the policy keeps {kept}"
                )
    return problems


def test_every_label_names_a_version_its_policy_keeps_loaded_even_after_the_next_export():
    for model, base in _listed_models_on_disk():
        versions = (
            sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())
            if base.exists()
            else []
        )
        assert label_problems(model, versions) == []
        assert all(v in versions for v in model.version_labels.values()), model.name


def test_the_label_check_catches_a_latest_policy_that_moves_past_its_label():
    shipped_before = text_format.Parse(
        'name: "conv_vae" base_path: "/models/conv_vae" '
        "model_version_policy { latest { num_versions: 1 } } "
        'version_labels { key: "stable" value: 1 }',
        model_server_config_pb2.ModelConfig(),
    )
    assert len(label_problems(shipped_before, [1, 2])) == 2  # on disk now, and after an export
    assert len(label_problems(shipped_before, [1])) == 1  # fine until the next export
