"""The memory TF Serving's own loader holds for a repository's three models, without Python's TensorFlow.

tensorflow_model_server loads a version with tensorflow::LoadSavedModel (tag "serve") and runs a Predict request with
Session::Run on the signature's tensor names. TensorFlow's C API wraps exactly these two (TF_LoadSessionFromSavedModel,
TF_SessionRun), and the tensorflow wheel ships them in libtensorflow_cc.so.2. A fresh process per repository loads
that library, registers TF Text's ops (the model server has them linked in), loads text_encoder, diffusion_model and
decoder, runs the client's chain (text_encoder's serving_default on an empty prompt, diffusion_model's with_sampler
with DDIM and then with DPM++ 2M Karras, decoder's png), each output fed on as the next input, and reads its
resident memory and its peak (VmHWM) after each stage. The model server's own gRPC/REST front end is not included;
the local server (sd-model-server) adds Python's TensorFlow on top of this, which is why both are measured.

    TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=0 .venv/bin/python tests/bench/tf_serving_loader_memory.py \\
        /tmp/f32/models /tmp/bf16/models [--steps 2]

The first repository is the reference of the ratio column.
"""

import argparse
import ctypes
import importlib.util
import json
import struct
import subprocess
import sys
from pathlib import Path

SAMPLERS = (b"DDIM", b"DPM++ 2M Karras")
TF_FLOAT, TF_INT32, TF_STRING = 1, 3, 7  # TF_DataType
TSTRING_BYTES = 24  # sizeof(TF_TString)


def memory_mb():
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) // 1024
    return fields["VmRSS"], fields["VmHWM"]


def installed_package(name):
    """A package's folder, found without importing it (the measured process must not import TensorFlow's Python)."""
    return Path(importlib.util.find_spec(name).origin).parent


class CApi:
    """The few C API functions used, with their signatures declared for ctypes."""

    P = ctypes.c_void_p
    FUNCTIONS = {
        "TF_NewStatus": (P, []),
        "TF_GetCode": (ctypes.c_int, [P]),
        "TF_Message": (ctypes.c_char_p, [P]),
        "TF_LoadLibrary": (P, [ctypes.c_char_p, P]),
        "TF_NewSessionOptions": (P, []),
        "TF_NewGraph": (P, []),
        "TF_LoadSessionFromSavedModel": (P, [P, P, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, P, P, P]),  # fmt: skip
        "TF_GraphOperationByName": (P, [P, ctypes.c_char_p]),
        "TF_AllocateTensor": (P, [ctypes.c_int, ctypes.POINTER(ctypes.c_int64), ctypes.c_int, ctypes.c_size_t]),
        "TF_TensorData": (P, [P]),
        "TF_DeleteTensor": (None, [P]),
        "TF_StringInit": (None, [P]),
        "TF_StringCopy": (None, [P, ctypes.c_char_p, ctypes.c_size_t]),
        "TF_SessionRun": (None, [P, P, P, P, ctypes.c_int, P, P, ctypes.c_int, P, ctypes.c_int, P, P]),
    }

    def __init__(self, tensorflow_dir):
        ctypes.CDLL(str(tensorflow_dir / "libtensorflow_framework.so.2"), mode=ctypes.RTLD_GLOBAL)
        library = ctypes.CDLL(str(tensorflow_dir / "libtensorflow_cc.so.2"), mode=ctypes.RTLD_GLOBAL)
        for name, (result, arguments) in self.FUNCTIONS.items():
            function = getattr(library, name)
            function.restype, function.argtypes = result, arguments
            setattr(self, name, function)
        self.status = self.TF_NewStatus()

    def check(self, what):
        if self.TF_GetCode(self.status):
            raise RuntimeError(f"{what}: {self.TF_Message(self.status).decode()}")

    def tensor(self, dtype, shape, data=b""):
        dims = (ctypes.c_int64 * len(shape))(*shape)
        count = 1
        for size in shape:
            count *= size
        tensor = self.TF_AllocateTensor(dtype, dims, len(shape), TSTRING_BYTES if dtype == TF_STRING else 4 * count)
        address = self.TF_TensorData(tensor)
        if dtype == TF_STRING:
            self.TF_StringInit(address)
            self.TF_StringCopy(address, data, len(data))
        else:
            ctypes.memmove(address, data.ljust(4 * count, b"\0"), 4 * count)
        return tensor


class Output(ctypes.Structure):
    _fields_ = [("oper", ctypes.c_void_p), ("index", ctypes.c_int)]


def measure(models_dir, plan, steps):
    """Runs in the measured process: [(stage, rss MB, peak MB)]."""
    stages = [("start", *memory_mb())]
    api = CApi(installed_package("tensorflow"))
    for library in sorted(installed_package("tensorflow_text").glob("python/ops/_*.so")):
        api.TF_LoadLibrary(str(library).encode(), api.status)
        api.check(f"loading {library.name}")
    stages.append(("libraries, TF Text's ops", *memory_mb()))
    sessions = {}
    text_encoder, diffusion_model, decoder = plan["chain"]
    for model in plan["chain"]:
        graph = api.TF_NewGraph()
        tags = (ctypes.c_char_p * 1)(b"serve")
        path = str(Path(models_dir) / model / str(plan["version"][model])).encode()
        session = api.TF_LoadSessionFromSavedModel(api.TF_NewSessionOptions(), None, path, tags, 1, graph, None, api.status)  # fmt: skip
        api.check(f"loading {model}")
        sessions[model] = session, graph
        stages.append((f"loaded {model}", *memory_mb()))

    def run(model, values, outputs):
        """Run the model's chain signature on {input: TF_Tensor}; {output: TF_Tensor} for `outputs`."""
        session, graph = sessions[model]
        signature = plan["signatures"][model]

        def tensor_name(name):
            operation, _, index = name.partition(":")
            return Output(api.TF_GraphOperationByName(graph, operation.encode()), int(index or 0))

        inputs = sorted(values)
        feeds = (Output * len(inputs))(*[tensor_name(signature["inputs"][key]) for key in inputs])
        tensors = (ctypes.c_void_p * len(inputs))(*[values[key] for key in inputs])
        fetches = (Output * len(outputs))(*[tensor_name(signature["outputs"][key]) for key in outputs])
        results = (ctypes.c_void_p * len(outputs))()
        api.TF_SessionRun(session, None, feeds, tensors, len(inputs), fetches, results, len(outputs), None, 0, None, api.status)  # fmt: skip
        api.check(f"running {model}")
        return dict(zip(outputs, results))

    empty_prompt = plan["empty_prompt"]
    tokens = struct.pack(f"<{len(empty_prompt)}i", *empty_prompt)
    contexts = run(
        text_encoder,
        {"tokens": api.tensor(TF_INT32, [1, len(empty_prompt)], tokens),
         "negative_tokens": api.tensor(TF_INT32, [1, len(empty_prompt)], tokens)},
        ["context", "unconditional_context"],
    )  # fmt: skip
    stages.append(("ran text_encoder", *memory_mb()))
    values = {
        **contexts,
        "num_steps": api.tensor(TF_INT32, [], struct.pack("<i", steps)),
        "guidance_scale": api.tensor(TF_FLOAT, [], struct.pack("<f", 7.5)),
        "seed": api.tensor(TF_INT32, [1], struct.pack("<i", 0)),
    }
    for sampler in SAMPLERS:
        values["sampler"] = api.tensor(TF_STRING, [], sampler)
        latent = run(diffusion_model, values, ["latent"])
        stages.append((f"ran with_sampler, {sampler.decode()}", *memory_mb()))
    images = run(decoder, latent, ["images_bytes"])
    api.TF_DeleteTensor(images["images_bytes"])
    stages.append(("ran decoder's png", *memory_mb()))
    return stages


def chain_plan(models_dir):
    """What the measured process runs, worked out here so that it imports neither TensorFlow's Python nor the client:
    the chain's models in order, the tensor names of each one's signature in its newest version (read with
    TensorFlow's protos), and the tokens of an empty prompt."""
    from sd_client import contract
    from sd_serving.config import version_folders
    from tensorflow.core.protobuf import saved_model_pb2

    chain = {  # model: signature, in the order the client's chain runs them
        contract.TEXT_ENCODER: contract.DEFAULT_SIGNATURE,
        contract.DIFFUSION_MODEL: contract.SAMPLER_SIGNATURE,
        contract.DECODER: contract.PNG_SIGNATURE,
    }
    empty_prompt = [contract.START_TOKEN] + [contract.END_TOKEN] * (contract.MAX_PROMPT_TOKENS - 1)
    plan = {"chain": list(chain), "empty_prompt": empty_prompt, "version": {}, "signatures": {}}
    for model, signature_name in chain.items():
        model_dir = Path(models_dir) / model
        version = max(version_folders(model_dir))
        saved_model = saved_model_pb2.SavedModel()
        saved_model.ParseFromString((model_dir / str(version) / "saved_model.pb").read_bytes())
        signature = saved_model.meta_graphs[0].signature_def[signature_name]
        plan["version"][model] = version
        plan["signatures"][model] = {
            "inputs": {key: info.name for key, info in signature.inputs.items()},
            "outputs": {key: info.name for key, info in signature.outputs.items()},
        }
    return plan


def measure_in_fresh_process(models_dir, steps=2, environment=None):
    """[(stage, resident MB, peak MB)] of a fresh process that loads and runs the repository through the C API."""
    command = [sys.executable, __file__, str(models_dir), "--steps", str(steps),
               "--child", json.dumps(chain_plan(models_dir))]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=True, env=environment)
    return json.loads(result.stdout.splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models_dirs", nargs="+", help="model repositories (sd-export --models-dir)")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.models_dirs[0], json.loads(args.child), args.steps)))
        return
    peaks = []
    for models_dir in args.models_dirs:
        stages = measure_in_fresh_process(models_dir, args.steps)
        print(f"\n{models_dir}")
        for stage, rss, peak in stages:
            print(f"  {stage:36s} resident {rss / 1024:5.2f} GB, peak {peak / 1024:5.2f} GB")
        peaks.append(stages[-1][2])
    print("\npeak, against the first repository's: " + ", ".join(f"{peak / peaks[0]:.3f}×" for peak in peaks))


if __name__ == "__main__":
    main()
