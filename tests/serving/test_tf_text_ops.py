"""TF Text's ops are registered when a served SavedModel uses them, and only then: importing tensorflow_text costs
about 120 MB of resident memory, which a server of the split models does not need. Both loaders are checked: the
local server's (sd_serving) and the client's in-process transport (sd_client.transports.local).

Each case runs in a fresh interpreter, since this test process has imported tensorflow_text already (server_models).
"""

import json
import subprocess
import sys

import pytest

LOAD_AND_RUN = """
import json, sys
import numpy as np
loader, name, path, signature, inputs = json.loads(sys.argv[1])
if loader == "server":
    from sd_serving.servable import LoadedVersion
    loaded = LoadedVersion.load(name, 1, path)
else:
    from sd_client.transports.local import _LoadedModel, import_tensorflow
    loaded = _LoadedModel(import_tensorflow(), path, name)
outputs = loaded.run(signature, {key: np.array(value, object) for key, value in inputs.items()}) if signature else {}
print(json.dumps({"tensorflow_text imported": "tensorflow_text" in sys.modules,
                  "outputs": {key: value.tolist() for key, value in outputs.items()}}))
"""


LOADERS = pytest.mark.parametrize("loader", ["server", "client in-process transport"])


def load_in_fresh_process(loader, name, path, signature=None, inputs=None):
    command = [sys.executable, "-c", LOAD_AND_RUN, json.dumps([loader, name, str(path), signature, inputs or {}])]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


@LOADERS
def test_a_model_without_tf_text_ops_loads_without_tensorflow_text(loader, standin_repository):
    report = load_in_fresh_process(loader, "decoder", standin_repository / "decoder" / "1")
    assert report["tensorflow_text imported"] is False


@LOADERS
def test_a_model_with_tf_text_ops_gets_them_registered_and_runs(loader, extra_models):
    report = load_in_fresh_process(loader, "strings", extra_models["strings"] / "1", "words", {"text": ["a b  c", "d"]})
    assert report == {"tensorflow_text imported": True, "outputs": {"word_count": [3, 1]}}


WITHOUT_TF_TEXT = """
import sys
sys.modules["tensorflow_text"] = None  # import tensorflow_text now raises ImportError, as when it is not installed
from sd_client import errors
from sd_client.transports.local import _LoadedModel, import_tensorflow
try:
    _LoadedModel(import_tensorflow(), sys.argv[1], "strings")
except errors.MissingTensorFlow as e:
    print(type(e).__name__, e)
"""


def test_the_client_without_tensorflow_text_names_the_package(extra_models):
    """TensorFlow installed without the client's [local] extra: a model with TF Text's ops is refused with what to
    install, not with TensorFlow's "Op type not registered"."""
    command = [sys.executable, "-c", WITHOUT_TF_TEXT, str(extra_models["strings"] / "1")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines()[-1] == (
        'MissingTensorFlow strings uses TF Text\'s ops, which need tensorflow-text: pip install "./client[local]"'
    )
