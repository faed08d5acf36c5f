"""The engine's in-place KV cache holds exactly what transformers' DynamicLayer holds, through
every edit the engine makes (append, drop rows, crop left padding, replacement by a merge)."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer

from buckle.generation.kv_cache import HEADROOM, HeadroomCache, HeadroomLayer


def _kv(rows: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, 2, n, 4, generator=g), torch.randn(rows, 2, n, 4, generator=g)


def _same(a: DynamicLayer, b: DynamicLayer) -> None:
    assert torch.equal(a.keys, b.keys) and torch.equal(a.values, b.values)


def test_appends_in_place_and_matches_dynamic_layer_through_every_edit() -> None:
    ours, ref = HeadroomLayer(), DynamicLayer()
    for layer in (ours, ref):
        layer.update(*_kv(5, 7, 0))  # a prefill
    _same(ours, ref)
    buffer = ours._kbuf
    for step in range(3):  # decode steps write into the same buffer
        out = ours.update(*_kv(5, 1, step + 1))
        ref.update(*_kv(5, 1, step + 1))
        _same(ours, ref)
        assert ours._kbuf is buffer and out[0].data_ptr() == buffer.data_ptr()
    index = torch.tensor([0, 2, 4])
    ours.batch_select_indices(index)
    ref.batch_select_indices(index)
    _same(ours, ref)
    ours.crop_left(3)
    ref.keys, ref.values = ref.keys[:, :, 3:], ref.values[:, :, 3:]
    _same(ours, ref)
    kept = ours._kbuf
    ours.update(*_kv(3, 1, 9))
    ref.update(*_kv(3, 1, 9))
    _same(ours, ref)
    assert ours._kbuf is kept  # crop and select kept the headroom: still no copy
    # a merge replaces the tensors from outside: adopted into a fresh buffer at the next append
    extra_k, extra_v = _kv(2, ours.keys.shape[-2], 10)
    for layer in (ours, ref):
        layer.keys = torch.cat([layer.keys, extra_k])
        layer.values = torch.cat([layer.values, extra_v])
    for step in range(HEADROOM + 2):  # past the headroom: one more (re)allocation
        ours.update(*_kv(5, 1, 20 + step))
        ref.update(*_kv(5, 1, 20 + step))
    _same(ours, ref)
    assert ours.get_seq_length() == ref.get_seq_length() == 7 + 3 - 3 + 1 + HEADROOM + 2


def test_cache_is_a_dynamic_cache_of_headroom_layers() -> None:
    cache = HeadroomCache()
    cache.update(*_kv(2, 3, 0), layer_idx=0)
    cache.update(*_kv(2, 3, 1), layer_idx=1)
    assert [type(layer) for layer in cache.layers] == [HeadroomLayer, HeadroomLayer]
    assert cache.get_seq_length() == 3
