"""Formats are told apart by content, not by name; what a checkpoint holds decides what it can stand for; the
sha256 recorded as provenance is the file's, or for a folder the one `sha256sum` defines (checked with coreutils)."""

import hashlib
import json
import subprocess

import h5py
import numpy as np
import pytest
from safetensors.numpy import save_file
from sd_export.checkpoints import WeightsError, open_checkpoint
from sd_export.weights import WeightSources

VAE_PROBE = {"decoder.mid.attn_1.norm.weight": np.zeros(512, np.float32)}
UNET_PROBE = {"conv_in.weight": np.zeros((320, 4, 3, 3), np.float32)}


def test_the_content_decides_not_the_name(tmp_path):
    safetensors_named_ckpt = tmp_path / "model.ckpt"
    save_file(VAE_PROBE, str(safetensors_named_ckpt))
    assert open_checkpoint(safetensors_named_ckpt, "decoder").format_name == "ldm_safetensors"
    hdf5_named_safetensors = tmp_path / "unet.safetensors"
    with h5py.File(hdf5_named_safetensors, "w") as handle:
        handle.attrs["layer_names"] = []
    checkpoint = open_checkpoint(hdf5_named_safetensors, "diffusion_model")
    assert checkpoint.format_name == "keras_h5" and checkpoint.parts() == ("diffusion_model",)


def test_a_part_the_checkpoint_does_not_hold(tmp_path):
    vae = tmp_path / "vae.safetensors"
    save_file(VAE_PROBE, str(vae))
    with pytest.raises(WeightsError, match=r"vae.safetensors: holds no U-Net \(it holds: VAE decoder, VAE encoder\)"):
        WeightSources(str(vae)).check_files()
    checkpoints = WeightSources(decoder=str(vae)).check_files()  # a replacement VAE replaces both halves
    assert set(checkpoints) == {"decoder", "image_encoder"}


def test_a_whole_checkpoint_fills_the_parts_not_named(tmp_path):
    whole = tmp_path / "whole.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": np.zeros((320, 4, 3, 3), np.float32),
               "cond_stage_model.transformer.text_model.final_layer_norm.weight": np.zeros(768, np.float32),
               **{f"first_stage_model.{key}": value for key, value in VAE_PROBE.items()}}, str(whole))  # fmt: skip
    vae = tmp_path / "vae.safetensors"
    save_file(VAE_PROBE, str(vae))
    sources = WeightSources(str(whole), decoder=str(vae))
    checkpoints = sources.check_files()
    assert {part: checkpoint.path for part, checkpoint in checkpoints.items()} == {
        "diffusion_model": str(whole), "text_encoder": str(whole), "decoder": str(vae), "image_encoder": str(vae)}
    source = sources.source()
    assert source["format"] == "ldm_safetensors"
    assert source["sha256"] == hashlib.sha256(whole.read_bytes()).hexdigest()
    assert source["decoder_sha256"] == hashlib.sha256(vae.read_bytes()).hexdigest()
    assert "text_encoder_sha256" not in source


def test_a_folders_sha256_is_sha256sum_of_its_files(tmp_path):
    pipeline = tmp_path / "pipeline"
    (pipeline / "unet").mkdir(parents=True)
    (pipeline / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    save_file(UNET_PROBE, str(pipeline / "unet" / "diffusion_pytorch_model.safetensors"))
    (pipeline / "model_index.json").write_text("{}")
    (pipeline / "README.md").write_text("not read, not hashed")
    files = ["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors"]
    listing = subprocess.run(["sha256sum", *sorted(files)], cwd=pipeline, capture_output=True, check=True).stdout
    checkpoint = open_checkpoint(pipeline, "diffusion_model")
    assert checkpoint.sha256() == hashlib.sha256(listing).hexdigest()
    (pipeline / "README.md").write_text("changed")
    assert open_checkpoint(pipeline, "diffusion_model").sha256() == hashlib.sha256(listing).hexdigest()
    (pipeline / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel", "x": 1}))
    assert open_checkpoint(pipeline, "diffusion_model").sha256() != hashlib.sha256(listing).hexdigest()


def test_an_fp16_variant_folder_and_transformers_names(tmp_path):
    folder = tmp_path / "text_encoder"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["CLIPTextModel"]}))
    save_file({"text_model.final_layer_norm.weight": np.ones(768, np.float16),
               "text_model.embeddings.position_ids": np.arange(77)[None]}, str(folder / "model.fp16.safetensors"))  # fmt: skip
    checkpoint = open_checkpoint(folder, "text_encoder")
    assert checkpoint.parts() == ("text_encoder",) and checkpoint.sources["text_encoder"].prefix == "text_model."
    value = checkpoint.sources["text_encoder"].store.get("text_model.final_layer_norm.weight")
    assert value.dtype == np.float32 and np.all(value == 1)


def a_part_in(format_name, part, folder):
    """The smallest checkpoint of each format that holds `part` (text_encoder or decoder)."""
    clip = {"text_model.final_layer_norm.weight": np.zeros(768, np.float32)}
    probes = {
        "ldm_safetensors": {"text_encoder": {f"cond_stage_model.transformer.{k}": v for k, v in clip.items()},
                            "decoder": VAE_PROBE},
        "diffusers_safetensors": {"text_encoder": clip,  # one file of a diffusers / transformers model, alone
                                  "decoder": {"decoder.mid_block.attentions.0.group_norm.weight": np.zeros(512)}},
    }  # fmt: skip
    if format_name == "keras_h5":
        path = folder / f"{part}.h5"
        with h5py.File(path, "w") as handle:
            handle.attrs["layer_names"] = []
        return path
    if format_name in probes:
        path = folder / f"{part}.safetensors"
        save_file(probes[format_name][part], str(path))
        return path
    model_folder = folder / {"text_encoder": "text_encoder", "decoder": "vae"}[part]
    model_folder.mkdir()
    config = {"architectures": ["CLIPTextModel"]} if part == "text_encoder" else {"_class_name": "AutoencoderKL"}
    (model_folder / "config.json").write_text(json.dumps(config))
    weights = "model.safetensors" if part == "text_encoder" else "diffusion_pytorch_model.safetensors"
    save_file(probes["diffusers_safetensors"][part], str(model_folder / weights))
    return model_folder


@pytest.mark.parametrize("format_name", ["keras_h5", "ldm_safetensors", "diffusers_safetensors", "diffusers"])
@pytest.mark.parametrize("part", ["text_encoder", "decoder"])
def test_text_encoder_and_decoder_overrides_take_every_format(tmp_path, part, format_name):
    """TEXT_ENCODER= / DECODER= replace the whole checkpoint's part, whatever the override's format; provenance names
    the override's format and sha256 beside the U-Net's."""
    whole = tmp_path / "whole.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": np.zeros((320, 4, 3, 3), np.float32),
               "cond_stage_model.transformer.final_layer_norm.weight": np.zeros(768, np.float32),
               **{f"first_stage_model.{key}": value for key, value in VAE_PROBE.items()}}, str(whole))  # fmt: skip
    override = a_part_in(format_name, part, tmp_path)
    sources = WeightSources(str(whole), **{part: str(override)})
    checkpoints = sources.check_files()
    assert checkpoints[part].path == str(override) and checkpoints[part].format_name == format_name
    other = "decoder" if part == "text_encoder" else "text_encoder"
    assert checkpoints[other].path == str(whole) and checkpoints["diffusion_model"].path == str(whole)
    source = sources.source()
    assert source[f"{part}_format"] == format_name and source[f"{part}_sha256"] == checkpoints[part].sha256()
    assert f"{other}_format" not in source


def test_a_unet_folder_alone(tmp_path):
    folder = tmp_path / "unet"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel", "cross_attention_dim": 768}))
    save_file(UNET_PROBE, str(folder / "diffusion_pytorch_model.safetensors"))
    checkpoint = open_checkpoint(folder, "diffusion_model")
    assert checkpoint.format_name == "diffusers" and checkpoint.parts() == ("diffusion_model",)
    with pytest.raises(WeightsError, match=r"unet: holds no text encoder \(it holds: U-Net\)"):
        WeightSources(text_encoder=str(folder)).check_files()
