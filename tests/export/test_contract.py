"""Every exported model shows exactly the signature contract, as TF Serving and saved_model_cli see it."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf
from sd_export import contract
from tf1 import Tf1Model

SIZE = 128
SPLIT = ("text_encoder", "diffusion_model", "decoder")


def expected_shape(shape):
    return [-1 if dim is None else dim for dim in contract.concrete_shape(shape, SIZE, SIZE)]


def described(tensor_info):
    dims = [d.size for d in tensor_info.tensor_shape.dim]
    return tf.dtypes.as_dtype(tensor_info.dtype).name, dims


@pytest.mark.parametrize("model", SPLIT)
def test_signature_defs_are_the_contract(standin_repository, model):
    meta_graph = Tf1Model(standin_repository / model / "1").meta_graph
    signatures = {name: sig for name, sig in meta_graph.signature_def.items() if not name.startswith("__")}
    assert set(signatures) == set(contract.SIGNATURES[model])
    for name, spec in contract.SIGNATURES[model].items():
        for side in ("inputs", "outputs"):
            actual = {key: described(info) for key, info in getattr(signatures[name], side).items()}
            expected = {key: (dtype, expected_shape(shape)) for key, (dtype, shape) in spec[side].items()}
            assert actual == expected, f"{model}/{name} {side}"


@pytest.mark.parametrize("model", SPLIT)
def test_saved_model_cli_lists_only_the_contract(standin_repository, model):
    cli = Path(sys.executable).with_name("saved_model_cli")
    shown = subprocess.run(
        [str(cli), "show", "--dir", str(standin_repository / model / "1"), "--all"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    listed = set(re.findall(r"signature_def\['([^']+)'\]", shown))
    assert listed == set(contract.SIGNATURES[model]) | {"__saved_model_init_op"}
    for spec in contract.SIGNATURES[model].values():
        for name in spec["inputs"]:
            assert f"inputs['{name}']" in shown


def test_each_variable_is_stored_once(keras_cv_repository, keras_cv_components):
    """variables/ holds at most 1.02x the parameter bytes (ExportArchive would write every variable twice)."""
    for model in SPLIT:
        parameter_bytes = sum(
            v.numpy().nbytes for v in getattr(keras_cv_components, model).variables
        )
        stored = sum(f.stat().st_size for f in (keras_cv_repository / model / "1" / "variables").iterdir())
        assert stored <= 1.02 * parameter_bytes, f"{model}: {stored} bytes stored for {parameter_bytes}"
        assert stored >= parameter_bytes, f"{model}: weights missing from variables/"
