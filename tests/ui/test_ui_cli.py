"""`sd-client ui`: private by default, and a label the server does not serve stops it at start with one line."""

import subprocess
import sys
from pathlib import Path

from sd_client.cli import build_parser


def test_it_binds_this_machine_on_a1111s_port_by_default():
    args = build_parser().parse_args(["ui"])
    assert (args.host, args.port, args.label) == ("127.0.0.1", 7860, [])


def test_a_label_the_server_does_not_serve_is_refused_at_start(ui):
    command = [str(Path(sys.executable).parent / "sd-client"), "ui", "--url", ui.rest_url, "--label", "pokemon",
               "--port", "9"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("sd-client: error: label 'pokemon' is not served by")
