"""Tensors from one or several .safetensors files (a sharded folder has several), read one at a time as float32.

safetensors' numpy view names bfloat16 through numpy's dtype registry, which only knows it once ml_dtypes (a
TensorFlow dependency) is imported: importing it here makes bfloat16 checkpoints readable; every float is then cast to
float32. Headers are validated by safetensors itself (length, JSON, offsets inside the file) when a file is opened.
"""

import ml_dtypes  # noqa: F401  registers bfloat16 with numpy, for safetensors' numpy view
import numpy as np
from safetensors import SafetensorError, safe_open

from sd_export.checkpoints.base import WeightsError

FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")


class SafetensorsStore:
    """{key: tensor} over files; shapes come from the headers, data only on get()."""

    def __init__(self, key_files, display):
        """key_files: {key: file path}; display: how messages name the checkpoint (its path)."""
        self.display = display
        self._key_files = dict(key_files)
        self._handles = {}
        self._shapes = {}
        self._dtypes = {}
        for path in sorted(set(self._key_files.values())):
            handle = self._open(path)
            for key in handle.keys():
                if self._key_files.get(key) == path:
                    tensor = handle.get_slice(key)
                    self._shapes[key] = tuple(tensor.get_shape())
                    self._dtypes[key] = tensor.get_dtype()
        missing = [key for key in self._key_files if key not in self._shapes]
        if missing:
            raise WeightsError(
                f"{display}: the shard index names tensors no shard holds ({', '.join(missing[:3])}): "
                "an incomplete download?"
            )

    @classmethod
    def of_files(cls, paths, display):
        """Every tensor of the given files (a key in two files is refused: which one would win is unclear)."""
        key_files = {}
        for path in paths:
            for key in cls._open_keys(path):
                if key in key_files:
                    raise WeightsError(f"{display}: tensor {key} is in both {key_files[key]} and {path}")
                key_files[key] = path
        return cls(key_files, display)

    @staticmethod
    def _open_keys(path):
        try:
            with safe_open(path, framework="numpy") as handle:
                return list(handle.keys())
        except (SafetensorError, OSError, ValueError) as error:
            raise WeightsError(corrupt_message(path, error)) from None

    def _open(self, path):
        try:
            handle = safe_open(path, framework="numpy")
        except (SafetensorError, OSError, ValueError) as error:
            raise WeightsError(corrupt_message(path, error)) from None
        self._handles[path] = handle
        return handle

    def keys(self):
        return self._shapes.keys()

    def shape(self, key):
        return self._shapes[key]

    def get(self, key):
        """The tensor as float32 (float16 and bfloat16 are cast; other types are refused)."""
        if self._dtypes[key] not in FLOAT_DTYPES:
            raise WeightsError(f"{self.display}: tensor {key} is {self._dtypes[key]}, not a float: not model weights")
        return np.asarray(self._handles[self._key_files[key]].get_tensor(key), dtype=np.float32)

    def metadata(self):
        merged = {}
        for handle in self._handles.values():
            merged.update(handle.metadata() or {})
        return merged


def corrupt_message(path, error):
    reason = (str(error).strip() or type(error).__name__).splitlines()[0][:200]
    return (
        f"{path}: corrupt or truncated safetensors file ({reason}); download or convert it again"
    )
