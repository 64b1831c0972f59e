"""KerasCV's DiffusionModel <- the SD 1.x U-Net, named as diffusers (UNet2DConditionModel) or CompVis/LDM name it.

The walk follows KerasCV's layers by kind, each kind in data-flow order (ResBlocks, SpatialTransformers, the padded
convs on the main path, the Upsample blocks, the two time-embedding Dense layers): Keras 3 lists the weights in
topological order, where the time-embedding layers are not adjacent, so positions would mislead.
"""

from sd_export.checkpoints.assign import conv, dense, norm, of_type

DIFFUSERS = "diffusers"
LDM = "ldm"
LEVELS = 4  # resolution levels; the last has no attention going down and none going up at level 0
DOWN_LAYERS = 2
UP_LAYERS = 3
CONTEXT_WIDTH = 768  # CLIP ViT-L/14's width: SD 2.x has 1024, SDXL 2048
LATENT_CHANNELS = 4  # inpainting U-Nets take 9 (latent, mask, masked image)


def names(layout):
    """{role: source prefix} for every block of the SD 1.x U-Net, in the given layout."""
    ldm = layout == LDM
    blocks = {
        "time_1": "time_embed.0" if ldm else "time_embedding.linear_1",
        "time_2": "time_embed.2" if ldm else "time_embedding.linear_2",
        "conv_in": "input_blocks.0.0" if ldm else "conv_in",
        "norm_out": "out.0" if ldm else "conv_norm_out",
        "conv_out": "out.2" if ldm else "conv_out",
    }
    for level in range(LEVELS):
        for layer in range(DOWN_LAYERS):
            block = 3 * level + layer + 1  # LDM numbers input blocks 1.., with a downsampler after every two
            blocks[f"down.{level}.res.{layer}"] = (
                f"input_blocks.{block}.0" if ldm else f"down_blocks.{level}.resnets.{layer}"
            )
            blocks[f"down.{level}.attn.{layer}"] = (
                f"input_blocks.{block}.1" if ldm else f"down_blocks.{level}.attentions.{layer}"
            )
        blocks[f"down.{level}.sample"] = (
            f"input_blocks.{3 * level + 3}.0.op" if ldm else f"down_blocks.{level}.downsamplers.0.conv"
        )
        for layer in range(UP_LAYERS):
            block = 3 * level + layer
            blocks[f"up.{level}.res.{layer}"] = f"output_blocks.{block}.0" if ldm else f"up_blocks.{level}.resnets.{layer}"
            blocks[f"up.{level}.attn.{layer}"] = (
                f"output_blocks.{block}.1" if ldm else f"up_blocks.{level}.attentions.{layer}"
            )
        # LDM's upsampler sits after the resnet (level 0, no attention) or after resnet and attention.
        blocks[f"up.{level}.sample"] = (
            f"output_blocks.{3 * level + 2}.{1 if level == 0 else 2}.conv" if ldm else f"up_blocks.{level}.upsamplers.0.conv"
        )
    for role, ldm_index, diffusers_name in (
        ("mid.res.0", 0, "resnets.0"),
        ("mid.attn", 1, "attentions.0"),
        ("mid.res.1", 2, "resnets.1"),
    ):
        blocks[role] = f"middle_block.{ldm_index}" if ldm else f"mid_block.{diffusers_name}"
    return blocks


def plan(model, layout):
    """Assignments for every variable of KerasCV's DiffusionModel."""
    blocks = names(layout)
    dense_layers = of_type(model, "Dense", 2)
    convs = of_type(model, "PaddedConv2D", 2 + LEVELS - 1)
    resnets = iter(of_type(model, "ResBlock", LEVELS * DOWN_LAYERS + 2 + LEVELS * UP_LAYERS))
    transformers = iter(of_type(model, "SpatialTransformer", (LEVELS - 1) * (DOWN_LAYERS + UP_LAYERS) + 1))
    upsamples = iter(of_type(model, "Upsample", LEVELS - 1))
    (group_norm,) = of_type(model, "GroupNormalization", 1)

    assignments = dense(dense_layers[0], blocks["time_1"]) + dense(dense_layers[1], blocks["time_2"])
    assignments += conv(convs[0], blocks["conv_in"])
    downsamplers = iter(convs[1:-1])
    for level in range(LEVELS):
        for layer in range(DOWN_LAYERS):
            assignments += resnet(next(resnets), blocks[f"down.{level}.res.{layer}"], layout)
            if level < LEVELS - 1:
                assignments += transformer(next(transformers), blocks[f"down.{level}.attn.{layer}"])
        if level < LEVELS - 1:
            assignments += conv(next(downsamplers), blocks[f"down.{level}.sample"])
    assignments += resnet(next(resnets), blocks["mid.res.0"], layout)
    assignments += transformer(next(transformers), blocks["mid.attn"])
    assignments += resnet(next(resnets), blocks["mid.res.1"], layout)
    for level in range(LEVELS):
        for layer in range(UP_LAYERS):
            assignments += resnet(next(resnets), blocks[f"up.{level}.res.{layer}"], layout)
            if level > 0:
                assignments += transformer(next(transformers), blocks[f"up.{level}.attn.{layer}"])
        if level < LEVELS - 1:
            assignments += conv(next(upsamples).conv, blocks[f"up.{level}.sample"])
    assignments += norm(group_norm, blocks["norm_out"])
    assignments += conv(convs[-1], blocks["conv_out"])
    return assignments


def resnet(block, key, layout):
    """KerasCV's ResBlock: entry flow (norm, swish, conv), time embedding (swish, dense), exit flow likewise."""
    ldm = layout == LDM
    assignments = (
        norm(block.entry_flow[0], f"{key}.{'in_layers.0' if ldm else 'norm1'}")
        + conv(block.entry_flow[2], f"{key}.{'in_layers.2' if ldm else 'conv1'}")
        + dense(block.embedding_flow[1], f"{key}.{'emb_layers.1' if ldm else 'time_emb_proj'}")
        + norm(block.exit_flow[0], f"{key}.{'out_layers.0' if ldm else 'norm2'}")
        + conv(block.exit_flow[2], f"{key}.{'out_layers.3' if ldm else 'conv2'}")
    )
    if type(block.residual_projection).__name__ == "PaddedConv2D":  # only where the width changes
        assignments += conv(block.residual_projection, f"{key}.{'skip_connection' if ldm else 'conv_shortcut'}")
    return assignments


def transformer(block, key):
    """KerasCV's SpatialTransformer: the same names in both layouts."""
    inner = block.transformer_block
    inner_key = f"{key}.transformer_blocks.0"
    assignments = norm(block.norm, f"{key}.norm") + conv(block.proj1, f"{key}.proj_in")
    for index, (layer_norm, attention) in enumerate(((inner.norm1, inner.attn1), (inner.norm2, inner.attn2)), 1):
        assignments += norm(layer_norm, f"{inner_key}.norm{index}")
        for projection in ("to_q", "to_k", "to_v"):
            assignments += dense(getattr(attention, projection), f"{inner_key}.attn{index}.{projection}")
        assignments += dense(attention.out_proj, f"{inner_key}.attn{index}.to_out.0")
    # GEGLU: one projection whose first half is the value and second half the gate, in torch and in KerasCV alike.
    assignments += norm(inner.norm3, f"{inner_key}.norm3")
    assignments += dense(inner.geglu.dense, f"{inner_key}.ff.net.0.proj")
    assignments += dense(inner.dense, f"{inner_key}.ff.net.2")
    assignments += conv(block.proj2, f"{key}.proj_out")
    return assignments


def refuse_other_models(store, prefix, layout, path):
    """One line for the U-Nets that are not SD 1.x text-to-image, told by the shapes in the header."""
    from sd_export.checkpoints.base import WeightsError

    blocks = names(layout)
    conv_in = prefix + blocks["conv_in"] + ".weight"
    to_k = prefix + blocks["down.0.attn.0"] + ".transformer_blocks.0.attn2.to_k.weight"
    if conv_in in store.keys() and store.shape(conv_in)[1:2] == (9,):
        raise WeightsError(
            f"{path}: an inpainting U-Net (9 input channels: latent, mask, masked image); only SD 1.x text-to-image "
            "U-Nets (4 input channels) can be exported"
        )
    if conv_in in store.keys() and store.shape(conv_in)[1:2] != (LATENT_CHANNELS,):
        raise WeightsError(f"{path}: a U-Net with {store.shape(conv_in)[1]} input channels, not SD 1.x's 4")
    if to_k in store.keys():
        width = store.shape(to_k)[-1]
        if width == 1024:
            raise WeightsError(
                f"{path}: an SD 2.x U-Net (1024-wide cross-attention for OpenCLIP); only SD 1.x (768) can be exported"
            )
        if width == 2048:
            raise WeightsError(f"{path}: an SDXL U-Net (2048-wide cross-attention); only SD 1.x can be exported")
        if width != CONTEXT_WIDTH:
            raise WeightsError(f"{path}: a U-Net with {width}-wide cross-attention, not SD 1.x's {CONTEXT_WIDTH}")
