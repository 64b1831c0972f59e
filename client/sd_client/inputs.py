"""Checks on what a caller passes, made before anything is sent: each failure is a ValidationError naming the
argument."""

import math
import numbers
import re
import secrets

import numpy as np

from . import contract
from .errors import ValidationError
from .tokenizer import check_prompt

_LABEL = re.compile(r"[A-Za-z0-9_]+")  # TF Serving's label syntax


def resolve_seeds(seed, count):
    """One int32 seed per image: None draws a base at random, an int s gives s, s+1, ..., a list is taken as is."""
    if seed is None:
        return list(range(base := secrets.randbelow(contract.MAX_SEED - count + 2), base + count))
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        check_int("seed", seed, 0, contract.MAX_SEED)
        if seed + count - 1 > contract.MAX_SEED:
            raise ValidationError(
                f"seed {seed} + {count - 1} (one seed per image) passes the largest seed {contract.MAX_SEED}"
            )
        return [int(seed) + i for i in range(count)]
    if isinstance(seed, (list, tuple, np.ndarray)):
        seeds = list(seed)
        if len(seeds) != count:
            raise ValidationError(f"{len(seeds)} seeds for {count} images: give one per image, or one int")
        for s in seeds:
            check_int("seed", s, 0, contract.MAX_SEED)
        return [int(s) for s in seeds]
    raise ValidationError(f"seed must be None, an int or a list of ints, not {type(seed).__name__}")


def canonical_sampler(name):
    """The sampler's name as contract.SAMPLERS (and the PNG metadata) write it; ValidationError for another name."""
    by_lower = {sampler.lower(): sampler for sampler in contract.SAMPLERS}
    if not isinstance(name, str) or name.lower() not in by_lower:
        raise ValidationError(f"sampler {name!r} is not one of {', '.join(contract.SAMPLERS)} (case ignored)")
    return by_lower[name.lower()]


def max_steps(sampler):
    return contract.SAMPLER_MAX_STEPS.get(sampler, contract.MAX_NUM_STEPS)


def check_int(name, value, low, high):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ValidationError(f"{name} must be an integer, not {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValidationError(f"{name} {value} is out of range: it must be {bounds}")


def check_guidance(value):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        raise ValidationError(f"guidance_scale must be a finite number, not {value!r}")


def check_version(version, label):
    if version is not None and label is not None:
        raise ValidationError("give a version or a label, not both")
    if version is not None:
        check_int("version", version, 0, None)
    if label is not None and not (isinstance(label, str) and _LABEL.fullmatch(label)):
        raise ValidationError(f"label {label!r} is not a TF Serving version label (letters, digits, _)")


def prompt_list(name, value):
    values = [value] if isinstance(value, str) else list(value) if isinstance(value, (list, tuple)) else None
    if not values:
        raise ValidationError(f"{name} must be a str or a non-empty list of str, not {value!r}")
    for v in values:
        check_prompt(v)
    return values


def negative_prompt_list(negative, count):
    """One negative prompt (or None) per prompt."""
    if negative is None or isinstance(negative, str):
        negatives = [negative] * count
    elif isinstance(negative, (list, tuple)) and len(negative) == count:
        negatives = list(negative)
    else:
        raise ValidationError(f"negative_prompt must be None, a str or a list of {count} (one per prompt)")
    for n in negatives:
        if n is not None:
            check_prompt(n)
    return negatives
