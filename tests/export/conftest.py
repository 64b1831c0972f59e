import pytest
from tf1 import Tf1Model


@pytest.fixture(scope="session")
def keras_cv_served(keras_cv_repository):
    """The KerasCV repository's version 1, loaded as TF Serving loads it (one session per model)."""
    models = {name: Tf1Model(keras_cv_repository / name / "1") for name in ("text_encoder", "diffusion_model", "decoder")}
    yield models
    for model in models.values():
        model.close()


@pytest.fixture(scope="session")
def standin_served(standin_repository):
    models = {name: Tf1Model(standin_repository / name / "1") for name in ("text_encoder", "diffusion_model", "decoder")}
    yield models
    for model in models.values():
        model.close()
