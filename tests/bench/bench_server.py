"""Local server measurements: the request overhead of sd-model-server over REST and gRPC against the in-process
TF1-session run of the same signatures, and the server's peak memory against the parameter bytes of what it loaded,
for models.config (the three split models) and text_to_image.config, in one run.

    .venv/bin/python tests/bench/bench_server.py                      # stand-ins exported to a temp folder (~1 min)
    .venv/bin/python tests/bench/bench_server.py --models models      # a real export (`make export`)
    .venv/bin/python tests/bench/bench_server.py --models models --steps 2 --repeats 3 --configs models.config

What is timed, per signature, as a Python caller sees it (median of --repeats, the three contenders interleaved so that
load from other processes falls on all alike, after one warm-up call each):
  in-process  Session.run on the SavedModel loaded here with the TF1 loader (how TF Serving runs it);
  REST        the columnar JSON body built from numpy, POST on a kept-alive connection, the JSON answer back to numpy;
  gRPC        TensorProtos from numpy, tensorflow-serving-api's PredictionServiceStub.Predict, the answer to numpy.
Overhead = transport median - in-process median. It depends on the tensors' sizes, not on the number of denoising
steps, so a few steps suffice (the in-process time grows with them). Every server answer is checked against the
in-process one before timing.

Memory: VmHWM (peak resident set) of the server process from /proc once every model is AVAILABLE (loading and
warmup done) and again after the timed requests, against the bytes of the variables/ folders of every version the
config loads, and against a process that only imports what the server imports (TensorFlow, TF Text, gRPC, waitress).
Sizes in MB = 10^6 bytes. Linux only (/proc).
"""

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tables import print_table

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "serving")]

CONFIGS = ("models.config", "text_to_image.config")
CLIP_VOCAB = ROOT / "client/sd_client/clip/bpe_simple_vocab_16e6.txt.gz"
STANDIN_SIZE = 128
PROMPT = "a photograph of an astronaut riding a horse"
REST_TIMEOUT_MS = 3_600_000  # a real-size diffusion run on a CPU takes minutes
MB = 1e6
# The server's imports without loading anything: the fixed cost every server process pays.
_RUNTIME_PROBE = """
import sd_serving.server, sd_serving.servable
print(open("/proc/self/status").read())
"""


def main():
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-server-") as scratch:
        models_dir = args.models or export_standins(Path(scratch), args.vocab)
        runtime = runtime_peak_bytes()
        timing_tables, memory_rows = [], []
        for config_name in args.configs:
            config = models_dir / config_name
            if not config.is_file():
                print(f"skipping {config_name}: not in {models_dir}", file=sys.stderr)
                continue
            rows, memory = bench_config(config, args)
            timing_tables.append((config_name, rows))
            memory_rows.append(memory_row(config_name, memory, runtime))
    print(f"models: {args.models or f'stand-ins at {STANDIN_SIZE}x{STANDIN_SIZE}'}, batch {args.batch}, "
          f"{args.steps} steps, median of {args.repeats}\n")  # fmt: skip
    for config_name, rows in timing_tables:
        print(f"Request time, sd-model-server on {config_name}:\n")
        print_table(TIMING_HEADER, rows)
    print(f"Memory (runtime alone, imports without models: peak {runtime / MB:.0f} MB):\n")
    print_table(MEMORY_HEADER, memory_rows)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, help="a model repository with models.config (default: stand-ins)")
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), help="config files of the repository to serve")
    parser.add_argument("--steps", type=int, default=2, help="denoising steps per diffusion request (default 2)")
    parser.add_argument("--batch", type=int, default=1, help="images per request (default 1)")
    parser.add_argument("--repeats", type=int, default=5, help="timed requests per contender (default 5)")
    parser.add_argument("--start-timeout", type=float, default=1800, help="seconds to wait for loading and warmup")
    parser.add_argument("--vocab", type=Path, default=CLIP_VOCAB, help="CLIP vocabulary for the stand-ins' export")
    args = parser.parse_args()
    if args.models and not (args.models / "models.config").is_file():
        parser.error(f"{args.models}/models.config not found: export first (make export)")
    return args


def export_standins(folder, vocab):
    """One version of every model (text_to_image too) of the tiny stand-ins, by the real exporter."""
    import standins
    from sd_export.export import export_repository

    models_dir = folder / "models"
    components = standins.components(STANDIN_SIZE, STANDIN_SIZE)
    export_repository(components, models_dir, STANDIN_SIZE, STANDIN_SIZE, version=1, clip_vocab=vocab)
    return models_dir


# ---- timing


TIMING_HEADER = ["model", "signature", "in-process ms", "REST ms", "gRPC ms", "REST overhead", "gRPC overhead",
                 "REST request / response", "gRPC request / response"]  # fmt: skip


def bench_config(config, args):
    """Timing rows for every signature of the latest version of each model, and the server's memory figures."""
    from sd_serving.config import plan_models
    from server_process import running_server
    from tf1 import Tf1Model

    plans = plan_models(config)
    parameters = sum(variables_bytes(plan.version_path(v)) for plan in plans for v in plan.versions)
    in_process = {plan.name: (max(plan.versions), Tf1Model(plan.version_path(max(plan.versions)))) for plan in plans}
    try:
        started = time.monotonic()
        with running_server(config, start_timeout=args.start_timeout, rest_api_timeout_in_ms=REST_TIMEOUT_MS) as server:
            loaded_seconds = time.monotonic() - started
            after_load = peak_bytes(server.process.pid)
            rows = [
                time_signature(server, name, version, model, signature, args)
                for name, (version, model) in in_process.items()
                for signature in signatures_of(model)
            ]
            after_requests = peak_bytes(server.process.pid)
    finally:
        for _, model in in_process.values():
            model.close()
    versions = ", ".join(f"{plan.name} {'+'.join(map(str, plan.versions))}" for plan in plans)
    memory = dict(versions=versions, parameters=parameters, after_load=after_load,
                  after_requests=after_requests, loaded_seconds=loaded_seconds)  # fmt: skip
    return rows, memory


def signatures_of(model):
    return sorted(name for name in model.meta_graph.signature_def if not name.startswith("__"))


def time_signature(server, name, version, model, signature, args):
    import requests
    from server_requests import GrpcClients

    inputs = example_inputs(model, signature, args)
    expected = model.run(signature, inputs)
    url = f"{server.rest_url}/v1/models/{name}/versions/{version}:predict"
    with requests.Session() as http, contextlib.closing(GrpcClients(server.grpc_target)) as grpc_clients:
        contenders = {
            "in-process": lambda: model.run(signature, inputs),
            "REST": lambda: rest_call(http, url, signature, inputs, expected),
            "gRPC": lambda: grpc_call(grpc_clients, name, version, signature, inputs),
        }
        check_same_outputs(contenders, expected)
        medians = interleaved(contenders, args.repeats)
        rest_bytes = rest_sizes(http, url, signature, inputs)
        grpc_bytes = grpc_sizes(grpc_clients, name, version, signature, inputs)
    base = medians["in-process"]
    return [
        name, signature, *(f"{medians[contender] * 1000:.1f}" for contender in ("in-process", "REST", "gRPC")),
        overhead(medians["REST"], base), overhead(medians["gRPC"], base),
        " / ".join(map(readable_size, rest_bytes)), " / ".join(map(readable_size, grpc_bytes)),
    ]  # fmt: skip


def example_inputs(model, signature, args):
    """Inputs of the signature's shapes at --batch, with realistic values (random floats: their JSON is as long as
    real ones; zeros would make REST look cheap)."""
    rng = np.random.default_rng(0)
    inputs = {}
    for name, info in model.signature(signature).inputs.items():
        shape = [args.batch if size == -1 else size for size in (d.size for d in info.tensor_shape.dim)]
        inputs[name] = example_value(name, shape, rng, args.steps)
    return inputs


def example_value(name, shape, rng, steps):
    from sd_export import contract

    if name == "num_steps":
        return np.int32(steps)
    if name == "guidance_scale":
        return np.float32(7.5)
    if name == "seed":
        return np.arange(shape[0], dtype=np.int32) + 42
    if name == "sampler":
        return np.array(contract.DEFAULT_SAMPLER.encode(), object)
    if name.endswith("tokens"):
        return rng.integers(0, contract.VOCAB_SIZE, shape).astype(np.int32)
    if name.endswith("prompt"):
        return np.array([PROMPT.encode() if name == "prompt" else b""] * shape[0], object)
    return rng.standard_normal(shape).astype(np.float32)


def rest_call(http, url, signature, inputs, expected):
    from server_requests import columnar_body, decode_json_output, outputs_from_columnar

    response = http.post(url, data=json.dumps(columnar_body(inputs, signature)), timeout=REST_TIMEOUT_MS / 1000)
    response.raise_for_status()
    outputs = outputs_from_columnar(response.json()["outputs"], sorted(expected))
    return {name: decode_json_output(name, value, expected[name]) for name, value in outputs.items()}


def grpc_call(grpc_clients, name, version, signature, inputs):
    from server_requests import outputs_from_response

    response = grpc_clients.predict(name, signature, inputs, version=version, timeout=REST_TIMEOUT_MS / 1000)
    return outputs_from_response(response)


def check_same_outputs(contenders, expected):
    """Each transport's answer equals the in-process run (also the warm-up call of each)."""
    from server_requests import assert_outputs_match

    for run in contenders.values():
        assert_outputs_match(run(), expected)


def interleaved(contenders, repeats):
    samples = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            started = time.perf_counter()
            run()
            samples[name].append(time.perf_counter() - started)
    return {name: statistics.median(times) for name, times in samples.items()}


def rest_sizes(http, url, signature, inputs):
    from server_requests import columnar_body

    body = json.dumps(columnar_body(inputs, signature)).encode()
    return len(body), len(http.post(url, data=body, timeout=REST_TIMEOUT_MS / 1000).content)


def grpc_sizes(grpc_clients, name, version, signature, inputs):
    from server_requests import predict_request

    request = predict_request(name, signature, inputs, version=version)
    response = grpc_clients.prediction.Predict(request, timeout=REST_TIMEOUT_MS / 1000)
    return request.ByteSize(), response.ByteSize()


def overhead(seconds, base):
    return f"{(seconds - base) * 1000:+.1f} ms ({seconds / base:.2f}x)"


def readable_size(size):
    if size < 1e3:
        return f"{size} B"
    return f"{size / 1e3:.0f} kB" if size < MB else f"{size / MB:.1f} MB"


# ---- memory


MEMORY_HEADER = ["config", "versions loaded", "parameters", "server peak after load", "after requests",
                 "peak - runtime", "(peak - runtime) / parameters", "load + warmup"]  # fmt: skip


def variables_bytes(version_dir):
    """The SavedModel's parameter bytes: its variables/ checkpoint (data shards and index)."""
    return sum(path.stat().st_size for path in (Path(version_dir) / "variables").iterdir() if path.is_file())


def status_bytes(status_text, field):
    """A `VmHWM:    1234 kB` line of /proc/<pid>/status in bytes."""
    for line in status_text.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise ValueError(f"{field} not in /proc status")


def peak_bytes(pid):
    return status_bytes(Path(f"/proc/{pid}/status").read_text(), "VmHWM")


def runtime_peak_bytes():
    probe = subprocess.run([sys.executable, "-c", _RUNTIME_PROBE], capture_output=True, text=True, check=True)
    return status_bytes(probe.stdout, "VmHWM")


def memory_row(config_name, memory, runtime):
    above_runtime = memory["after_requests"] - runtime
    return [config_name, memory["versions"], f"{memory['parameters'] / MB:.1f} MB",
            f"{memory['after_load'] / MB:.0f} MB", f"{memory['after_requests'] / MB:.0f} MB",
            f"{above_runtime / MB:.0f} MB", f"{above_runtime / memory['parameters']:.2f}",
            f"{memory['loaded_seconds']:.1f} s"]  # fmt: skip


if __name__ == "__main__":
    main()
