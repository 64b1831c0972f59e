"""diffusers' schedulers on the stand-in noise prediction (analytic.standin_unet, written again here in torch).

Run in its own process (torch is never imported by the test process): python diffusers_reference.py IN.npz OUT.npz.
IN holds the unit start noise, both contexts, the guidance scale, and for every case "<sampler>/<steps>" the noise of
each ancestral step; OUT holds, for every case, the latent after every step [steps, B, h, w, 4].
"""

import math
import sys
from unittest import mock

import numpy as np
import torch
from diffusers import DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler
from diffusers.schedulers import scheduling_euler_ancestral_discrete

# CompVis/stable-diffusion-v1-4's scheduler/scheduler_config.json (a PNDMScheduler's): no timestep_spacing, so each
# scheduler below keeps its own default ("linspace"); steps_offset=1 only applies to "leading".
SD14_SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}

SCHEDULERS = {
    "DPM++ 2M": lambda: DPMSolverMultistepScheduler.from_config(
        SD14_SCHEDULER_CONFIG, algorithm_type="dpmsolver++", solver_order=2
    ),
    "DPM++ 2M Karras": lambda: DPMSolverMultistepScheduler.from_config(
        SD14_SCHEDULER_CONFIG, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True
    ),
    "Euler": lambda: EulerDiscreteScheduler.from_config(SD14_SCHEDULER_CONFIG),
    "Euler a": lambda: EulerAncestralDiscreteScheduler.from_config(SD14_SCHEDULER_CONFIG),
}

EMBEDDING_INDEX = 100


def standin_noise(x, timestep, context):
    """analytic.standin_unet: eps = tanh(x) * (0.8 + 0.15 cos(t f)) + 0.05 x + 0.1 mean(context row)."""
    freqs = torch.exp(-math.log(10000) * torch.arange(160, dtype=torch.float32) / 160)
    args = torch.as_tensor(timestep).to(torch.float32).reshape(1) * freqs
    a = torch.cos(args)[EMBEDDING_INDEX]
    c = context.mean(dim=(1, 2))[:, None, None, None]
    return torch.tanh(x) * (0.8 + 0.15 * a) + 0.05 * x + 0.1 * c


def run(name, num_steps, noise, context, unconditional_context, guidance_scale, step_noises):
    scheduler = SCHEDULERS[name]()
    scheduler.set_timesteps(num_steps)
    latent = noise * scheduler.init_noise_sigma  # as StableDiffusionPipeline.prepare_latents
    both_contexts = torch.cat([unconditional_context, context])
    injected = iter(step_noises)
    trajectory = []
    with mock.patch.object(scheduling_euler_ancestral_discrete, "randn_tensor", lambda *a, **k: next(injected)):
        for t in scheduler.timesteps:  # as StableDiffusionPipeline.__call__'s loop
            model_input = scheduler.scale_model_input(torch.cat([latent] * 2), t)
            both = standin_noise(model_input, t, both_contexts)
            unconditional, conditional = both.chunk(2)
            guided = unconditional + guidance_scale * (conditional - unconditional)
            latent = scheduler.step(guided, t, latent).prev_sample
            trajectory.append(latent.numpy().copy())
    return np.stack(trajectory)


def main(in_path, out_path):
    data = np.load(in_path)
    tensors = {k: torch.from_numpy(data[k]) for k in ("noise", "context", "unconditional_context")}
    results = {}
    for case in data["cases"]:
        name, steps = str(case).rsplit("/", 1)
        step_noises = [torch.from_numpy(n) for n in data[f"step_noise/{case}"]]
        results[str(case)] = run(
            name, int(steps), tensors["noise"], tensors["context"], tensors["unconditional_context"],
            float(data["guidance_scale"]), step_noises,
        )
    np.savez(out_path, **results)


if __name__ == "__main__":
    main(*sys.argv[1:])
