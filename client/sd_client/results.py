"""What generate() returns: one image with its seed and the parameters that made it."""

import dataclasses
import io

import numpy as np

from . import contract, png


@dataclasses.dataclass(frozen=True)
class GenerationResult:
    """One image: its PNG (with the `parameters` text chunk), its seed and what made it."""

    png: bytes = dataclasses.field(repr=False)
    seed: int
    prompt: str
    negative_prompt: str | None
    num_steps: int
    guidance_scale: float
    width: int
    height: int
    model: str
    model_version: str
    model_hash: str | None = None  # first 10 hex digits of the checkpoint's sha256, when the version records it
    precision: str | None = None  # the served version's precision (float32, bfloat16, float16), when recorded
    sampler: str = contract.DEFAULT_SAMPLER

    @property
    def image(self):
        """The image as a PIL image (RGB)."""
        from PIL import Image

        image = Image.open(io.BytesIO(self.png))
        image.load()
        return image

    @property
    def array(self):
        """The image as a uint8 numpy array [height, width, 3]."""
        return np.asarray(self.image.convert("RGB"))

    @property
    def parameters(self):
        return png.read_text(self.png)

    def save(self, path):
        with open(path, "wb") as f:
            f.write(self.png)
