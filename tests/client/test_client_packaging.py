"""`pip install ./client` must pull no TensorFlow or Keras, nor Gradio; the extra [local] brings TensorFlow, [ui] Gradio.
Only sd_client.ui imports Gradio or the web stack that comes with it."""

import ast
from pathlib import Path

import importlib.metadata
import re

from packaging.requirements import Requirement

WEB = {"gradio", "gradio-client", "fastapi", "uvicorn", "starlette", "pydantic"}  # the ui extra's stack
UI_PACKAGE = Path(__file__).resolve().parents[2] / "client/sd_client/ui"
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


def test_the_default_install_pulls_no_web_stack_and_the_ui_extra_does():
    assert not _closure("sd-client") & WEB, _closure("sd-client") & WEB
    assert {"gradio", "fastapi", "uvicorn", "pydantic"} <= _closure("sd-client", extras=("ui",))


def test_only_the_ui_package_imports_the_web_stack():
    modules = {name.replace("-", "_") for name in WEB}
    offenders = []
    for path in UI_PACKAGE.parent.rglob("*.py"):
        if UI_PACKAGE in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            if any(name.split(".")[0] in modules for name in names):
                offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders
    assert any(UI_PACKAGE.glob("*.py"))  # the walk sees the package it leaves out


def test_the_local_extra_brings_tensorflow():
    assert "tensorflow" in _closure("sd-client", extras=("local",))


def test_the_console_script_is_declared():
    (script,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "sd-client"]
    assert script.value == "sd_client.cli:main"


def test_the_closure_walk_does_find_tensorflow_where_it_is():
    # the check above is only worth something if the walk reaches TensorFlow when a package depends on it
    assert {"tensorflow", "keras"} <= _closure("sd-export")
