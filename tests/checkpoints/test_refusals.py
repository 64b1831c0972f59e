"""Checkpoints that cannot be exported are refused with one line naming the file, what it is and what to do, from the
headers alone (no model built); through sd-export, models/ stays exactly as it was. Small synthetic files: only the
tensors the check reads, with the shapes that tell the models apart."""

import json
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file
from sd_export.checkpoints import WeightsError, open_checkpoint

UNET = "model.diffusion_model."
CONV_IN = "input_blocks.0.0.weight"
TO_K = "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"


def tensors(**shapes):
    return {name.replace("__", "."): np.zeros(shape, np.float16) for name, shape in shapes.items()}


def ldm_unet(conv_in_channels=4, context=768, extra=None):
    state = {UNET + CONV_IN: np.zeros((320, conv_in_channels, 3, 3), np.float16),
             UNET + TO_K: np.zeros((320, context), np.float16)}  # fmt: skip
    state.update(extra or {})
    return state


def written(tmp_path, name, state, metadata=None):
    path = tmp_path / name
    save_file(state, str(path), metadata=metadata)
    return path


def refusal(path):
    with pytest.raises(WeightsError) as caught:
        open_checkpoint(path, "diffusion_model")
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    return message


def diffusers_unet(folder, config=None, weights=True):
    folder.mkdir(parents=True)
    unet_config = {"_class_name": "UNet2DConditionModel", "cross_attention_dim": 768, "in_channels": 4}
    (folder / "config.json").write_text(json.dumps({**unet_config, **(config or {})}))
    if weights:
        save_file({"conv_in.weight": np.zeros((320, 4, 3, 3), np.float32)}, str(folder / "diffusion_pytorch_model.safetensors"))
    return folder


@pytest.mark.parametrize("name, head", [
    ("model.ckpt", b"PK\x03\x04" + bytes(60)),  # torch.save's zip container
    ("model.pt", b"\x80\x04\x95" + bytes(60)),  # a bare pickle
    ("weights.bin", b"\x80\x02}q\x00" + bytes(60)),
    ("renamed.safetensors", b"\x80\x04\x95" + bytes(60)),  # told by content, whatever the name says
])  # fmt: skip
def test_pickle_files_are_never_opened(tmp_path, name, head):
    path = tmp_path / name
    path.write_bytes(head)
    message = refusal(path)
    assert "pickle" in message and "never unpickled" in message and "safetensors" in message


def test_a_diffusers_folder_with_only_bin_weights(tmp_path):
    folder = diffusers_unet(tmp_path / "unet", weights=False)
    (folder / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04" + bytes(10))
    message = refusal(folder)
    assert "diffusion_pytorch_model.bin" in message and "pickle" in message and "safe_serialization=True" in message


@pytest.mark.parametrize("state, expected", [
    (ldm_unet(context=1024), "an SD 2.x U-Net"),
    (ldm_unet(extra=tensors(cond_stage_model__model__positional_embedding=(77, 1024))), "an SD 2.x checkpoint"),
    (ldm_unet(context=2048, extra=tensors(conditioner__embedders__0__x=(1,))), "an SDXL checkpoint"),
    (ldm_unet(conv_in_channels=9), "an inpainting U-Net (9 input channels"),
    (ldm_unet(extra=tensors(v_pred=())), "a v-prediction model (v_pred tensor)"),
    (tensors(lora_unet_down_blocks_0_attentions_0_proj_in__lora_down__weight=(4, 320),
             lora_unet_down_blocks_0_attentions_0_proj_in__alpha=()), "a LoRA (low-rank adapter) file, not a full model"),
    (tensors(some__other__model=(3,)), "no SD 1.x U-Net, text encoder or VAE"),
    (ldm_unet(extra=tensors(model__diffusion_model__label_emb__0__0__weight=(1280, 2816))), "an SDXL checkpoint"),
    (ldm_unet(extra=tensors(cond_stage_model__extra__weight=(3,))), "belong to no SD 1.x part (cond_stage_model.extra"),
])  # fmt: skip
def test_other_models_are_refused_by_what_they_hold(tmp_path, state, expected):
    assert expected in refusal(written(tmp_path, "model.safetensors", state))


def test_a_lora_training_output_folder(tmp_path):
    """What diffusers' LoRA training examples write: one pytorch_lora_weights.safetensors, no model folders."""
    (tmp_path / "lora").mkdir()
    save_file(tensors(unet__down_blocks__0__attentions__0__proj_in__lora_A__weight=(4, 320)),
              str(tmp_path / "lora" / "pytorch_lora_weights.safetensors"))  # fmt: skip
    assert "a LoRA (low-rank adapter) training output, not a full model" in refusal(tmp_path / "lora")


def test_a_v_prediction_config_beside_the_file(tmp_path):
    path = written(tmp_path, "tuned-v.safetensors", ldm_unet())
    (tmp_path / "tuned-v.yaml").write_text('model:\n  params:\n    parameterization: "v"\n')
    assert "a v-prediction model" in refusal(path) and "tuned-v.yaml" in refusal(path)
    (tmp_path / "tuned-v.yaml").write_text("model:\n  params:\n    parameterization: eps\n")
    assert open_checkpoint(path, "diffusion_model").parts() == ("diffusion_model",)


@pytest.mark.parametrize("config, expected", [
    ({"cross_attention_dim": 1024}, "an SD 2.x U-Net (cross_attention_dim 1024)"),
    ({"addition_embed_type": "text_time"}, "an SDXL U-Net"),
])  # fmt: skip
def test_diffusers_configs_of_other_models(tmp_path, config, expected):
    assert expected in refusal(diffusers_unet(tmp_path / "unet", config))


def test_a_diffusers_inpainting_unet(tmp_path):
    folder = diffusers_unet(tmp_path / "unet", {"in_channels": 9}, weights=False)
    save_file({"conv_in.weight": np.zeros((320, 9, 3, 3), np.float16)}, str(folder / "diffusion_pytorch_model.safetensors"))
    assert "an inpainting U-Net (9 input channels" in refusal(folder)


def test_diffusers_pipelines_of_other_models(tmp_path):
    diffusers_unet(tmp_path / "sdxl" / "unet")
    (tmp_path / "sdxl" / "text_encoder_2").mkdir()
    assert "an SDXL pipeline" in refusal(tmp_path / "sdxl")
    diffusers_unet(tmp_path / "v" / "unet")
    (tmp_path / "v" / "scheduler").mkdir()
    (tmp_path / "v" / "scheduler" / "scheduler_config.json").write_text('{"prediction_type": "v_prediction"}')
    assert "a v-prediction model (scheduler_config.json)" in refusal(tmp_path / "v")


def test_corrupt_and_truncated_headers(tmp_path):
    good = written(tmp_path, "good.safetensors", ldm_unet())
    data = good.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) - 100])
    assert "corrupt or truncated safetensors file" in refusal(truncated)
    cut_header = tmp_path / "cut-header.ckpt-but-safetensors"
    cut_header.write_bytes(data[:40])
    assert "corrupt or truncated safetensors file" in refusal(cut_header)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(len(b"{not json").to_bytes(8, "little") + b"{not json")
    assert "corrupt or truncated safetensors file" in refusal(garbage)


def test_a_shard_index_naming_a_missing_shard(tmp_path):
    folder = diffusers_unet(tmp_path / "unet", weights=False)
    index = {"weight_map": {"conv_in.weight": "diffusion_pytorch_model-00001-of-00002.safetensors"}}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    assert "names shard diffusion_pytorch_model-00001-of-00002.safetensors" in refusal(folder)


def test_not_a_checkpoint_at_all(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("these are not weights\n")
    assert "neither HDF5, safetensors nor a folder" in refusal(path)
    assert "no such file or folder" in refusal(tmp_path / "nope.safetensors")
    (tmp_path / "empty").mkdir()
    assert "not a diffusers folder" in refusal(tmp_path / "empty")


def tree(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.mark.parametrize("flag", ["--ckpt", "--text-encoder", "--decoder"])
def test_sd_export_refuses_before_writing(tmp_path, flag):
    """Through the CLI: one line on stderr, exit 1, and the model repository exactly as it was."""
    models = tmp_path / "models"
    (models / "decoder" / "1").mkdir(parents=True)
    (models / "models.config").write_text("model_config_list {}\n")
    before = tree(models)
    path = written(tmp_path, "sd2.safetensors", ldm_unet(context=1024))
    result = subprocess.run(
        [sys.executable, "-m", "sd_export.cli", flag, str(path), "--models-dir", str(models), "--no-text-to-image"],
        capture_output=True, text=True,
    )  # fmt: skip
    errors = [line for line in result.stderr.splitlines() if line.startswith("sd-export: error:")]
    assert result.returncode == 1 and len(errors) == 1, result.stderr[-2000:]
    assert str(path) in errors[0] and "SD 2.x" in errors[0]
    assert tree(models) == before
