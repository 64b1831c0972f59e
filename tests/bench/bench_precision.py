"""Benchmark: half precision against float32, ours against KerasCV, per step and per image, in one interleaved run.

Contenders (same random weights on the real architectures, same prompt, seed, resolution and steps, batch 1):
  KerasCV float32                 text_to_image, jit_compile=False, TensorFlow's defaults
  KerasCV mixed_bfloat16          the same under keras.mixed_precision.set_global_policy("mixed_bfloat16")
  KerasCV mixed_bfloat16, cache   the same with TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1 (the server's CPU setting)
  ours float32 / bfloat16         sd_client over gRPC to sd-model-server serving `sd-export --precision ...`, as the
                                  server runs by default (float32: no weight cache; one bfloat16 version: the cache),
                                  and bfloat16 without the cache (=0)
Each contender-round runs in a fresh process (one heavy process at a time, under the machine's lock
/tmp/sd-heavy.lock, taken per contender-round): build or load, one untimed warm-up generation, then the timed step
counts; rounds interleave the contenders. Per step is the slope between the two step counts. Peak memory is the
VmHWM of the process that holds the weights (the server for ours). The server runs without its warmup records here, so
that its peak can be read twice: after the timed generations (DDIM) and again after one generation with another sampler
(the client sends both to with_sampler, so a rise here would be a second cached copy of the weights). After the
rounds, both exports are loaded and run through the client's chain once more by TF Serving's own loader without Python
(tf_serving_loader_memory.py), weight cache off, for the peak the model server itself would reach.

    .venv/bin/python tests/bench/bench_precision.py [--size 128] [--steps 2 6] [--rounds 2] [--only NAME ...]
"""

import argparse
import contextlib
import fcntl
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS / "bench"))

CLIP_VOCAB = TESTS.parents[1] / "shared/clip/bpe_simple_vocab_16e6.txt.gz"
PROMPT = "a photograph of an astronaut riding a horse"
LOCK = "/tmp/sd-heavy.lock"
CACHE = "TF_ONEDNN_ASSUME_FROZEN_WEIGHTS"
GB = 1e9

# name -> (kind, precision or policy, environment)
CONTENDERS = {
    "KerasCV float32 (defaults)": ("keras_cv", "float32", {}),
    "KerasCV mixed_bfloat16": ("keras_cv", "mixed_bfloat16", {}),
    "KerasCV mixed_bfloat16, weight cache": ("keras_cv", "mixed_bfloat16", {CACHE: "1"}),
    "ours float32, server (default: no cache)": ("server", "float32", {CACHE: None}),
    "ours bfloat16, server, no cache": ("server", "bfloat16", {CACHE: "0"}),
    "ours bfloat16, server (default: cache)": ("server", "bfloat16", {CACHE: None}),
}


@contextlib.contextmanager
def heavy_lock():
    with open(LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def peak_bytes(pid="self"):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise ValueError("no VmHWM")


def timed(generate, step_counts):
    generate(min(step_counts))  # warm-up: tracing, first-touch allocation, the weight cache's first reorder
    seconds = {}
    for steps in step_counts:
        started = time.perf_counter()
        generate(steps)
        seconds[steps] = time.perf_counter() - started
    return seconds


def run_keras_cv(policy, args):
    import keras
    from keras_cv.models import StableDiffusion
    from keras_cv.models.stable_diffusion import Decoder, DiffusionModel, SimpleTokenizer, TextEncoder

    keras.mixed_precision.set_global_policy(policy)
    weights = json.loads(Path(args.weights).read_text())
    model = StableDiffusion(args.size, args.size, jit_compile=False)
    model._text_encoder = TextEncoder(77, download_weights=False)
    model._diffusion_model = DiffusionModel(args.size, args.size, 77, download_weights=False)
    model._decoder = Decoder(args.size, args.size, download_weights=False)
    model._tokenizer = SimpleTokenizer(bpe_path=str(CLIP_VOCAB))
    for component in ("text_encoder", "diffusion_model", "decoder"):
        getattr(model, f"_{component}").load_weights(weights[component])
    seconds = timed(lambda steps: model.text_to_image(PROMPT, num_steps=steps, seed=0), args.steps)
    return seconds, [peak_bytes()]


def run_server(precision, args):
    from server_process import running_server

    from sd_client import Client

    config = Path(args.models[precision]) / "models.config"
    with running_server(config, start_timeout=1800, rest_api_timeout_in_ms=0, enable_model_warmup=False) as server:
        with Client(f"grpc://{server.grpc_target}", vocab_path=CLIP_VOCAB, timeout=3600) as client:
            seconds = timed(lambda steps: client.generate(PROMPT, num_steps=steps, seed=0), args.steps)
            one_signature = peak_bytes(server.process.pid)
            client.generate(PROMPT, num_steps=min(args.steps), seed=0, sampler="DPM++ 2M Karras")
        return seconds, [one_signature, peak_bytes(server.process.pid)]


def contender_round(name, args, scratch):
    """One contender in a fresh process: {steps: seconds}, peak bytes."""
    _, _, environment = CONTENDERS[name]
    out = Path(scratch) / "round.json"
    command = [sys.executable, __file__, "--contender", name, "--size", str(args.size), "--steps", *map(str, args.steps),
               "--weights", args.weights, "--models-json", json.dumps(args.models), "--out", str(out)]  # fmt: skip
    env = {key: value for key, value in dict(os.environ, **environment).items() if value is not None}
    with heavy_lock():
        subprocess.run(command, env=env, check=True, stderr=subprocess.DEVNULL)
    result = json.loads(out.read_text())
    return {int(steps): seconds for steps, seconds in result["seconds"].items()}, result["peak"]


def prepare(args, scratch):
    """Weight files (float32 .h5, random weights) and one export per precision, each in its own process."""
    weights = Path(scratch) / "weights.json"
    script = f"""
import json, keras, h5py
from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group
from keras_cv.models.stable_diffusion import Decoder, DiffusionModel, TextEncoder
keras.utils.set_random_seed(0)
models = {{"text_encoder": TextEncoder(77, download_weights=False),
          "diffusion_model": DiffusionModel({args.size}, {args.size}, 77, download_weights=False),
          "decoder": Decoder({args.size}, {args.size}, download_weights=False)}}
paths = {{}}
for name, model in models.items():
    paths[name] = "{scratch}/" + name + ".h5"
    with h5py.File(paths[name], "w") as handle:
        save_weights_to_hdf5_group(handle, model)
open("{weights}", "w").write(json.dumps(paths))
"""
    with heavy_lock():
        subprocess.run([sys.executable, "-c", script], check=True, stderr=subprocess.DEVNULL)
    files = json.loads(weights.read_text())
    models = {}
    for precision in ("float32", "bfloat16"):
        models[precision] = str(Path(scratch) / precision)
        command = [sys.executable, "-m", "sd_export.cli", "--ckpt", files["diffusion_model"],
                   "--text-encoder", files["text_encoder"], "--decoder", files["decoder"],
                   "--height", str(args.size), "--width", str(args.size), "--precision", precision,
                   "--models-dir", models[precision], "--no-text-to-image"]  # fmt: skip
        with heavy_lock():
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
        variables = sum(p.stat().st_size for p in Path(models[precision]).glob("*/1/variables/*"))
        print(f"export {precision}: {time.perf_counter() - started:.0f} s, variables/ {variables / GB:.2f} GB", flush=True)
    return str(weights), models


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, nargs=2, default=[2, 6])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--only", nargs="*", help="contender names to run (default: all)")
    parser.add_argument("--contender", help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    parser.add_argument("--models-json", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:  # one contender-round, in its own process
        args.models = json.loads(args.models_json)
        kind, setting, _ = CONTENDERS[args.contender]
        seconds, peak = (run_keras_cv if kind == "keras_cv" else run_server)(setting, args)
        Path(args.out).write_text(json.dumps({"seconds": seconds, "peak": peak}))
        return
    names = args.only or list(CONTENDERS)
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as scratch:
        args.weights, args.models = prepare(args, scratch)
        samples = {name: [] for name in names}
        peaks = {}
        for round_number in range(args.rounds):
            for name in names:
                seconds, peak = contender_round(name, args, scratch)
                samples[name].append(seconds)
                peaks[name] = [max(pair) for pair in zip(peaks.get(name, peak), peak)]
                print(f"round {round_number + 1}: {name}: {seconds} ({gigabytes(peak)})", flush=True)
        loader_peaks = tf_serving_loader_peaks(args)
    report(args, samples, peaks)
    print("\nTF Serving's own loader (C API, no Python; tf_serving_loader_memory.py), weight cache off, peak: "
          + ", ".join(f"{precision} {peak / GB:.2f} GB" for precision, peak in loader_peaks.items())
          + f" (bfloat16 {loader_peaks['bfloat16'] / loader_peaks['float32']:.3f}x float32's)")


def tf_serving_loader_peaks(args):
    """{precision: peak bytes} of our exports loaded by TF Serving's loader and run through the client's chain (text
    encoder, with_sampler with DDIM then DPM++ 2M Karras, decoder's png)."""
    from tf_serving_loader_memory import measure_in_fresh_process

    environment = dict(os.environ, **{CACHE: "0"})
    peaks = {}
    for precision, models_dir in args.models.items():
        with heavy_lock():
            stages = measure_in_fresh_process(models_dir, min(args.steps), environment)
        peaks[precision] = stages[-1][2] * 2**20
    return peaks


def gigabytes(peaks):
    """'x GB', or 'x / y GB' for a server's peak with one and with two diffusion_model signatures warmed."""
    return " / ".join(f"{peak / GB:.1f}" for peak in peaks) + " GB"


def report(args, samples, peaks):
    from tables import print_table

    low, high = args.steps
    rows, per_step = [], {}
    for name, rounds in samples.items():
        times = {steps: statistics.median(r[steps] for r in rounds) for steps in (low, high)}
        per_step[name] = (times[high] - times[low]) / (high - low)
        rows.append((name, times, peaks[name]))
    print(f"\n{args.size}x{args.size}, batch 1, median of {args.rounds} interleaved rounds (each after a warm-up)")
    references = ("KerasCV float32 (defaults)", "KerasCV mixed_bfloat16", "ours float32, server (default: no cache)")
    reference_names = [n for n in references if n in per_step]
    header = ["contender", f"{low} steps", f"{high} steps", "per step", "peak memory (server: 1 / 2 signatures used)"]
    header += [f"per step vs {name}" for name in reference_names]
    print_table(header, [
        [name, f"{times[low]:.2f} s", f"{times[high]:.2f} s", f"{per_step[name]:.3f} s", gigabytes(peak)]
        + [f"{per_step[reference] / per_step[name]:.2f}x" for reference in reference_names]
        for name, times, peak in rows
    ])  # fmt: skip


if __name__ == "__main__":
    main()
