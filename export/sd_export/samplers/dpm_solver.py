"""DPM++ 2M and DPM++ 2M Karras: the second-order multistep DPM-Solver++ (Lu et al., 2022) on the data prediction.

As diffusers' DPMSolverMultistepScheduler (algorithm_type="dpmsolver++", solver_order=2, solver_type="midpoint",
lower_order_final=True, final_sigmas_type="zero", timestep_spacing="linspace") builds it from SD 1.x's scheduler
config: timesteps round(linspace(0, 999, n + 1))[::-1][:-1]; sigmas from SD's table at those timesteps, or with
Karras spacing (rho = 7 between the table's smallest and largest sigma; the U-Net is told the timestep of each sigma,
interpolated in log sigma and rounded); then a final sigma of 0. The first and the last step are first order
(DDIM-like); the others use the previous step's data prediction too. The latent stays in the variance-preserving
scale (start noise * 1, no input scaling), as diffusers' DPM solver has it.
"""

import numpy as np
import tensorflow as tf

from sd_export import contract
from sd_export.samplers.schedule import LOG_SIGMAS, SIGMAS, Sampler, Schedule, linspace, unit_scales

_RHO = 7.0


def _linspace_timesteps(num_steps):
    spaced = tf.round(linspace(float(contract.TRAIN_TIMESTEPS - 1), num_steps + 1))
    return tf.reverse(spaced, [0])[:-1]


def _karras_sigmas(num_steps):
    """Karras et al. (2022)'s spacing: (max^(1/rho) + ramp * (min^(1/rho) - max^(1/rho)))^rho, float64."""
    sigma_min, sigma_max = float(SIGMAS[0]), float(SIGMAS[-1])
    ramp = linspace(1.0, num_steps)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / _RHO), sigma_max ** (1 / _RHO)
    return tf.pow(max_inv_rho + ramp * (min_inv_rho - max_inv_rho), _RHO)


def _sigma_to_timestep(sigmas):
    """diffusers' _sigma_to_t: the fractional timestep whose log sigma is interpolated from the float32 table."""
    log_table = tf.constant(LOG_SIGMAS)  # float32, as np.log of the float32 table gives
    log_sigma = tf.math.log(tf.maximum(sigmas, 1e-10))[:, None]
    at_or_below = tf.cast(tf.cast(log_table, tf.float64)[None, :] <= log_sigma, tf.int32)
    low_index = tf.clip_by_value(tf.reduce_sum(at_or_below, axis=1) - 1, 0, contract.TRAIN_TIMESTEPS - 2)
    low, high = tf.gather(log_table, low_index), tf.gather(log_table, low_index + 1)
    weight = (tf.cast(low, tf.float64) - log_sigma[:, 0]) / tf.cast(low - high, tf.float64)
    weight = tf.clip_by_value(weight, 0.0, 1.0)
    low_index = tf.cast(low_index, tf.float64)
    return (1.0 - weight) * low_index + weight * (low_index + 1.0)


def _schedule(num_steps, karras):
    if karras:
        sigmas = _karras_sigmas(num_steps)
        timesteps = tf.round(_sigma_to_timestep(sigmas))
    else:
        timesteps = _linspace_timesteps(num_steps)
        sigmas = tf.gather(tf.constant(SIGMAS.astype(np.float64)), tf.cast(timesteps, tf.int32))
    sigmas = tf.cast(tf.concat([sigmas, tf.zeros([1], tf.float64)], axis=0), tf.float32)
    return Schedule(
        timesteps=tf.cast(timesteps, tf.float32),
        input_scales=unit_scales(num_steps),
        initial_scale=tf.constant(1.0, tf.float32),
        tables={"sigmas": sigmas},
    )


def _alpha_sigma(sigma):
    alpha = 1.0 / tf.pow(sigma**2 + 1.0, 0.5)
    return alpha, sigma * alpha


def step(schedule, index, latent, noise, previous, draw_noise):
    """One DPM++ 2M update; `previous` carries the last step's data prediction."""
    sigmas = schedule.tables["sigmas"]
    num_steps = tf.shape(sigmas)[0] - 1
    alpha_t, sigma_t = _alpha_sigma(sigmas[index + 1])
    alpha_s0, sigma_s0 = _alpha_sigma(sigmas[index])
    lambda_t = tf.math.log(alpha_t) - tf.math.log(sigma_t)
    lambda_s0 = tf.math.log(alpha_s0) - tf.math.log(sigma_s0)
    h = lambda_t - lambda_s0
    data = (latent - sigma_s0 * noise) / alpha_s0  # the data (x0) prediction
    first = (sigma_t / sigma_s0) * latent - (alpha_t * (tf.exp(-h) - 1.0)) * data

    def second_order():
        alpha_s1, sigma_s1 = _alpha_sigma(sigmas[index - 1])
        lambda_s1 = tf.math.log(alpha_s1) - tf.math.log(sigma_s1)
        r0 = (lambda_s0 - lambda_s1) / h
        d1 = (1.0 / r0) * (data - previous)
        return first - 0.5 * (alpha_t * (tf.exp(-h) - 1.0)) * d1

    use_first_order = (index == 0) | (index == num_steps - 1)
    latent = tf.cond(use_first_order, lambda: first, second_order)
    return latent, data


# At 1000 steps, linspace(0, 999, 1001) rounds two timesteps to the same one: h = 0 and the update divides by it (NaN,
# in diffusers too), hence contract.SAMPLER_MAX_STEPS. Karras spacing has distinct sigmas at any count.
DPM_2M = Sampler("DPM++ 2M", lambda num_steps: _schedule(num_steps, karras=False), step)
DPM_2M_KARRAS = Sampler("DPM++ 2M Karras", lambda num_steps: _schedule(num_steps, karras=True), step)
