"""A check before the suite writes its large files (checkpoints and exports of the real architectures, 4-8 GB each):
on a full disk the fixture that needs the space fails with a message saying how much is missing, instead of a few
hundred tests failing later with ENOSPC."""

import shutil

import pytest

GB = 10**9


def require_free_space(folder, gigabytes, what):
    """Fail the calling fixture unless `folder`'s file system has `gigabytes` GB free for `what`."""
    free = shutil.disk_usage(folder).free
    if free < gigabytes * GB:
        pytest.fail(
            f"{what} needs about {gigabytes} GB free under {folder}, and {free / GB:.1f} GB are free: "
            "free some disk space (old pytest runs, old exports) or point TMPDIR to a larger disk",
            pytrace=False,
        )
