"""Fixtures for the local server's tests.

The contract's models come from the root fixture `standin_repository` (tiny stand-ins exported by the real exporter,
two versions labelled 'stock' and 'tuned', with models.config and warmup records). Two more tiny SavedModels cover
what those cannot: `strings` (string inputs, *_bytes and plain string outputs, a scalar output) and `slow` (a loop
that runs as long as asked, for timeouts). One server with all of them runs for the whole folder.
"""

import numpy as np
import pytest

from server_models import Slow, Strings, save_module, write_config, write_warmup
from server_process import running_server
from server_requests import REST_TIMEOUT_MS

SPLIT_MODELS = ("text_encoder", "diffusion_model", "decoder")


@pytest.fixture(scope="session")
def extra_models(tmp_path_factory):
    """Base paths of `strings` (version 1, with a warmup record) and `slow` (version 1)."""
    root = tmp_path_factory.mktemp("extra_models")
    save_module(Strings(), root / "strings" / "1", ["serving_default", "total", "words"])
    write_warmup(root / "strings" / "1", [("serving_default", {"text": np.array([b"warm"], object)})])
    save_module(Slow(), root / "slow" / "1", ["serving_default"])
    return {"strings": root / "strings", "slow": root / "slow"}


@pytest.fixture(scope="session")
def server_config(standin_repository, extra_models, tmp_path_factory):
    """The stand-ins (both versions, labels stock/tuned) and the extra models, with absolute base paths."""
    models = {
        name: (standin_repository / name, "specific { versions: 1 versions: 2 }", {"stock": 1, "tuned": 2})
        for name in SPLIT_MODELS
    }
    models.update({name: (path, None, {}) for name, path in extra_models.items()})
    return write_config(tmp_path_factory.mktemp("config") / "models.config", models)


@pytest.fixture(scope="session")
def server(server_config):
    """One server for the folder: (rest_url, grpc_target) with .process and .log()."""
    with running_server(server_config, rest_api_timeout_in_ms=REST_TIMEOUT_MS) as running:
        yield running


@pytest.fixture(scope="session")
def reference(standin_repository, extra_models):
    """In-process TF1-session runs of the same SavedModels (tests/tf1.py), keyed by (model, version)."""
    from tf1 import Tf1Model

    models = {(name, version): Tf1Model(standin_repository / name / str(version)) for name in SPLIT_MODELS
              for version in (1, 2)}  # fmt: skip
    models[("strings", 1)] = Tf1Model(extra_models["strings"] / "1")
    yield models
    for model in models.values():
        model.close()


@pytest.fixture(scope="session")
def examples():
    """Small valid inputs for every stand-in signature (batch of 2), as numpy arrays."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 49408, (2, 77)).astype(np.int32)
    context = rng.standard_normal((2, 77, 768)).astype(np.float32)
    latent = rng.standard_normal((2, 16, 16, 4)).astype(np.float32)
    guidance = {
        "context": context,
        "unconditional_context": context[::-1].copy(),
        "num_steps": np.int32(3),
        "guidance_scale": np.float32(7.5),
    }
    return {
        ("text_encoder", "serving_default"): {"tokens": tokens, "negative_tokens": tokens[:, ::-1].copy()},
        ("diffusion_model", "serving_default"): dict(guidance, seed=np.array([5, 6], np.int32)),
        ("diffusion_model", "from_noise"): dict(guidance, initial_latent=latent),
        ("decoder", "serving_default"): {"latent": latent},
        ("decoder", "png"): {"latent": latent},
        ("strings", "serving_default"): {"text": np.array(["héllo".encode(), "snow ☃".encode()], object)},
    }
