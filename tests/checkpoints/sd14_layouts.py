"""SD 1.4's architecture as diffusers and transformers configure it, and diffusers' names -> CompVis/LDM names.

Test code, written apart from sd_export's name modules (regular expressions over diffusers' names, not a walk over
KerasCV's layers) so that the two are independent; the oracle checks this renaming against diffusers' own LDM
converters (diffusers.loaders.single_file_utils), code nobody here wrote. No torch here: the torch side imports it.
"""

import re

# CompVis/stable-diffusion-v1-4's unet/, vae/ and text_encoder/ config.json (the architecture fields).
UNET_CONFIG = {
    "act_fn": "silu",
    "attention_head_dim": 8,
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "out_channels": 4,
    "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
VAE_CONFIG = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "out_channels": 3,
    "sample_size": 512,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
}
CLIP_CONFIG = {
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "layer_norm_eps": 1e-05,
    "projection_dim": 768,
}

UNET_PREFIX = "model.diffusion_model."
CLIP_PREFIX = "cond_stage_model.transformer.text_model."
VAE_PREFIX = "first_stage_model."

_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def unet_ldm_name(name):
    fixed = {
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "conv_in": "input_blocks.0.0",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    module, _, parameter = name.rpartition(".")
    if module in fixed:
        return f"{fixed[module]}.{parameter}"
    if match := re.fullmatch(r"down_blocks\.(\d)\.resnets\.(\d)\.(\w+)\.(\w+)", name):
        block, layer, part, parameter = match.groups()
        return f"input_blocks.{3 * int(block) + int(layer) + 1}.0.{_UNET_RESNET[part]}.{parameter}"
    if match := re.fullmatch(r"down_blocks\.(\d)\.attentions\.(\d)\.(.+)", name):
        block, layer, rest = match.groups()
        return f"input_blocks.{3 * int(block) + int(layer) + 1}.1.{rest}"
    if match := re.fullmatch(r"down_blocks\.(\d)\.downsamplers\.0\.conv\.(\w+)", name):
        block, parameter = match.groups()
        return f"input_blocks.{3 * int(block) + 3}.0.op.{parameter}"
    if match := re.fullmatch(r"mid_block\.resnets\.(\d)\.(\w+)\.(\w+)", name):
        layer, part, parameter = match.groups()
        return f"middle_block.{2 * int(layer)}.{_UNET_RESNET[part]}.{parameter}"
    if match := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", name):
        return f"middle_block.1.{match.group(1)}"
    if match := re.fullmatch(r"up_blocks\.(\d)\.resnets\.(\d)\.(\w+)\.(\w+)", name):
        block, layer, part, parameter = match.groups()
        return f"output_blocks.{3 * int(block) + int(layer)}.0.{_UNET_RESNET[part]}.{parameter}"
    if match := re.fullmatch(r"up_blocks\.(\d)\.attentions\.(\d)\.(.+)", name):
        block, layer, rest = match.groups()
        return f"output_blocks.{3 * int(block) + int(layer)}.1.{rest}"
    if match := re.fullmatch(r"up_blocks\.(\d)\.upsamplers\.0\.conv\.(\w+)", name):
        block, parameter = match.groups()
        position = 1 if block == "0" else 2  # the lowest level has no attention before its upsampler
        return f"output_blocks.{3 * int(block) + 2}.{position}.conv.{parameter}"
    raise KeyError(name)


def vae_ldm_name(name):
    """diffusers' AutoencoderKL name -> LDM's, and whether the tensor turns from a linear into a 1x1 conv."""
    name = name.replace("conv_shortcut", "nin_shortcut").replace("conv_norm_out", "norm_out")
    if match := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(\w+)", name):
        half, module, parameter = match.groups()
        return f"{half}.mid.attn_1.{_VAE_ATTENTION[module]}.{parameter}", module != "group_norm" and parameter == "weight"
    if match := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.+)", name):
        half, layer, rest = match.groups()
        return f"{half}.mid.block_{int(layer) + 1}.{rest}", False
    if match := re.fullmatch(r"encoder\.down_blocks\.(\d)\.resnets\.(\d)\.(.+)", name):
        return "encoder.down.{}.block.{}.{}".format(*match.groups()), False
    if match := re.fullmatch(r"encoder\.down_blocks\.(\d)\.downsamplers\.0\.conv\.(.+)", name):
        return "encoder.down.{}.downsample.conv.{}".format(*match.groups()), False
    if match := re.fullmatch(r"decoder\.up_blocks\.(\d)\.resnets\.(\d)\.(.+)", name):
        block, layer, rest = match.groups()
        return f"decoder.up.{3 - int(block)}.block.{layer}.{rest}", False  # LDM counts from the highest resolution
    if match := re.fullmatch(r"decoder\.up_blocks\.(\d)\.upsamplers\.0\.conv\.(.+)", name):
        block, rest = match.groups()
        return f"decoder.up.{3 - int(block)}.upsample.conv.{rest}", False
    return name, False


def ldm_state(unet, vae, clip):
    """{LDM name: array} from diffusers/transformers state dicts (numpy or torch arrays; shapes are all that is
    changed: linear attention projections of the VAE become 1x1 convs, as LDM stores them)."""
    state = {UNET_PREFIX + unet_ldm_name(name): value for name, value in unet.items()}
    for name, value in vae.items():
        ldm_name, to_conv = vae_ldm_name(name)
        state[VAE_PREFIX + ldm_name] = value.reshape(tuple(value.shape) + (1, 1)) if to_conv else value
    for name, value in clip.items():
        state[CLIP_PREFIX + name.removeprefix("text_model.")] = value
    return state
