"""The outside oracle, run as its own process (torch never enters the pytest process):

    python torch_oracle.py shapes OUT.json   SD 1.4's tensor names and shapes in diffusers' naming (meta tensors, no
                                             memory), checked against diffusers' LDM converters both ways
    python torch_oracle.py generate DIR      KerasCV's DDIM loop in torch on DIR/diffusers with DIR/generate_inputs.npz,
                                             in diffusers' numerics and in KerasCV's (tanh GELU, GroupNorm eps 1e-5):
                                             DIR/generated.npz (uint8 images, as KerasCV makes them)
    python torch_oracle.py build DIR         random SD 1.4 U-Net, VAE and CLIP text model (norm scales and offsets
                                             randomized), saved as a diffusers pipeline folder (DIR/diffusers, the U-Net
                                             sharded with an index) and as one LDM .safetensors (DIR/sd14.safetensors),
                                             with their forward passes on fixed inputs in DIR/reference.npz

The models are diffusers' UNet2DConditionModel and AutoencoderKL and transformers' CLIPTextModel built from SD 1.4's
configs (sd14_layouts.py).
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sd14_layouts  # noqa: E402

LATENT_SIZE = 16  # the U-Net and decoder run on 16x16 latents (128x128 images): small, and all four levels work
SEED = 20260101


def models(device=None):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device(device or "cpu"):
        unet = UNet2DConditionModel(**sd14_layouts.UNET_CONFIG)
        vae = AutoencoderKL(**sd14_layouts.VAE_CONFIG)
        clip = CLIPTextModel(CLIPTextConfig(**sd14_layouts.CLIP_CONFIG))
    return unet, vae, clip


def shapes(out):
    unet, vae, clip = models("meta")
    states = {"unet": unet.state_dict(), "vae": vae.state_dict(), "text_encoder": clip.state_dict()}
    check_ldm_renaming(*states.values())
    listing = {part: {name: list(value.shape) for name, value in state.items()} for part, state in states.items()}
    Path(out).write_text(json.dumps(listing, indent=0, sort_keys=True) + "\n")


def check_ldm_renaming(unet, vae, clip):
    """Our diffusers -> LDM renaming, read back by diffusers' own LDM -> diffusers converters, gives every tensor back
    under its own name (compared by identity: meta tensors have no values)."""
    from diffusers.loaders import single_file_utils as convert

    ldm = sd14_layouts.ldm_state(unet, vae, clip)
    unet_back = convert.convert_ldm_unet_checkpoint(ldm, sd14_layouts.UNET_CONFIG)
    assert set(unet_back) == set(unet), sorted(set(unet_back) ^ set(unet))[:5]
    assert all(unet_back[name] is unet[name] for name in unet), "U-Net renaming swaps tensors"
    vae_back = convert.convert_ldm_vae_checkpoint(ldm, sd14_layouts.VAE_CONFIG)
    assert set(vae_back) == set(vae), sorted(set(vae_back) ^ set(vae))[:5]
    for name, value in vae.items():
        assert tuple(vae_back[name].shape) == tuple(value.shape), name
    clip_back = convert.convert_ldm_clip_checkpoint(ldm)
    assert {name.removeprefix("text_model.") for name in clip_back} == {name.removeprefix("text_model.") for name in clip}


def randomized(model, generator):
    """Norm scales and offsets drawn away from 1 and 0, so that a swapped or missed norm shows in the outputs."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm)):
                module.weight.copy_(1 + 0.3 * torch.randn(module.weight.shape, generator=generator))
                module.bias.copy_(0.3 * torch.randn(module.bias.shape, generator=generator))
    return model.eval()


def build(folder):
    folder = Path(folder)
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    unet, vae, clip = (randomized(model, generator) for model in models())
    check_ldm_renaming(unet.state_dict(), vae.state_dict(), clip.state_dict())
    rng = np.random.default_rng(SEED)
    latent = rng.standard_normal((1, 4, LATENT_SIZE, LATENT_SIZE)).astype(np.float32)
    image = rng.uniform(-1, 1, (1, 3, 8 * LATENT_SIZE, 8 * LATENT_SIZE)).astype(np.float32)
    context = rng.standard_normal((1, 77, 768)).astype(np.float32)
    tokens = np.concatenate([[49406], rng.integers(1, 49405, 10), [49407] * 66]).astype(np.int64)[None]
    timestep = 321
    with torch.no_grad():
        reference = {
            "latent": latent,
            "context": context,
            "tokens": tokens,
            "image": image,
            "timestep": np.array(timestep),
            "unet": unet(torch.from_numpy(latent), timestep, torch.from_numpy(context)).sample.numpy(),
            "text_encoder": clip(torch.from_numpy(tokens)).last_hidden_state.numpy(),
            "decoder": vae.decode(torch.from_numpy(latent) / 0.18215).sample.numpy(),
            "encoder_mean": vae.encode(torch.from_numpy(image)).latent_dist.mean.numpy() * 0.18215,
        }
    np.savez(folder / "reference.npz", **reference)

    pipeline = folder / "diffusers"
    unet.save_pretrained(pipeline / "unet", max_shard_size="1GB")  # sharded: an index and four files
    vae.save_pretrained(pipeline / "vae")
    clip.save_pretrained(pipeline / "text_encoder")
    (pipeline / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))

    from safetensors.torch import save_file

    state = sd14_layouts.ldm_state(unet.state_dict(), vae.state_dict(), clip.state_dict())
    state = {name: value.contiguous() for name, value in state.items()}
    save_file(state, folder / "sd14.safetensors")


def generate(folder):
    """KerasCV's generate_image loop (keras_cv 0.9: timesteps, alphas, guidance, decoding to uint8) on diffusers'
    models: only the models' numerics differ from KerasCV's run on the same inputs."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    folder = Path(folder)
    inputs = dict(np.load(folder / "generate_inputs.npz"))
    unet = UNet2DConditionModel.from_pretrained(folder / "diffusers" / "unet").eval()
    vae = AutoencoderKL.from_pretrained(folder / "diffusers" / "vae").eval()
    clip = CLIPTextModel.from_pretrained(folder / "diffusers" / "text_encoder").eval()
    images = {"diffusers": run_loop(unet, vae, clip, inputs)}
    keras_numerics(unet, vae)
    images["keras_numerics"] = run_loop(unet, vae, clip, inputs)
    np.savez(folder / "generated.npz", **images)


def keras_numerics(unet, vae):
    """KerasCV's two departures: GEGLU's GELU is the tanh approximation; every GroupNorm has eps 1e-5."""
    from diffusers.models.activations import GEGLU

    def tanh_gelu(self, gate):
        return torch.nn.functional.gelu(gate, approximate="tanh")

    GEGLU.gelu = tanh_gelu
    for model in (unet, vae):
        for module in model.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.eps = 1e-5


def run_loop(unet, vae, clip, inputs):
    with torch.no_grad():
        context = clip(torch.from_numpy(inputs["tokens"].astype(np.int64))).last_hidden_state
        unconditional = clip(torch.from_numpy(inputs["unconditional_tokens"].astype(np.int64))).last_hidden_state
        latent = torch.from_numpy(inputs["noise"]).permute(0, 3, 1, 2)
        guidance = float(inputs["guidance"])
        alphas, alphas_prev = inputs["alphas"], inputs["alphas_prev"]
        for index, timestep in reversed(list(enumerate(inputs["timesteps"].tolist()))):
            latent_prev = latent
            uncond = unet(latent, timestep, unconditional).sample
            cond = unet(latent, timestep, context).sample
            noise = uncond + guidance * (cond - uncond)
            a_t, a_prev = float(alphas[index]), float(alphas_prev[index])
            pred_x0 = (latent_prev - math.sqrt(1 - a_t) * noise) / math.sqrt(a_t)
            latent = noise * math.sqrt(1.0 - a_prev) + math.sqrt(a_prev) * pred_x0
        decoded = vae.decode(latent / 0.18215).sample.permute(0, 2, 3, 1).numpy()
    return np.clip((decoded + 1) / 2 * 255, 0, 255).astype("uint8")


if __name__ == "__main__":
    torch.set_num_threads(2)
    {"shapes": shapes, "build": build, "generate": generate}[sys.argv[1]](sys.argv[2])
