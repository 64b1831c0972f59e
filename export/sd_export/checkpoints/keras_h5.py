"""KerasCV's own HDF5 weight files (Keras' save_weights, legacy or .weights.h5 layout): one model each.

Keras' load_weights reads them; which model a file is for is what the user said (--ckpt, --text-encoder, --decoder).
"""

import h5py

from sd_export.checkpoints.base import Checkpoint, WeightsError


class KerasH5Checkpoint(Checkpoint):
    format_name = "keras_h5"

    def __init__(self, path, part):
        super().__init__(path, {part: None})
        try:
            with h5py.File(path, "r") as handle:
                handle.visit(lambda name: None)  # walks every group: a truncated file fails here
        except (OSError, RuntimeError) as error:
            first_line = (str(error).strip() or type(error).__name__).splitlines()[0][:300]
            raise WeightsError(f"{path}: unreadable HDF5 ({first_line})") from None

    def plan(self, part, model):
        raise WeightsError(f"{self.path}: a KerasCV .h5 file is loaded whole by Keras, not tensor by tensor")

    def load_into(self, part, model):
        try:
            model.load_weights(self.path)
        except Exception as error:  # Keras raises ValueError, KeyError or OSError depending on the mismatch
            first_line = (str(error).strip() or type(error).__name__).splitlines()[0][:300]
            raise WeightsError(
                f"{self.path}: does not fit KerasCV's SD v1.4 {part} ({first_line})"
            ) from None
