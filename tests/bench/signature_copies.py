"""What each diffusion_model signature adds to a served version's memory, with the server's CPU defaults.

With oneDNN's weight cache (the server's default for one half-precision version) every signature a session runs keeps
its own reordered copy of the U-Net's weights. The exporter's warmup runs only with_sampler and the client sends every
seeded request there, so a version should hold one copy until some caller uses another signature. This starts
sd-model-server as `make serve-local` does (warmup records on), reads its peak memory (VmHWM) after loading, after the
client's DDIM and DPM++ 2M Karras images, then after requests to serving_default and from_noise as other callers may
send them:

    .venv/bin/sd-export --random-weights --precision bfloat16 --height 128 --width 128 --no-text-to-image \\
        --models-dir /tmp/copies/models
    flock /tmp/sd-heavy.lock .venv/bin/python tests/bench/signature_copies.py /tmp/copies/models
"""

import sys
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS / "bench"))

CLIP_VOCAB = TESTS.parents[1] / "shared/clip/bpe_simple_vocab_16e6.txt.gz"
PROMPT = "a photograph of an astronaut riding a horse"
STEPS = 2


def main(models_dir):
    from bench_precision import peak_bytes
    from server_process import running_server

    from sd_client import Client, contract

    rows = []
    with running_server(Path(models_dir) / "models.config", start_timeout=1800) as server:
        with Client(f"grpc://{server.grpc_target}", vocab_path=CLIP_VOCAB, timeout=3600) as client:

            def reading(stage):
                rows.append((stage, peak_bytes(server.process.pid) / 1e9))
                print(f"{stage:60s} {rows[-1][1]:5.2f} GB", flush=True)

            reading("loaded, warmup records run")
            client.generate(PROMPT, num_steps=STEPS, seed=0)
            reading("+ the client's DDIM image")
            client.generate(PROMPT, num_steps=STEPS, seed=0, sampler="DPM++ 2M Karras")
            reading("+ the client's DPM++ 2M Karras image")
            context, unconditional = client.encode_text([PROMPT])
            inputs = {"context": context, "unconditional_context": unconditional, "num_steps": np.int32(STEPS),
                      "guidance_scale": np.float32(7.5)}  # fmt: skip
            model, transport = contract.DIFFUSION_MODEL, client.transport
            transport.predict(model, contract.DEFAULT_SIGNATURE, {**inputs, "seed": np.zeros([1], np.int32)})
            reading("+ a serving_default request (another caller)")
            _, (_, *latent_shape) = transport.signatures(model)["from_noise"]["inputs"]["initial_latent"]
            noise = np.random.default_rng(0).standard_normal((1, *latent_shape)).astype(np.float32)
            transport.predict(model, contract.FROM_NOISE_SIGNATURE, {**inputs, "initial_latent": noise})
            reading("+ a from_noise request")
    print("\n| sd-model-server | peak memory |\n|---|---|")
    for stage, gb in rows:
        print(f"| {stage} | {gb:.2f} GB |")


if __name__ == "__main__":
    main(sys.argv[1])
