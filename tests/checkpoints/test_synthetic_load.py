"""Synthetic SD 1.4 VAEs (real shapes, random values) in each safetensors format load into KerasCV's Decoder and
ImageEncoder: float32, float16 and bfloat16 storage, a sharded diffusers folder, an LDM standalone file, a whole-LDM
prefix. The values are chosen exactly representable in all three float types, so every load must give identical
weights; spot checks tie single variables to their source tensors by hand (transposes, 1x1 linears, block order).
The torch oracle (test_oracle.py) proves the forward passes; these run without torch and without the lock."""

import json

import ml_dtypes
import numpy as np
import pytest
import sd14_layouts
from safetensors.numpy import save_file
from sd_export.checkpoints import open_checkpoint
from sd_export.weights import load_part

SIZE = 64


@pytest.fixture(scope="module")
def vae_state(sd14_shapes):
    """diffusers-named VAE tensors whose values survive float16 and bfloat16 unchanged."""
    rng = np.random.default_rng(11)
    state = {}
    for name, shaped in sd14_shapes["vae"].items():
        values = rng.standard_normal(shaped.shape, dtype=np.float32).astype(ml_dtypes.bfloat16).astype(np.float32)
        values[np.abs(values) < 1e-3] = 0  # float16's subnormals would round these
        state[name] = values
    return state


@pytest.fixture(scope="module")
def vae_models(image_encoder):
    from keras_cv.models.stable_diffusion import Decoder

    return {"decoder": Decoder(SIZE, SIZE, download_weights=False), "image_encoder": image_encoder}


def loaded(path, models):
    checkpoint = open_checkpoint(path, "decoder")
    assert checkpoint.parts() == ("decoder", "image_encoder")
    for part, model in models.items():
        load_part(checkpoint, part, model)
    return checkpoint, {part: [np.array(weight) for weight in model.weights] for part, model in models.items()}


def ldm_vae(state, prefix, dtype):
    renamed = {}
    for name, value in state.items():
        ldm_name, to_conv = sd14_layouts.vae_ldm_name(name)
        renamed[prefix + ldm_name] = (value[:, :, None, None] if to_conv else value).astype(dtype)
    return renamed


def sharded_folder(folder, state, dtype):
    """A diffusers vae/ folder in shards of about a third each, with its index."""
    (folder / "vae").mkdir(parents=True)
    (folder / "vae" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", **sd14_layouts.VAE_CONFIG}))
    names = sorted(state)
    weight_map = {}
    for shard, chunk in enumerate(np.array_split(names, 3), 1):
        file_name = f"diffusion_pytorch_model-0000{shard}-of-00003.safetensors"
        save_file({name: state[name].astype(dtype) for name in chunk}, str(folder / "vae" / file_name))
        weight_map.update(dict.fromkeys(chunk, file_name))
    index = {"metadata": {}, "weight_map": weight_map}
    (folder / "vae" / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    return folder


def test_every_format_and_dtype_gives_the_same_weights(tmp_path, vae_state, vae_models):
    checkpoint, expected = loaded(sharded_folder(tmp_path / "pipeline", vae_state, np.float16), vae_models)
    assert checkpoint.format_name == "diffusers"
    spot_check(vae_state, vae_models)
    for name, prefix, dtype in (
        ("vae-ft.safetensors", "", ml_dtypes.bfloat16),  # a standalone VAE, as replacement VAEs come
        ("whole.safetensors", "first_stage_model.", np.float32),
    ):
        path = tmp_path / name
        save_file(ldm_vae(vae_state, prefix, dtype), str(path))
        checkpoint, weights = loaded(path, vae_models)
        assert checkpoint.format_name == "ldm_safetensors"
        for part in vae_models:
            assert all(np.array_equal(a, b) for a, b in zip(weights[part], expected[part], strict=True)), (name, part)


def spot_check(state, models):
    decoder, encoder = models["decoder"], models["image_encoder"]
    # a 3x3 conv: torch (O, I, H, W) -> Keras (H, W, I, O)
    np.testing.assert_array_equal(decoder.layers[2].conv2d.kernel, state["decoder.conv_in.weight"].transpose(2, 3, 1, 0))
    # the attention's 1x1 projection, a linear in diffusers' naming
    np.testing.assert_array_equal(decoder.layers[4].q.conv2d.kernel[0, 0], state["decoder.mid_block.attentions.0.to_q.weight"].T)
    # the first up-block KerasCV runs is diffusers' up_blocks.0 (LDM's up.3)
    np.testing.assert_array_equal(decoder.layers[6].norm1.gamma, state["decoder.up_blocks.0.resnets.0.norm1.weight"])
    np.testing.assert_array_equal(encoder.layers[-2].conv2d.bias, state["quant_conv.bias"])


def test_a_missing_tensor_is_named(tmp_path, vae_state, vae_models):
    from sd_export.checkpoints import WeightsError

    state = ldm_vae(vae_state, "", np.float16)
    del state["decoder.up.0.block.2.conv2.weight"], state["decoder.norm_out.bias"]
    path = tmp_path / "incomplete.safetensors"
    save_file(state, str(path))
    checkpoint = open_checkpoint(path, "decoder")
    with pytest.raises(WeightsError) as caught:
        load_part(checkpoint, "decoder", vae_models["decoder"])
    message = str(caught.value)
    assert message.startswith(f"{path}: 2 VAE decoder tensors are missing (")
    assert "decoder.up.0.block.2.conv2.weight" in message and "decoder.norm_out.bias" in message


def test_convert_writes_keras_files_that_reload_bit_identically(tmp_path, vae_state, vae_models):
    """sd-export convert (a subprocess, as users run it): the .weights.h5 files Keras reads back equal the weights
    loaded straight from the checkpoint; a second convert into the same folder is refused, nothing overwritten."""
    import subprocess
    import sys

    source = tmp_path / "vae.safetensors"
    save_file(ldm_vae(vae_state, "first_stage_model.", np.float16), str(source))
    _, expected = loaded(source, vae_models)
    out = tmp_path / "keras"
    command = [sys.executable, "-m", "sd_export.cli", "convert", str(source), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(path.name for path in out.iterdir()) == ["decoder.weights.h5", "image_encoder.weights.h5"]
    assert not list(tmp_path.glob(".sd-export-convert-*")), "the staging folder is left behind"
    for part, model in vae_models.items():
        model.load_weights(out / f"{part}.weights.h5")
        assert all(np.array_equal(np.array(a), b) for a, b in zip(model.weights, expected[part], strict=True)), part

    before = sorted((path.name, path.stat().st_mtime_ns) for path in out.iterdir())
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 1 and "decoder.weights.h5 exists" in again.stderr.splitlines()[-1]
    assert sorted((path.name, path.stat().st_mtime_ns) for path in out.iterdir()) == before
