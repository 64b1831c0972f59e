import pytest
from tf1 import served_version


# Session-scoped: pytest's package scope needs an __init__.py, which these folders do not have, so it would last the
# session anyway. The files that use keras_cv_served run last in their worker (tests/conftest.py) instead.
@pytest.fixture(scope="session")
def keras_cv_served(keras_cv_repository):
    """The KerasCV repository's version 1, loaded as TF Serving loads it (one session per model, about 4.5 GB)."""
    yield from served_version(keras_cv_repository)


@pytest.fixture(scope="session")
def standin_served(standin_repository):
    yield from served_version(standin_repository)
