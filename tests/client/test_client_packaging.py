"""`pip install ./client` must pull no TensorFlow or Keras; the extra [local] brings TensorFlow."""

import importlib.metadata
import re

from packaging.requirements import Requirement

HEAVY = {"tensorflow", "tensorflow-cpu", "tf-keras", "keras", "keras-cv", "tensorflow-text", "tensorflow-serving-api"}


def _name(text):
    return re.sub(r"[-_.]+", "-", text).lower()


def _closure(distribution, extras=()):
    """Every distribution installing `distribution` (with extras) pulls in, as installed here."""
    seen, pending = set(), [(distribution, tuple(extras))]
    while pending:
        name, wanted = pending.pop()
        if _name(name) in seen:
            continue
        seen.add(_name(name))
        for line in importlib.metadata.requires(name) or []:
            requirement = Requirement(line)
            active = requirement.marker is None or any(
                requirement.marker.evaluate({"extra": extra}) for extra in (*wanted, "")
            )
            if active:
                pending.append((requirement.name, tuple(requirement.extras)))
    return seen - {_name(distribution)}


def test_the_default_install_pulls_no_tensorflow_or_keras():
    closure = _closure("sd-client")
    assert {"requests", "grpcio", "protobuf", "numpy", "pillow"} <= closure
    assert not closure & HEAVY, closure & HEAVY


def test_the_local_extra_brings_tensorflow():
    assert "tensorflow" in _closure("sd-client", extras=("local",))


def test_the_console_script_is_declared():
    (script,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "sd-client"]
    assert script.value == "sd_client.cli:main"


def test_the_closure_walk_does_find_tensorflow_where_it_is():
    # the check above is only worth something if the walk reaches TensorFlow when a package depends on it
    assert {"tensorflow", "keras"} <= _closure("sd-export")
