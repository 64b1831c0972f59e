"""A diffusers folder: a whole pipeline (unet/, text_encoder/, vae/, scheduler/) or one model's folder alone.

Each model folder holds config.json and its weights as one .safetensors file or as shards listed by an index
(`*.safetensors.index.json`); `.bin` weights are pickles and are refused. The folder's sha256 is defined as the
sha256 of the text `sha256sum` prints for every file read here (model_index.json, scheduler/scheduler_config.json and
each used model folder's config, index and weight files), sorted by their paths relative to the folder, with `/`:
`sha256sum $(files, sorted) | sha256sum` run in the folder gives the same hex digest.
"""

import hashlib
import json
import os

from sd_export.checkpoints.base import Checkpoint, PartSource, WeightsError, file_sha256
from sd_export.checkpoints.tensors import SafetensorsStore
from sd_export.checkpoints.unet_names import CONTEXT_WIDTH, DIFFUSERS, refuse_other_models

WEIGHT_NAMES = ("diffusion_pytorch_model", "model")  # diffusers' models, transformers' models
VARIANTS = ("", ".fp16")  # plain weights first; a folder saved with variant="fp16" only has the second
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth")
# Which diffusers / transformers class each folder must hold, and the parts it fills.
MODEL_FOLDERS = {
    "unet": ("UNet2DConditionModel", ("diffusion_model",)),
    "text_encoder": ("CLIPTextModel", ("text_encoder",)),
    "vae": ("AutoencoderKL", ("decoder", "image_encoder")),
}
OWNED = {
    "diffusion_model": ("",),
    "text_encoder": ("",),
    "decoder": ("decoder.", "post_quant_conv."),
    "image_encoder": ("encoder.", "quant_conv."),
}


class DiffusersCheckpoint(Checkpoint):
    format_name = "diffusers"

    def __init__(self, path, sources, hashed_files):
        super().__init__(path, sources)
        self.hashed_files = hashed_files

    def sha256(self):
        listing = "".join(
            f"{file_sha256(os.path.join(self.path, name))}  {name}\n" for name in sorted(self.hashed_files)
        )
        return hashlib.sha256(listing.encode()).hexdigest()


def open_folder(path):
    path = str(path)
    hashed = [name for name in ("model_index.json", "scheduler/scheduler_config.json") if exists(path, name)]
    refuse_pipeline(path)
    folders = {name: name for name in MODEL_FOLDERS if os.path.isdir(os.path.join(path, name))}
    if not folders and exists(path, "config.json"):
        kind = model_kind(path, "")
        if kind is None:
            raise WeightsError(f"{path}: config.json names no SD 1.x U-Net, CLIP text encoder or VAE")
        folders = {kind: ""}
    if not folders:
        # diffusers' LoRA training scripts write only pytorch_lora_weights.safetensors into their output folder
        if any("lora" in name.lower() and name.endswith(".safetensors") for name in os.listdir(path)):
            raise WeightsError(
                f"{path}: a LoRA (low-rank adapter) training output, not a full model: merge it into its base SD 1.x "
                "checkpoint first (e.g. with diffusers' fuse_lora, then save_pretrained)"
            )
        raise WeightsError(
            f"{path}: a folder with neither unet/, text_encoder/, vae/ nor a model's config.json: not a diffusers folder"
        )
    sources = {}
    for kind, folder in folders.items():
        store, files = model_store(path, folder)
        hashed += files
        class_name, parts = MODEL_FOLDERS[kind]
        found = model_kind(path, folder)
        if found not in (kind, None):
            raise WeightsError(f"{path}/{folder}: config.json names a {found} model where {class_name} belongs")
        config = read_json(path, os.path.join(folder, "config.json"))
        if kind == "unet":
            refuse_unet_config(os.path.join(path, folder), config)
            refuse_other_models(store, "", DIFFUSERS, os.path.join(path, folder))
        prefix = text_model_prefix(store) if kind == "text_encoder" else ""
        for part in parts:
            sources[part] = PartSource(store, prefix, DIFFUSERS, OWNED[part])
    return DiffusersCheckpoint(path, sources, hashed)


def refuse_pipeline(path):
    """A pipeline's model_index.json and scheduler config say what SD 1.x text-to-image pipelines never are."""
    if exists(path, "text_encoder_2"):
        raise WeightsError(f"{path}: an SDXL pipeline (text_encoder_2/); only SD 1.x can be exported")
    if exists(path, "scheduler/scheduler_config.json"):
        scheduler = read_json(path, "scheduler/scheduler_config.json")
        if scheduler.get("prediction_type") == "v_prediction":
            raise WeightsError(
                f"{path}: a v-prediction model (scheduler_config.json); KerasCV's sampler predicts noise (epsilon), "
                "so only epsilon-prediction SD 1.x checkpoints can be exported"
            )


def refuse_unet_config(path, config):
    if config.get("addition_embed_type"):
        raise WeightsError(f"{path}: an SDXL U-Net (addition_embed_type); only SD 1.x can be exported")
    width = config.get("cross_attention_dim")
    if isinstance(width, int) and width == 1024:
        raise WeightsError(f"{path}: an SD 2.x U-Net (cross_attention_dim 1024); only SD 1.x (768) can be exported")
    if isinstance(width, int) and width != CONTEXT_WIDTH:
        raise WeightsError(f"{path}: a U-Net with cross_attention_dim {width}, not SD 1.x's {CONTEXT_WIDTH}")
    # in_channels 9 (inpainting) is refused from the weights' shapes, which cannot disagree with the data.


def model_kind(path, folder):
    """unet, text_encoder or vae from the folder's config.json (None when it has none or names another class)."""
    if not exists(path, os.path.join(folder, "config.json")):
        return None
    config = read_json(path, os.path.join(folder, "config.json"))
    names = [config.get("_class_name")] + list(config.get("architectures") or [])
    for kind, (class_name, _) in MODEL_FOLDERS.items():
        if class_name in names:
            return kind
    return None


def model_store(path, folder):
    """The folder's tensors, and the files read (relative to path) for the hash."""
    where = os.path.join(path, folder)
    config = [os.path.join(folder, "config.json")] if exists(path, os.path.join(folder, "config.json")) else []
    for variant in VARIANTS:
        for name in WEIGHT_NAMES:
            single = f"{name}{variant}.safetensors"
            index = f"{name}.safetensors.index{variant}.json"
            if exists(where, single):
                return SafetensorsStore.of_files([os.path.join(where, single)], where), config + [
                    os.path.join(folder, single)
                ]
            if exists(where, index):
                return sharded_store(path, folder, index, config)
    pickles = sorted(name for name in os.listdir(where) if name.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise WeightsError(pickle_message(os.path.join(where, pickles[0])))
    expected = " or ".join(f"{name}.safetensors" for name in WEIGHT_NAMES)
    raise WeightsError(f"{where}: no *.safetensors weights (expected {expected})")


def sharded_store(path, folder, index, config):
    where = os.path.join(path, folder)
    weight_map = read_json(where, index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise WeightsError(f"{os.path.join(where, index)}: a shard index without a weight_map")
    shards = sorted(set(weight_map.values()))
    for shard in shards:
        if not exists(where, shard):
            raise WeightsError(f"{os.path.join(where, index)}: names shard {shard}, which is not in the folder")
    key_files = {key: os.path.join(where, shard) for key, shard in weight_map.items()}
    files = config + [os.path.join(folder, index)] + [os.path.join(folder, shard) for shard in shards]
    return SafetensorsStore(key_files, where), files


def text_model_prefix(store):
    return "text_model." if "text_model.final_layer_norm.weight" in store.keys() else ""


def pickle_message(path):
    return (
        f"{path}: a pickle-based PyTorch file; it is never unpickled here (unpickling runs arbitrary code). Convert "
        "it to .safetensors where you trust it, e.g. `python -c \"import torch, safetensors.torch as s; "
        "d = torch.load('IN', weights_only=True); s.save_file(d.get('state_dict', d), 'OUT.safetensors')\"`, "
        "or save a diffusers pipeline with save_pretrained(..., safe_serialization=True)"
    )


def exists(path, name):
    return os.path.exists(os.path.join(path, name))


def read_json(path, name):
    try:
        with open(os.path.join(path, name), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise WeightsError(f"{os.path.join(path, name)}: unreadable JSON ({str(error).splitlines()[0][:200]})") from None
