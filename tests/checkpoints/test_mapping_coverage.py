"""The name mapping on the real architectures' shapes, no data read: KerasCV's real models (the session fixture keras_cv_architectures: no torch) and
SD 1.4's tensor names and shapes as diffusers and transformers produce them, in diffusers' naming and in LDM's.

For every part and both layouts: every KerasCV variable is set exactly once, every source tensor of the part is used
exactly once or is on the ignore list, and every shape fits (check_plan refuses otherwise).
"""

import pytest
import sd14_layouts
from checkpoint_headers import HeaderOnly
from sd_export.checkpoints import base, ldm_safetensors
from sd_export.checkpoints.unet_names import DIFFUSERS, LDM

PART_FOLDERS = {"diffusion_model": "unet", "text_encoder": "text_encoder", "decoder": "vae", "image_encoder": "vae"}
OWNED = {"diffusion_model": ("",), "text_encoder": ("",), "decoder": ("decoder.", "post_quant_conv."),
         "image_encoder": ("encoder.", "quant_conv.")}  # fmt: skip
LDM_EXTRAS = {  # what real LDM files carry besides the parts: all on the ignore list
    "cond_stage_model.transformer.text_model.embeddings.position_ids": (1, 77),
    "betas": (1000,),
    "alphas_cumprod": (1000,),
    "posterior_mean_coef2": (1000,),
    "logvar": (1000,),
    "model_ema.decay": (),
    "model_ema.num_updates": (),
    "model_ema.diffusion_modelinput_blocks00weight": (320, 4, 3, 3),
}


@pytest.fixture(scope="module")
def models(keras_cv_architectures, image_encoder):
    return {
        "diffusion_model": keras_cv_architectures.diffusion_model,
        "text_encoder": keras_cv_architectures.text_encoder,
        "decoder": keras_cv_architectures.decoder,
        "image_encoder": image_encoder,
    }


def ldm_file(sd14_shapes):
    shapes = sd14_layouts.ldm_state(sd14_shapes["unet"], sd14_shapes["vae"], sd14_shapes["text_encoder"])
    return HeaderOnly({**shapes, **LDM_EXTRAS})


def assert_covers(checkpoint, part, model):
    plan = checkpoint.plan(part, model)  # raises on a missing tensor, a wrong shape or an unused tensor of the part
    planned = [id(assignment.variable) for assignment, _ in plan]
    assert sorted(planned) == sorted(id(variable) for variable in model.weights), "a variable set twice or never"
    source = checkpoint.sources[part]
    owned = {key for key in source.store.keys() if source.owns(key) and not base.ignored(key)}
    assert {key for _, key in plan} == owned
    return plan


@pytest.mark.parametrize("part", list(PART_FOLDERS))
def test_diffusers_names_cover_every_variable(sd14_shapes, models, part):
    store = HeaderOnly(sd14_shapes[PART_FOLDERS[part]])
    checkpoint = base.Checkpoint("sd14", {part: base.PartSource(store, "", DIFFUSERS, OWNED[part])})
    plan = assert_covers(checkpoint, part, models[part])
    assert len(plan) == len(models[part].weights)


@pytest.mark.parametrize("part", list(PART_FOLDERS))
def test_ldm_names_cover_every_variable(sd14_shapes, models, part):
    checkpoint = ldm_safetensors.classify(ldm_file(sd14_shapes), "sd14.safetensors")
    assert checkpoint.parts() == base.PARTS and checkpoint.format_name == "ldm_safetensors"
    if part != "text_encoder":  # CLIP has transformers' names in both layouts
        assert checkpoint.sources[part].layout == LDM
    assert_covers(checkpoint, part, models[part])


def test_clip_names_without_text_model(sd14_shapes, models):
    """transformers >= 5 saves CLIPTextModel without `text_model.`; merged LDM files carry both forms."""
    shapes = ldm_file(sd14_shapes).shapes
    flattened = {key.replace("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer."): shape
                 for key, shape in shapes.items()}  # fmt: skip
    assert flattened != shapes
    checkpoint = ldm_safetensors.classify(HeaderOnly(flattened), "flat.safetensors")
    assert checkpoint.sources["text_encoder"].prefix == "cond_stage_model.transformer."
    assert_covers(checkpoint, "text_encoder", models["text_encoder"])


def test_every_ldm_tensor_is_used_once_or_ignored(sd14_shapes, models):
    store = ldm_file(sd14_shapes)
    checkpoint = ldm_safetensors.classify(store, "sd14.safetensors")
    used = [key for part in base.PARTS for _, key in checkpoint.plan(part, models[part])]
    assert len(used) == len(set(used))
    assert set(store.keys()) - set(used) == set(LDM_EXTRAS)


def test_a_wrong_shape_is_refused_by_name(sd14_shapes, models):
    shapes = dict(sd14_shapes["unet"])
    key = "down_blocks.1.attentions.0.transformer_blocks.0.ff.net.2.weight"
    shapes[key] = (640, 640)
    checkpoint = base.Checkpoint("tuned", {"diffusion_model": base.PartSource(HeaderOnly(shapes), "", DIFFUSERS, ("",))})
    with pytest.raises(base.WeightsError, match=f"tuned: U-Net tensor {key} has shape \\[640, 640\\]"):
        checkpoint.plan("diffusion_model", models["diffusion_model"])
