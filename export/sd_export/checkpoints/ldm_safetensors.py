"""One .safetensors file: a whole SD 1.x checkpoint in the CompVis/LDM layout, or one part of it on its own.

A whole checkpoint keeps the U-Net under `model.diffusion_model.`, CLIP under `cond_stage_model.transformer.` (with or
without `text_model.`) and the VAE under `first_stage_model.`. A standalone VAE (the usual replacement VAE files) has
the VAE's names with no prefix; a standalone U-Net or text encoder may be in diffusers' naming. Each part is found by
probing a name only that part has.
"""

import os
import re

from sd_export.checkpoints.base import Checkpoint, PartSource, WeightsError, ignored
from sd_export.checkpoints.tensors import SafetensorsStore
from sd_export.checkpoints.unet_names import DIFFUSERS, LDM, refuse_other_models

# (prefix, layout, a name that proves the part is there) in the order tried.
UNET_CANDIDATES = (
    ("model.diffusion_model.", LDM, "input_blocks.0.0.weight"),
    ("", LDM, "input_blocks.0.0.weight"),
    ("", DIFFUSERS, "conv_in.weight"),
)
CLIP_CANDIDATES = tuple(
    (prefix, DIFFUSERS, "final_layer_norm.weight")
    for prefix in ("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer.", "text_model.", "")
)
VAE_CANDIDATES = (
    ("first_stage_model.", LDM, "decoder.mid.attn_1.norm.weight"),
    ("", LDM, "decoder.mid.attn_1.norm.weight"),
    ("", DIFFUSERS, "decoder.mid_block.attentions.0.group_norm.weight"),
)
UNET_OWNED = ("",)
CLIP_OWNED = ("",)
DECODER_OWNED = ("decoder.", "post_quant_conv.")
ENCODER_OWNED = ("encoder.", "quant_conv.")
# Tensors of a whole LDM checkpoint that are no part's weights.
IGNORED_TOP_LEVEL = {
    # The training run's noise schedule (LatentDiffusion's registered buffers): KerasCV's sampler builds the same
    # scaled-linear schedule itself.
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
    "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
    # The training loss' per-timestep log-variance, unused at inference.
    "logvar",
}  # fmt: skip
# The EMA copy of the U-Net kept during training (with its decay and update count); the weights people sample with are
# model.diffusion_model.*, which EMA-pruned files already hold.
IGNORED_TOP_PREFIXES = ("model_ema.",)
LORA_MARKERS = ("lora_", ".lora.", "lora_down", "lora_up", "lora_a", "lora_b", ".alpha")
V_PREDICTION_CONFIG = re.compile(r"parameterization\s*:\s*[\"']?v[\"']?\s*$", re.MULTILINE)


class SafetensorsCheckpoint(Checkpoint):
    def __init__(self, path, sources, format_name):
        super().__init__(path, sources)
        self.format_name = format_name


def open_file(path):
    return classify(SafetensorsStore.of_files([path], path), path)


def classify(store, path):
    """The parts a store's names and shapes show (headers only), or a one-line refusal."""
    keys = list(store.keys())
    refuse_foreign(path, keys)
    sources = {}
    unet = probe(store, UNET_CANDIDATES)
    if unet:
        sources["diffusion_model"] = PartSource(store, unet[0], unet[1], UNET_OWNED)
        refuse_other_models(store, unet[0], unet[1], path)
        refuse_v_prediction(path, keys)
    clip = probe(store, CLIP_CANDIDATES)
    if clip:
        sources["text_encoder"] = PartSource(store, clip[0], clip[1], CLIP_OWNED)
    vae = probe(store, VAE_CANDIDATES)
    if vae:
        sources["decoder"] = PartSource(store, vae[0], vae[1], DECODER_OWNED)
        sources["image_encoder"] = PartSource(store, vae[0], vae[1], ENCODER_OWNED)
    if not sources:
        if any(marker in key.lower() for key in keys for marker in LORA_MARKERS):
            raise WeightsError(
                f"{path}: a LoRA (low-rank adapter) file, not a full model: merge it into its base SD 1.x "
                "checkpoint first (e.g. with diffusers' fuse_lora, then save_pretrained)"
            )
        raise WeightsError(
            f"{path}: a safetensors file with no SD 1.x U-Net, text encoder or VAE in it (first tensors: "
            f"{', '.join(sorted(keys)[:3]) or 'none'})"
        )
    refuse_leftovers(path, keys, sources.values())
    is_ldm = any(source.layout == LDM or source.prefix.startswith("cond_stage") for source in sources.values())
    return SafetensorsCheckpoint(path, sources, "ldm_safetensors" if is_ldm else "diffusers_safetensors")


def probe(store, candidates):
    """(prefix, layout) of the first candidate whose telling name is in the store, or None."""
    for prefix, layout, telling_name in candidates:
        if prefix + telling_name in store.keys():
            return prefix, layout
    return None


def refuse_foreign(path, keys):
    """Other model families, told by names SD 1.x never has."""
    if any(key.startswith("conditioner.") for key in keys) or "model.diffusion_model.label_emb.0.0.weight" in keys:
        raise WeightsError(f"{path}: an SDXL checkpoint (conditioner.*, label_emb); only SD 1.x can be exported")
    if any(key.startswith("cond_stage_model.model.") for key in keys):
        raise WeightsError(
            f"{path}: an SD 2.x checkpoint (OpenCLIP text encoder under cond_stage_model.model.); only SD 1.x "
            "can be exported"
        )


def refuse_v_prediction(path, keys):
    """v-prediction models (SD 2.x-v and some fine-tunes) would give wrong images with KerasCV's epsilon sampler.

    A single file says so with a `v_pred` marker tensor or, in the convention of the common SD UIs, a config file
    of the same name next to it with `parameterization: "v"`."""
    config = os.path.splitext(path)[0] + ".yaml"
    says_v = "v_pred" in keys
    if not says_v and os.path.isfile(config):
        with open(config, encoding="utf-8", errors="replace") as handle:
            says_v = bool(V_PREDICTION_CONFIG.search(handle.read()))
    if says_v:
        raise WeightsError(
            f"{path}: a v-prediction model ({'v_pred tensor' if 'v_pred' in keys else config}); KerasCV's sampler "
            "predicts noise (epsilon), so only epsilon-prediction SD 1.x checkpoints can be exported"
        )


def refuse_leftovers(path, keys, sources):
    leftovers = [
        key
        for key in keys
        if not any(source.owns(key) for source in sources)
        and key not in IGNORED_TOP_LEVEL
        and not key.startswith(IGNORED_TOP_PREFIXES)
        and not ignored(key)
    ]
    if leftovers:
        raise WeightsError(
            f"{path}: {len(leftovers)} tensors belong to no SD 1.x part ({', '.join(sorted(leftovers)[:3])}"
            f"{', ...' if len(leftovers) > 3 else ''}): not an SD 1.x checkpoint this exporter knows"
        )
