import pytest
from tf1 import served_version


@pytest.fixture(scope="module")
def keras_cv_served(keras_cv_repository):
    """The KerasCV repository's version 1, loaded as TF Serving loads it (one session per model). Loaded per module
    (about 10 s) and released after it: the other tests of the real architectures run exports and reference models of
    their own, and with this 4 GB copy beside them the machine came within 3 GB of its 24."""
    yield from served_version(keras_cv_repository)


@pytest.fixture(scope="package")
def standin_served(standin_repository):
    yield from served_version(standin_repository)
