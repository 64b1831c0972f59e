"""oneDNN's weight cache (TF_ONEDNN_ASSUME_FROZEN_WEIGHTS): the user's setting, or the server's default for what it serves.

The variable is read by TensorFlow itself. 1 lets oneDNN keep each convolution's and matmul's weights in the layout it
computes with instead of reordering them on every call: safe for served weights, which never change. On this
project's CPU it makes a diffusion step about twice as fast, but the cached copies cost memory. Measured at 128² with
every diffusion_model signature warmed: a float32 version's server at 16 GB with the cache (6.5 GB without), a
bfloat16 version's at 9.5 GB (4.3 GB without; README, Precision). So when the variable is unset the server turns the
cache on only where it fits a 16 GB machine: every served version is a half-precision export and their variables add
up to at most one version of the three models. TensorFlow aborts the process at the first convolution on any value
but 0, 1, false or true (any case), so the server refuses others up front.
"""

import json
from pathlib import Path

VARIABLE = "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS"
_TENSORFLOW_BOOLEANS = ("0", "1", "false", "true")
HALF_PRECISIONS = ("bfloat16", "float16")
# One half-precision version of text_encoder + diffusion_model + decoder stores 2.06 GB of variables; two do not fit.
MAX_CACHED_VARIABLE_BYTES = 2.5e9
PROVENANCE_FILE = ("assets.extra", "sd_export.json")  # written by sd-export beside every version's SavedModel


def check_setting(environ):
    """ValueError for a value of the variable TensorFlow would abort on; nothing for a valid or unset one."""
    value = environ.get(VARIABLE)
    if value is not None and value.lower() not in _TENSORFLOW_BOOLEANS:
        raise ValueError(f"{VARIABLE}={value!r}: expected 0, 1, false or true")


def weight_caching(version_paths, environ):
    """(the value to set, or None to leave the environment alone; the start-up log line) for the served versions.
    The user's setting, checked with check_setting() first, always wins."""
    value = environ.get(VARIABLE)
    if value is not None:
        behaviour = "caches weights" if value.lower() in ("1", "true") else "reorders weights on every call"
        return None, f"{VARIABLE}={value}: oneDNN {behaviour}"
    fits, why = cache_fits(version_paths)
    if fits:
        return "1", f"{VARIABLE} unset: {why}, so oneDNN caches weights (=0 turns it off; README, CPU speed)"
    return None, f"{VARIABLE} unset: {why}, so oneDNN reorders weights on every call (=1 caches them; README, CPU speed)"


def cache_fits(version_paths):
    """Whether the server's default turns the cache on for these version folders, and why (for the log)."""
    version_paths = [Path(path) for path in version_paths]
    full_width = [path for path in version_paths if exported_precision(path) not in HALF_PRECISIONS]
    if full_width:
        return False, f"{full_width[0]} is not a half-precision export"
    total = sum(variables_bytes(path) for path in version_paths)
    if total > MAX_CACHED_VARIABLE_BYTES:
        return False, f"the served half-precision variables total {total / 1e9:.2f} GB, more than one version's"
    return True, f"every served version is a half-precision export ({total / 1e9:.2f} GB of variables)"


def exported_precision(version_path):
    """The precision sd-export recorded for a version, or None when it recorded none (another exporter, or older)."""
    try:
        record = json.loads(Path(version_path).joinpath(*PROVENANCE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record.get("precision") if isinstance(record, dict) else None


def variables_bytes(version_path):
    folder = Path(version_path) / "variables"
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file()) if folder.is_dir() else 0
