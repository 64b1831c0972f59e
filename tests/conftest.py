"""Fixtures shared by every test folder: the CLIP vocabulary and exported model repositories.

Exports are expensive, so each is a session fixture: the stand-in repository (tiny models, the real exporter, the
real contract) for protocol, server and client tests; the KerasCV repository (the real architectures with random
weights from the outside oracle's checkpoint at 128x128, exported by the sd-export CLI) for parity and end-to-end tests.
"""

from pathlib import Path

import pytest
from disk_space import require_free_space

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STANDIN_SIZE = 128


# The CLIP vocabulary shipped inside the project (sd_client's copy; sd_export links to it).
SHIPPED_CLIP_VOCAB = PROJECT_ROOT / "client/sd_client/clip/bpe_simple_vocab_16e6.txt.gz"


@pytest.fixture(scope="session")
def clip_vocab_path():
    if not SHIPPED_CLIP_VOCAB.is_file():
        pytest.fail(f"CLIP vocabulary not found at {SHIPPED_CLIP_VOCAB}")
    return SHIPPED_CLIP_VOCAB


@pytest.fixture(scope="session")
def standin_repository(tmp_path_factory, clip_vocab_path):
    """models/ with two versions of the stand-in models: 1 labelled 'stock', 2 labelled 'tuned' (other weights).

    Each version has all four models: models.config serves the split three, text_to_image.config the fourth."""
    import standins
    from sd_export.export import export_repository

    models_dir = tmp_path_factory.mktemp("standin") / "models"
    for version, label, seed in ((1, "stock", 1234), (2, "tuned", 99)):
        components = standins.components(STANDIN_SIZE, STANDIN_SIZE, seed=seed)
        export_repository(
            components,
            models_dir,
            STANDIN_SIZE,
            STANDIN_SIZE,
            version=version,
            label=label,
            provenance=standins.PROVENANCE[version],
            clip_vocab=clip_vocab_path,
        )
    return models_dir


# The real architectures are built once per process (an 860M-parameter U-Net, 3.4 GB in float32, and its exports):
# under `pytest -n 2 --dist loadgroup` (make test) every test that needs them runs in one worker, and the other worker
# takes the rest of the suite file by file, so its many short tests run while the first one traces, saves and loads.
REAL_ARCHITECTURE_FIXTURES = {
    "sd14_checkpoint", "keras_cv_architectures", "keras_cv_components", "keras_cv_weight_files",
    "keras_cv_repository", "keras_cv_reference", "keras_cv_served",
}  # fmt: skip


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(items):
    for item in items:
        if REAL_ARCHITECTURE_FIXTURES & set(getattr(item, "fixturenames", ())):
            group = "real_architectures"
        else:
            group = _file(item)  # its file: the folder's and module's fixtures start once
        item.add_marker(pytest.mark.xdist_group(group))
    # Files with a test that loads the real models' float32 export into this process run last, and those that hold it
    # to the end (keras_cv_served) after those that close it (a stable sort keeps files whole). TensorFlow's CPU
    # allocator keeps what a closed load took (about 4.5 GB) for the process's life and reuses it for the next load,
    # so the worker grows from about 6 to 11 GB once; the tests that start a 5-10 GB sd-export or model server of the
    # real models run before, beside the smaller worker.
    order = {}
    for item in items:
        order[_file(item)] = max(order.get(_file(item), 0), _real_export_load(item))
    items.sort(key=lambda item: order[_file(item)])


def _real_export_load(item):
    """0: none in this process; 1: loads the real models' export and closes it; 2: holds it to the end."""
    if "keras_cv_served" in getattr(item, "fixturenames", ()):
        return 2
    return 1 if item.get_closest_marker("loads_real_export") else 0


def _file(item):
    return item.nodeid.split("::")[0]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """Stop if pytest-xdist did not group (it renames each test "<nodeid>@<group>", which pytest 9.2 ignores): every
    worker would build the real architectures, and the machine would run out of memory."""
    ungrouped = [nodeid for nodeid in ids if "@" not in nodeid]
    if ungrouped and node.config.getoption("dist") == "loadgroup":
        pytest.exit(
            f"pytest-xdist did not group {ungrouped[0]} and {len(ungrouped) - 1} more tests: install the pytest that "
            "constraints.txt pins",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


KERAS_CV_SIZE = 128  # KerasCV's StableDiffusion rounds sizes to multiples of 128


@pytest.fixture(scope="session")
def chain_server(standin_repository):
    """sd-model-server on the stand-ins' models.config (the three-model chain), shared by the client and sampler tests."""
    from server_process import running_server

    with running_server(standin_repository / "models.config") as running:
        yield running


@pytest.fixture(scope="session")
def one_request_server(standin_repository):
    """sd-model-server on the stand-ins' text_to_image.config (prompt in, PNG out)."""
    from server_process import running_server

    with running_server(standin_repository / "text_to_image.config") as running:
        yield running


@pytest.fixture(scope="session")
def sd14_checkpoint(tmp_path_factory):
    """SD 1.4's architecture with random weights from outside this project: diffusers' UNet2DConditionModel and
    AutoencoderKL and transformers' CLIPTextModel, built in their own process (torch never enters this one) and saved
    as one CompVis/LDM .safetensors and as a diffusers folder, with their forward passes (tests/checkpoints/
    torch_oracle.py). About a minute and 6 GB in that process; 9 GB of files."""
    import subprocess
    import sys

    folder = tmp_path_factory.mktemp("sd14")
    require_free_space(folder, 9, "SD 1.4's checkpoint as an LDM file and a diffusers folder")
    script = PROJECT_ROOT / "tests" / "checkpoints" / "torch_oracle.py"
    result = subprocess.run([sys.executable, str(script), "build", str(folder)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return {
        "ldm": folder / "sd14.safetensors",
        "diffusers": folder / "diffusers",
        "reference": folder / "reference.npz",
    }


@pytest.fixture(scope="session")
def keras_cv_architectures():
    """KerasCV's real SD v1.4 architectures: the one in-process copy of each model. Tests that read only their layers
    and shapes (the name-mapping coverage) take these and need no torch; keras_cv_components loads weights into them."""
    from keras_cv.models.stable_diffusion import Decoder, DiffusionModel, TextEncoder
    from sd_export.weights import Components

    return Components(
        TextEncoder(77, download_weights=False),
        DiffusionModel(KERAS_CV_SIZE, KERAS_CV_SIZE, 77, download_weights=False),
        Decoder(KERAS_CV_SIZE, KERAS_CV_SIZE, download_weights=False),
    )


@pytest.fixture(scope="session")
def keras_cv_components(keras_cv_architectures, sd14_checkpoint):
    """The architectures holding the oracle checkpoint's weights, converted from its LDM file by sd_export's loader."""
    from sd_export.checkpoints import open_checkpoint
    from sd_export.weights import load_part

    components = keras_cv_architectures
    checkpoint = open_checkpoint(sd14_checkpoint["ldm"], "diffusion_model")
    for part in ("text_encoder", "diffusion_model", "decoder"):
        load_part(checkpoint, part, getattr(components, part))
    return components


@pytest.fixture(scope="session")
def keras_cv_weight_files(keras_cv_components, tmp_path_factory):
    """The components' weights as users hand them to `make export`: legacy HDF5 (KerasCV's downloads and Keras-2-era
    fine-tuning checkpoints) for the U-Net and the text encoder, Keras 3's .weights.h5 for the decoder."""
    import h5py
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    folder = tmp_path_factory.mktemp("weights")
    require_free_space(folder, 4, "KerasCV's weight files")
    files = {
        "diffusion_model": folder / "ckpt_epochs_72_res_128_mp_True.h5",
        "text_encoder": folder / "text_encoder.h5",
        "decoder": folder / "decoder.weights.h5",
    }
    for component in ("diffusion_model", "text_encoder"):
        with h5py.File(files[component], "w") as handle:
            save_weights_to_hdf5_group(handle, getattr(keras_cv_components, component))
    keras_cv_components.decoder.save_weights(files["decoder"])
    return files


@pytest.fixture(scope="session")
def keras_cv_repository(sd14_checkpoint, keras_cv_weight_files, tmp_path_factory, clip_vocab_path):
    """models/ exported by the sd-export CLI (a subprocess, as `make export` runs it) from three formats at once: the
    U-Net from the LDM .safetensors, the text encoder from a KerasCV .h5, the decoder from the diffusers folder."""
    import subprocess
    import sys

    models_dir = tmp_path_factory.mktemp("keras_cv") / "models"
    require_free_space(models_dir.parent, 8, "The float32 export of the real architectures")
    command = [
        sys.executable, "-m", "sd_export.cli",
        "--ckpt", str(sd14_checkpoint["ldm"]),
        "--text-encoder", str(keras_cv_weight_files["text_encoder"]),
        "--decoder", str(sd14_checkpoint["diffusers"]),
        "--height", str(KERAS_CV_SIZE), "--width", str(KERAS_CV_SIZE),
        "--models-dir", str(models_dir), "--label", "tuned", "--clip-vocab", str(clip_vocab_path),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return models_dir


@pytest.fixture(scope="session")
def keras_cv_reference(keras_cv_components, clip_vocab_path):
    """KerasCV's own StableDiffusion running on the same models: the parity reference."""
    from keras_cv.models import StableDiffusion
    from keras_cv.models.stable_diffusion import SimpleTokenizer

    reference = StableDiffusion(KERAS_CV_SIZE, KERAS_CV_SIZE, jit_compile=False)
    reference._text_encoder = keras_cv_components.text_encoder
    reference._diffusion_model = keras_cv_components.diffusion_model
    reference._decoder = keras_cv_components.decoder
    reference._tokenizer = SimpleTokenizer(bpe_path=str(clip_vocab_path))
    return reference
