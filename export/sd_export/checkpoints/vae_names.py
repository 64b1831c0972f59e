"""KerasCV's Decoder and ImageEncoder <- the SD 1.x VAE (AutoencoderKL), named as diffusers or CompVis/LDM name it.

Names are relative to the VAE (diffusers' `vae/` folder, LDM's `first_stage_model.`). LDM numbers the decoder's
up-blocks from the highest resolution, diffusers from the lowest: KerasCV runs them lowest first.
"""

from sd_export.checkpoints.assign import conv, norm, of_type
from sd_export.checkpoints.unet_names import LDM

LEVELS = 4
DECODER_LAYERS = 3
ENCODER_LAYERS = 2


def decoder_plan(model, layout):
    """Assignments for every variable of KerasCV's Decoder (post_quant_conv and the VAE's decoder)."""
    ldm = layout == LDM
    convs = of_type(model, "PaddedConv2D", 2 + LEVELS - 1 + 1)
    resnets = iter(of_type(model, "ResnetBlock", 2 + LEVELS * DECODER_LAYERS))
    (attention_block,) = of_type(model, "AttentionBlock", 1)
    (group_norm,) = of_type(model, "GroupNormalization", 1)

    assignments = conv(convs[0], "post_quant_conv") + conv(convs[1], "decoder.conv_in")
    assignments += middle(next(resnets), attention_block, next(resnets), "decoder", ldm)
    upsamplers = iter(convs[2:-1])
    for level in range(LEVELS):
        for layer in range(DECODER_LAYERS):
            key = f"decoder.up.{LEVELS - 1 - level}.block.{layer}" if ldm else f"decoder.up_blocks.{level}.resnets.{layer}"
            assignments += resnet(next(resnets), key, ldm)
        if level < LEVELS - 1:
            key = f"decoder.up.{LEVELS - 1 - level}.upsample.conv" if ldm else f"decoder.up_blocks.{level}.upsamplers.0.conv"
            assignments += conv(next(upsamplers), key)
    assignments += norm(group_norm, "decoder.norm_out" if ldm else "decoder.conv_norm_out")
    assignments += conv(convs[-1], "decoder.conv_out")
    return assignments


def encoder_plan(model, layout):
    """Assignments for every variable of KerasCV's ImageEncoder (the VAE's encoder and quant_conv)."""
    ldm = layout == LDM
    convs = of_type(model, "PaddedConv2D", 1 + LEVELS - 1 + 2)
    resnets = iter(of_type(model, "ResnetBlock", LEVELS * ENCODER_LAYERS + 2))
    (attention_block,) = of_type(model, "AttentionBlock", 1)
    (group_norm,) = of_type(model, "GroupNormalization", 1)

    assignments = conv(convs[0], "encoder.conv_in")
    downsamplers = iter(convs[1:-2])
    for level in range(LEVELS):
        for layer in range(ENCODER_LAYERS):
            key = f"encoder.down.{level}.block.{layer}" if ldm else f"encoder.down_blocks.{level}.resnets.{layer}"
            assignments += resnet(next(resnets), key, ldm)
        if level < LEVELS - 1:
            key = f"encoder.down.{level}.downsample.conv" if ldm else f"encoder.down_blocks.{level}.downsamplers.0.conv"
            assignments += conv(next(downsamplers), key)
    assignments += middle(next(resnets), attention_block, next(resnets), "encoder", ldm)
    assignments += norm(group_norm, "encoder.norm_out" if ldm else "encoder.conv_norm_out")
    assignments += conv(convs[-2], "encoder.conv_out") + conv(convs[-1], "quant_conv")
    return assignments


def middle(first, attention_block, second, key, ldm):
    if ldm:
        return (
            resnet(first, f"{key}.mid.block_1", ldm)
            + attention(attention_block, f"{key}.mid.attn_1", ("norm", "q", "k", "v", "proj_out"))
            + resnet(second, f"{key}.mid.block_2", ldm)
        )
    return (
        resnet(first, f"{key}.mid_block.resnets.0", ldm)
        + attention(attention_block, f"{key}.mid_block.attentions.0", ("group_norm", "to_q", "to_k", "to_v", "to_out.0"))
        + resnet(second, f"{key}.mid_block.resnets.1", ldm)
    )


def attention(block, key, names):
    """KerasCV's AttentionBlock: 1x1 convs, which LDM stores as convs and diffusers as linears (CONV takes both)."""
    norm_name, q, k, v, out = names
    return (
        norm(block.norm, f"{key}.{norm_name}")
        + conv(block.q, f"{key}.{q}")
        + conv(block.k, f"{key}.{k}")
        + conv(block.v, f"{key}.{v}")
        + conv(block.proj_out, f"{key}.{out}")
    )


def resnet(block, key, ldm):
    assignments = (
        norm(block.norm1, f"{key}.norm1")
        + conv(block.conv1, f"{key}.conv1")
        + norm(block.norm2, f"{key}.norm2")
        + conv(block.conv2, f"{key}.conv2")
    )
    if type(block.residual_projection).__name__ == "PaddedConv2D":
        assignments += conv(block.residual_projection, f"{key}.{'nin_shortcut' if ldm else 'conv_shortcut'}")
    return assignments
