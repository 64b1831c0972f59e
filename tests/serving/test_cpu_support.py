"""The start-up warning for a bfloat16 export on a CPU that emulates bfloat16 (no AVX512-BF16, no AMX-BF16)."""

import logging

import pytest

import sd_serving.server
from sd_serving import cpu_support
from sd_serving.cli import main
from server_models import write_config
from test_weight_cache import version

AVX2_ONLY = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n\nprocessor\t: 1\nflags\t\t: fpu sse2 avx avx2 fma\n"
AVX512_BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 avx512_vnni\n"
AMX = "processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile\n"


def test_cpu_flags_are_read_from_cpuinfo():
    assert cpu_support.cpu_flags(AVX512_BF16) == {"fpu", "avx2", "avx512f", "avx512_bf16", "avx512_vnni"}
    assert cpu_support.cpu_flags("processor : 0\nFeatures : fp asimd\n") == set()  # ARM names them otherwise


@pytest.mark.parametrize("cpuinfo,warned", [(AVX2_ONLY, True), (AVX512_BF16, False), (AMX, False), ("", False)])
def test_a_bfloat16_version_is_warned_about_only_where_the_cpu_lacks_bfloat16_units(tmp_path, cpuinfo, warned):
    versions = [version(tmp_path / "diffusion_model" / "1", "bfloat16", 1e6),
                version(tmp_path / "decoder" / "1", "bfloat16", 1e6)]  # fmt: skip
    warning = cpu_support.emulated_bfloat16_warning(versions, cpuinfo)
    if not warned:
        assert warning is None
        return
    assert warning.startswith(f"{versions[0]} is a bfloat16 export (and 1 more), and this CPU has neither")
    assert "no faster than a float32 export" in warning


@pytest.mark.parametrize("precision", ["float32", "float16", None])
def test_other_precisions_are_not_warned_about(tmp_path, precision):
    assert cpu_support.emulated_bfloat16_warning([version(tmp_path / "1", precision, 1e6)], AVX2_ONLY) is None


def test_the_server_logs_the_warning_at_start(tmp_path, monkeypatch, caplog):
    version(tmp_path / "diffusion_model" / "1", "bfloat16", 1e6)
    config = write_config(tmp_path / "models.config", {"diffusion_model": (tmp_path / "diffusion_model", None, {})})
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(AVX2_ONLY)
    monkeypatch.setattr(cpu_support, "CPUINFO", cpuinfo)
    monkeypatch.setenv("TF_ONEDNN_ASSUME_FROZEN_WEIGHTS", "0")
    monkeypatch.setattr(sd_serving.server, "serve", lambda options, plans: None)  # start-up only, no models loaded
    with caplog.at_level(logging.INFO, logger="sd_serving"):
        assert main([f"--model_config_file={config}", "--port=8500"]) == 0
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert len(warnings) == 1 and "has neither AVX512-BF16 nor AMX-BF16" in warnings[0]
