"""`auto` precision is decided by a measured bf16 matmul, not by the CPU's flags alone."""

from __future__ import annotations

import json

import torch

from buckle.generation import precision
from buckle.models import device


def test_bf16_speedup_is_measured_once_per_process():
    device.cpu_bf16_speedup.cache_clear()
    first = device.cpu_bf16_speedup()
    assert 0.01 < first < 100  # a real ratio of two timings on this CPU
    assert device.cpu_bf16_speedup() == first  # cached: every caller gets the same answer
    assert device.cpu_bf16_speedup.cache_info().hits >= 1


def test_flags_alone_do_not_choose_bf16(monkeypatch):
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(device, "_host_bf16_speedup", lambda: 0.69)  # the Intel VM of the docs
    assert not device.cpu_prefers_bf16()
    monkeypatch.setattr(device, "_host_bf16_speedup", lambda: 3.5)  # the EPYC with AVX512-BF16
    assert device.cpu_prefers_bf16()
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)  # emulated bf16
    assert not device.cpu_prefers_bf16()


def test_auto_decoding_follows_the_measurement(monkeypatch):
    cpu = torch.device("cpu")
    for prefers, dtype in ((False, torch.float32), (True, torch.bfloat16)):
        monkeypatch.setattr(precision, "cpu_prefers_bf16", lambda p=prefers: p)
        assert precision.resolve_dtype("auto", torch.float32, cpu) == dtype
        assert precision.resolve_dtype("fp32", torch.float32, cpu) == torch.float32
        assert precision.resolve_dtype("bf16", torch.float32, cpu) == torch.bfloat16


def test_every_process_on_a_host_reuses_the_first_measurement(monkeypatch, tmp_path):
    monkeypatch.setenv("BUCKLE_HOME", str(tmp_path))
    first = device._host_bf16_speedup()
    (stored,) = (tmp_path / "host").glob("bf16-speedup-*.json")
    stored.write_text('{"speedup": 42.0}')  # what another process measured first
    assert device._host_bf16_speedup() == 42.0 != first


def test_the_host_key_ignores_the_clock_a_vm_reports_but_not_the_cpu():
    block = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R)\ncpu MHz\t\t: {}\nflags\t: amx_bf16"
    assert device.cpu_identity(block.format("2599.998")) == \
        device.cpu_identity(block.format("2100.000") + "\n\nprocessor\t: 1\ncpu MHz : 1.0")
    assert device.cpu_identity(block.format("2599.998")) != \
        device.cpu_identity(block.format("2599.998").replace("Intel(R) Xeon(R)", "AMD EPYC"))



def test_a_process_that_measured_alongside_another_returns_the_stored_figure(monkeypatch,
                                                                              tmp_path):
    """Two processes find no figure and both measure: the first stored wins for both, so
    neither computes in a dtype the other did not choose."""
    monkeypatch.setenv("BUCKLE_HOME", str(tmp_path))
    path = device.host_speedup_file()

    def measure_while_another_stores() -> float:
        device._store_once(path, 1.1)  # the other process, between our read and our write
        return 7.0

    monkeypatch.setattr(device, "cpu_bf16_speedup", measure_while_another_stores)
    assert device._host_bf16_speedup() == 1.1
    assert json.loads(path.read_text()) == {"speedup": 1.1}
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind
