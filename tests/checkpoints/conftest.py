import json
from pathlib import Path

import pytest
from checkpoint_headers import Shaped

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def sd14_shapes():
    """SD 1.4's tensor names and shapes as diffusers and transformers name them (written by torch_oracle.py shapes;
    test_oracle.py checks that the file is still what they produce)."""
    listing = json.loads((DATA / "sd14_shapes.json").read_text())
    return {part: {name: Shaped(shape) for name, shape in names.items()} for part, names in listing.items()}


@pytest.fixture(scope="session")
def image_encoder():
    from keras_cv.models.stable_diffusion import ImageEncoder

    return ImageEncoder(download_weights=False)
