"""sd-model-server's flags: tensorflow_model_server's names, defaults and both spellings; others refused by name."""

import pytest

from sd_serving.cli import main, parse_flags


def test_defaults_are_tensorflow_model_servers():
    options = parse_flags(["--model_config_file=m.config"])
    assert (options.port, options.rest_api_port, options.rest_api_timeout_in_ms) == (8500, 0, 30000)
    assert options.enable_model_warmup is True
    assert options.host == "127.0.0.1"


def test_equals_and_space_spellings_mean_the_same():
    joined = parse_flags(["--port=9000", "--rest_api_port=9001", "--model_config_file=a", "--rest_api_timeout_in_ms=5"])
    spaced = parse_flags(["--port", "9000", "--rest_api_port", "9001", "--model_config_file", "a",
                          "--rest_api_timeout_in_ms", "5"])  # fmt: skip
    assert vars(joined) == vars(spaced)
    assert (joined.port, joined.rest_api_port, joined.model_config_file, joined.rest_api_timeout_in_ms) == (
        9000, 9001, "a", 5,
    )  # fmt: skip


@pytest.mark.parametrize(
    "arguments,expected",
    [
        (["--enable_model_warmup=false"], False),
        (["--enable_model_warmup=true"], True),
        (["--enable_model_warmup", "false"], False),
        (["--enable_model_warmup=False"], False),
        (["--enable_model_warmup"], True),
    ],
)
def test_boolean_flags(arguments, expected):
    assert parse_flags(["--model_config_file=a", *arguments]).enable_model_warmup is expected


def test_host_is_the_one_extra_flag():
    assert parse_flags(["--model_config_file=a", "--host=0.0.0.0"]).host == "0.0.0.0"


@pytest.mark.parametrize(
    "arguments,message",
    [
        (["--model_config_file=a", "--enable_batching=true"], "unsupported flag(s): --enable_batching"),
        (["--model_config_file=a", "--model_name", "x"], "unsupported flag(s): --model_name"),
        (["--model_config_file=a", "--rest_api_p=1"], "unsupported flag(s): --rest_api_p"),  # no abbreviations
        (["--model_config_file=a", "stray"], "unexpected argument(s): stray"),
        (["--port=8500"], "--model_config_file"),
        (["--model_config_file=a", "--port=70000"], "port 70000 is outside 0..65535"),
        (["--model_config_file=a", "--port=0"], "--port must be set"),
        (["--model_config_file=a", "--port=9", "--rest_api_port=9"], "--rest_api_port and --port must differ"),
        (["--model_config_file=a", "--rest_api_timeout_in_ms=-1"], "expected 0 or more, got -1"),
        (["--model_config_file=a", "--enable_model_warmup=yesplease"], "expected true or false"),
    ],
)
def test_bad_flags_are_refused_by_name(capsys, arguments, message):
    with pytest.raises(SystemExit) as exited:
        parse_flags(arguments)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("value", ["yes", "", " 1"])
def test_a_weight_caching_value_tensorflow_would_abort_on_is_refused(monkeypatch, capsys, value):
    """TensorFlow's own reader aborts the process at the first convolution on these (measured)."""
    monkeypatch.setenv("TF_ONEDNN_ASSUME_FROZEN_WEIGHTS", value)
    assert main(["--model_config_file=missing.config"]) == 2
    error = capsys.readouterr().err
    assert error == f"sd-model-server: TF_ONEDNN_ASSUME_FROZEN_WEIGHTS={value!r}: expected 0, 1, false or true\n"
