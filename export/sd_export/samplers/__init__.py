"""The samplers: one guided denoising loop, the per-step update chosen by name.

Each member (one file each) gives a schedule and an update (schedule.Sampler). The loop calls the U-Net once per step
on 2B rows (both guidance passes) outside any branch, so the graph holds one U-Net call whatever the number of
samplers; only the small per-step update is switched (tf.switch_case) when the sampler is a request input. With a
sampler fixed at trace time (the DDIM-only signatures) there is no switch at all.
"""

import tensorflow as tf

from sd_export import checks, contract
from sd_export.samplers.ddim import DDIM
from sd_export.samplers.dpm_solver import DPM_2M, DPM_2M_KARRAS
from sd_export.samplers.euler import EULER
from sd_export.samplers.euler_ancestral import EULER_ANCESTRAL
from sd_export.samplers.schedule import initial_noise, step_noise, timestep_embedding

MEMBERS = (DDIM, DPM_2M, DPM_2M_KARRAS, EULER, EULER_ANCESTRAL)
BY_NAME = {member.name: member for member in MEMBERS}
assert tuple(BY_NAME) == contract.SAMPLERS, "the contract lists the samplers in the graph's order"

__all__ = ["BY_NAME", "MEMBERS", "initial_noise", "sample", "sampler_index", "timestep_embedding"]


def sampler_index(name, num_steps):
    """The index of a sampler name (scalar string, ASCII case ignored) in contract.SAMPLERS, and the checks that fail
    with INVALID_ARGUMENT naming the `sampler` input when it is none of them, or num_steps when that sampler cannot
    take so many."""
    lowered = tf.constant([n.lower() for n in contract.SAMPLERS])
    matches = tf.equal(tf.strings.lower(name), lowered)
    index = tf.argmax(tf.cast(matches, tf.int32), output_type=tf.int32)
    max_steps = tf.gather(tf.constant([member.max_steps for member in MEMBERS]), index)
    known = checks.require(
        tf.reduce_any(matches),
        f"sampler must be one of {', '.join(contract.SAMPLERS)} (case ignored), got",
        name,
    )
    with tf.control_dependencies([known]):
        enough = checks.require(num_steps <= max_steps, "num_steps is more than sampler", name, "takes:", max_steps)
    return index, [known, enough]


def sample(unet, noise, context, unconditional_context, num_steps, guidance_scale, sampler, seed=None, trajectory=False):
    """The guided loop, a graph while-loop: unit noise [B, h, w, 4] -> latent.

    sampler: a name (fixed when traced) or an int32 index into contract.SAMPLERS (chosen per request).
    seed: int32 [B], the per-image seeds ancestral samplers draw their step noise from.
    trajectory: also return the latent after every step, [n, B, h, w, 4] (tests compare it step by step)."""
    if isinstance(sampler, str):
        members, index = [BY_NAME[sampler]], None
    else:
        members, index = list(MEMBERS), sampler
    schedules = [member.schedule(num_steps) for member in members]

    def pick(values):
        return values[0] if index is None else tf.gather(tf.stack(values), index)

    timesteps = pick([s.timesteps for s in schedules])
    input_scales = pick([s.input_scales for s in schedules])
    latent = noise * pick([s.initial_scale for s in schedules])
    batch = tf.shape(latent)[0]
    latent_shape = latent.shape
    both_contexts = tf.concat([unconditional_context, context], axis=0)

    def step(i, latent, previous, *recorded):
        model_input = latent * input_scales[i]
        inputs = {
            "latent": tf.concat([model_input, model_input], axis=0),
            "timestep_embedding": timestep_embedding(timesteps[i], 2 * batch),
            "context": both_contexts,
        }
        # float32 from here on, whatever precision the U-Net computes in.
        both = tf.cast(unet(inputs, training=False), tf.float32)
        unconditional, conditional = both[:batch], both[batch:]
        guided = unconditional + guidance_scale * (conditional - unconditional)

        def draw_noise():
            return step_noise(seed, i, latent_shape[1], latent_shape[2])

        updates = [
            lambda member=member, schedule=schedule: member.step(schedule, i, latent, guided, previous, draw_noise)
            for member, schedule in zip(members, schedules)
        ]
        latent, previous = updates[0]() if index is None else tf.switch_case(index, updates)
        latent, previous = tf.ensure_shape(latent, latent_shape), tf.ensure_shape(previous, latent_shape)
        return (i + 1, latent, previous, *(r.write(i, latent) for r in recorded))

    state = [0, latent, tf.zeros_like(latent)]
    if trajectory:
        state.append(tf.TensorArray(tf.float32, size=num_steps, element_shape=latent_shape))
    _, latent, _, *recorded = tf.while_loop(lambda i, *_: i < num_steps, step, state)
    return (latent, recorded[0].stack()) if trajectory else latent
