"""The model config: TF Serving's text proto, the /models/ base-path rule, version policies and labels."""

import pytest

from sd_serving.config import ConfigError, plan_models
from server_models import write_config


def make_versions(base, *versions, extra=("tmp", ".staging-1")):
    for version in versions:
        (base / str(version)).mkdir(parents=True)
    for name in extra:  # non-numeric folders are not versions (TF Serving ignores them)
        (base / name).mkdir(parents=True, exist_ok=True)
    return base


def plan(config_path):
    return {model.name: model for model in plan_models(config_path)}


def test_container_paths_resolve_against_the_config_folder(tmp_path):
    make_versions(tmp_path / "repo" / "decoder", 1, 2)
    config = write_config(tmp_path / "repo" / "models.config", {"decoder": ("/models/decoder", None, {})})
    decoder = plan(config)["decoder"]
    assert decoder.base_path == (tmp_path / "repo" / "decoder").resolve()
    assert decoder.version_path(2) == decoder.base_path / "2"


def test_absolute_host_paths_are_used_as_they_are(tmp_path):
    base = make_versions(tmp_path / "elsewhere" / "decoder", 4)
    config = write_config(tmp_path / "models.config", {"decoder": (base, None, {})})
    assert plan(config)["decoder"].base_path == base


@pytest.mark.parametrize(
    "policy,expected",
    [
        (None, (10,)),  # TF Serving's default: the latest version
        ("latest { }", (10,)),
        ("latest { num_versions: 2 }", (3, 10)),
        ("latest { num_versions: 9 }", (1, 3, 10)),
        ("all { }", (1, 3, 10)),
        ("specific { versions: 3 versions: 1 }", (1, 3)),
    ],
)
def test_version_policies(tmp_path, policy, expected):
    make_versions(tmp_path / "m", 1, 3, 10)  # 10 sorts after 3: numeric order, not text
    config = write_config(tmp_path / "models.config", {"m": (tmp_path / "m", policy, {})})
    assert plan(config)["m"].versions == expected


def test_labels_are_kept(tmp_path):
    make_versions(tmp_path / "m", 1, 2)
    config = write_config(tmp_path / "models.config", {"m": (tmp_path / "m", "all {}", {"stock": 1, "tuned": 2})})
    assert plan(config)["m"].labels == {"stock": 1, "tuned": 2}


@pytest.mark.parametrize(
    "text,message",
    [
        ("model_config_list { config { name: 'm' base_path: '/x' ", "is not a valid ModelServerConfig text proto"),
        ("model_config_list { config { nmae: 'm' } }", "is not a valid ModelServerConfig text proto"),
        ("", "only model_config_list is supported"),
        ("model_config_list { }", "lists no models"),
        ("model_config_list { config { name: 'm' base_path: 'relative/m' model_platform: 'tensorflow' } }",
         "Expected an absolute path for base_path; got 'relative/m'"),
        ("model_config_list { config { name: 'm' base_path: '/models/m' } }", "model_platform '' is not supported"),
        ("model_config_list { config { name: 'm' base_path: '/models/m' model_platform: 'tensorflow' } "
         "config { name: 'm' base_path: '/models/m' model_platform: 'tensorflow' } }",
         "Illegal to list model m multiple times"),
        ("model_config_list { config { name: 'm' base_path: '/models/none' model_platform: 'tensorflow' } }",
         "none is not a folder"),
        ("model_config_list { config { name: 'm' base_path: '/models/empty' model_platform: 'tensorflow' } }",
         "model m: no version folders (numeric names) under"),
        ("model_config_list { config { name: 'm' base_path: '/models/m' model_platform: 'tensorflow' "
         "model_version_policy { specific { versions: 2 versions: 5 } } } }",
         "version(s) 5 of the specific policy not found under"),
        ("model_config_list { config { name: 'm' base_path: '/models/m' model_platform: 'tensorflow' "
         "version_labels { key: 'old' value: 1 } } }",
         "label 'old' names version 1, which is not among the versions being loaded (2)"),
    ],
)  # fmt: skip
def test_config_errors_name_what_is_wrong(tmp_path, text, message):
    make_versions(tmp_path / "m", 1, 2)
    (tmp_path / "empty").mkdir()
    (tmp_path / "models.config").write_text(text)
    with pytest.raises(ConfigError) as caught:
        plan_models(tmp_path / "models.config")
    assert message in str(caught.value)


def test_a_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="cannot read --model_config_file .*absent.config"):
        plan_models(tmp_path / "absent.config")
