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
