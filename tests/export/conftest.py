import pytest
from tf1 import served_version


@pytest.fixture(scope="package")
def keras_cv_served(keras_cv_repository):
    """The KerasCV repository's version 1, loaded as TF Serving loads it (one session per model); released when the
    export tests are done, so the next folders' tests do not hold another 4 GB copy."""
    yield from served_version(keras_cv_repository)


@pytest.fixture(scope="package")
def standin_served(standin_repository):
    yield from served_version(standin_repository)
