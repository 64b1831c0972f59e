"""The free-space check the large fixtures run before writing (disk_space.py)."""

import shutil

import pytest
from disk_space import GB, require_free_space


def test_enough_space_passes(tmp_path):
    require_free_space(tmp_path, 0, "nothing")


def test_too_little_space_fails_naming_what_and_how_much(tmp_path):
    free = shutil.disk_usage(tmp_path).free
    wanted = free // GB + 1
    with pytest.raises(pytest.fail.Exception) as failure:
        require_free_space(tmp_path, wanted, "The float32 export")
    message = str(failure.value)
    assert message.startswith(f"The float32 export needs about {wanted} GB free under {tmp_path}")
    assert f"{free / GB:.1f} GB are free" in message
