"""Where a served version's memory goes: resident memory after each stage of loading and first use, as the local
server loads and runs models (sd_serving.servable.LoadedVersion: the TF1 session loader).

    TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=0 .venv/bin/python tests/bench/memory_stages.py /tmp/real128bf16/models

Prints RSS, its peak (VmHWM) and the anonymous / file-backed parts after: the imports, each model's load (and again
after malloc_trim, which returns freed heap to the system), the first run of diffusion_model's serving_default (DDIM)
and of with_sampler (Euler a). The difference between a model's load and its variables/ size is the graph and the
session; the first runs add the executors and their activations.
"""

import ctypes
import sys
from pathlib import Path

import numpy as np

MB = 1024  # /proc/self/status counts kB


def report(stage):
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) // MB
    print(f"{stage:34s} RSS {fields['VmRSS']:6d} MB, peak {fields['VmHWM']:6d} MB "
          f"(anonymous {fields['RssAnon']}, file-backed {fields['RssFile']})", flush=True)  # fmt: skip


def trimmed(stage):
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    report(f"  {stage}, after malloc_trim")


def main(models_dir, version=1):
    report("start")
    from sd_serving.servable import LoadedVersion
    from sd_serving.weight_cache import variables_bytes

    report("imports")
    loaded = {}
    for name in ("text_encoder", "diffusion_model", "decoder"):
        path = Path(models_dir) / name / str(version)
        variables = variables_bytes(path) // 2**20
        loaded[name] = LoadedVersion(name, version, path)
        report(f"loaded {name} ({variables} MB variables)")
        trimmed(name)
    context = np.zeros((1, 77, 768), np.float32)
    inputs = {"context": context, "unconditional_context": context, "num_steps": np.int32(2),
              "guidance_scale": np.float32(7.5), "seed": np.zeros([1], np.int32)}  # fmt: skip
    loaded["diffusion_model"].run("serving_default", inputs)
    report("ran serving_default (DDIM)")
    trimmed("serving_default")
    loaded["diffusion_model"].run("with_sampler", {**inputs, "sampler": np.array(b"Euler a", object)})
    report("ran with_sampler (Euler a)")


if __name__ == "__main__":
    main(sys.argv[1])
