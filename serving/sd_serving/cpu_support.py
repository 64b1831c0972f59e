"""Whether this CPU computes bfloat16 in hardware, for a warning at start-up when it does not.

TensorFlow hands bfloat16 matmuls to oneDNN only on CPUs with AVX512-BF16 or AMX-BF16. Elsewhere its kernels convert
each operand to float32 and the result back. Measured on an AVX2-only AMD EPYC (README, Precision): a bfloat16 export
there still stores half the weights, but a step is no faster than the float32 export's (0.90-0.98x at 128²), and at
512² its attention holds a float32 copy of its scores beside the bfloat16 ones. Nothing fails, so without this line a
user would only see it in the timings.
"""

from pathlib import Path

from sd_serving.weight_cache import exported_precision

BFLOAT16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo's names
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags(cpuinfo_text):
    """The feature flags of the first processor listed in /proc/cpuinfo's text (x86: `flags`), as a set."""
    for line in cpuinfo_text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def emulated_bfloat16_warning(version_paths, cpuinfo_text=None):
    """A warning line when a served version is a bfloat16 export and the CPU lacks bfloat16 units, else None.
    None too where /proc/cpuinfo does not exist or lists no flags (not Linux x86): nothing is known there."""
    if cpuinfo_text is None:
        try:
            cpuinfo_text = CPUINFO.read_text()
        except OSError:
            return None
    flags = cpu_flags(cpuinfo_text)
    if not flags or flags.intersection(BFLOAT16_FLAGS):
        return None
    bfloat16 = [str(path) for path in version_paths if exported_precision(path) == "bfloat16"]
    if not bfloat16:
        return None
    return (
        f"{bfloat16[0]} is a bfloat16 export{f' (and {len(bfloat16) - 1} more)' if len(bfloat16) > 1 else ''}, and "
        f"this CPU has neither AVX512-BF16 nor AMX-BF16: TensorFlow converts bfloat16 to float32 and back here, so "
        f"it halves the weights but is no faster than a float32 export (README, Precision: which precision to pick)"
    )
