"""SD 1.x checkpoints in any of three formats, told apart by their content (never by their file name):

- keras_h5: KerasCV's HDF5 weight files, one model each;
- ldm_safetensors: one .safetensors file in the CompVis/LDM layout (the whole model, or one part such as a VAE);
- diffusers: a diffusers pipeline folder, or one model's folder from it (e.g. unet/), sharded or not.

open_checkpoint() returns a Checkpoint (see base.py): its parts, its format name, its sha256, and load_into(part,
model). Pickle-based files are refused without being opened by a pickle reader.
"""

import os
import struct

from sd_export.checkpoints.base import PART_NAMES, PARTS, Checkpoint, WeightsError, missing_part_message

__all__ = ["PARTS", "PART_NAMES", "Checkpoint", "WeightsError", "open_checkpoint", "missing_part_message"]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"  # torch.save's default container: a zip around a pickle
PICKLE_PROTOCOLS = {bytes([0x80, protocol]) for protocol in range(2, 6)}


def open_checkpoint(path, part):
    """The checkpoint at path; `part` is the part the user named it for (used for KerasCV .h5 files, which hold one
    model and do not say which)."""
    from sd_export.checkpoints import diffusers_folder, keras_h5, ldm_safetensors

    path = str(path)
    if os.path.isdir(path):
        return diffusers_folder.open_folder(path)
    if not os.path.isfile(path):
        raise WeightsError(
            f"{path}: no such file or folder (expected a KerasCV .h5, an SD 1.x .safetensors or a diffusers folder)"
        )
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(HDF5_SIGNATURE):
        return keras_h5.KerasH5Checkpoint(path, part)
    if head.startswith(ZIP_SIGNATURE) or head[:2] in PICKLE_PROTOCOLS:
        raise WeightsError(diffusers_folder.pickle_message(path))
    if looks_like_safetensors(head) or path.endswith(".safetensors"):
        return ldm_safetensors.open_file(path)
    if path.endswith(diffusers_folder.PICKLE_SUFFIXES):
        raise WeightsError(diffusers_folder.pickle_message(path))
    raise WeightsError(
        f"{path}: neither HDF5, safetensors nor a folder (expected a KerasCV .h5, an SD 1.x .safetensors or a "
        "diffusers folder)"
    )


def looks_like_safetensors(head):
    """safetensors starts with the header's length (little-endian u64) and the header's JSON object."""
    if len(head) < 9:
        return False
    (header_length,) = struct.unpack("<Q", head[:8])
    return head[8:9] == b"{" and header_length > 1  # a length past the end is a truncated file: safetensors says so
