"""In-graph input checks: bad requests fail with INVALID_ARGUMENT naming the input, before any heavy work runs."""

import tensorflow as tf

from sd_export import contract


def require(condition, message, *data):
    """An assert op whose InvalidArgumentError carries `message` (and the offending values)."""
    return tf.debugging.Assert(condition, [message, *data], summarize=8)


def batch_size(tensor):
    return tf.shape(tensor, out_type=tf.int32)[0]


def batch_checks(max_batch, named_tensors):
    """Every input has the same, non-empty batch of at most `max_batch` rows."""
    (first_name, first), *others = named_tensors.items()
    size = batch_size(first)
    checks = [
        require(size >= 1, f"{first_name} has an empty batch: send at least one row"),
        require(size <= max_batch, f"{first_name} has more than {max_batch} rows (the max batch of this export):", size),
    ]
    for name, tensor in others:
        checks.append(
            require(
                tf.equal(batch_size(tensor), size),
                f"{name} and {first_name} disagree on the batch size:",
                batch_size(tensor),
                size,
            )
        )
    return checks


def guidance_checks(num_steps, guidance_scale):
    return [
        require(
            (num_steps >= 1) & (num_steps <= contract.MAX_NUM_STEPS),
            f"num_steps must be in 1..{contract.MAX_NUM_STEPS}, got",
            num_steps,
        ),
        require(tf.math.is_finite(guidance_scale), "guidance_scale must be finite, got", guidance_scale),
    ]


def finite_checks(name, tensor):
    return [require(tf.reduce_all(tf.math.is_finite(tensor)), f"{name} contains NaN or infinite values")]


def token_checks(name, tokens, vocab_size):
    return [
        require(
            tf.reduce_all((tokens >= 0) & (tokens < vocab_size)),
            f"{name} holds ids outside the CLIP vocabulary [0, {vocab_size})",
        )
    ]


def seed_checks(seed):
    return [
        require(
            tf.reduce_all((seed >= 0) & (seed <= contract.MAX_SEED)),
            f"seed values must be in [0, {contract.MAX_SEED}], got",
            seed,
        )
    ]


def after(checks, *tensors):
    """The tensors, to be used only once every check has passed."""
    with tf.control_dependencies(checks):
        return [tf.identity(t) for t in tensors]
