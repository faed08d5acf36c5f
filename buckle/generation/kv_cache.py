"""The engine's KV cache: layers that append a decode step in place (`HeadroomLayer`).

Why: transformers' `DynamicLayer` appends each step's keys and values with `torch.cat`, which
copies every layer's whole cache every step: at 256 rows x 150 positions of Qwen2.5-0.5B that is
~470 MB written per decode step, about half of what the step reads in weights. Here a layer
keeps a buffer with spare positions after the last one; a step writes its column in place and
attention sees a view of the filled part. The engine's own edits keep the buffer too:
`batch_select_indices` (finished rows leave) gathers buffer rows, headroom included, and
`crop_left` (left padding no row needs) moves the view's start. Anything else that replaces
`keys`/`values` (a merge, `batch_repeat_interleave`) is adopted into a fresh buffer at the next
append. Same numbers as `DynamicLayer`: only where the tensors live changes.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

HEADROOM = 32  # spare positions per (re)allocation: one copy of the cache every 32 steps


class HeadroomLayer(DynamicLayer):
    """A `DynamicLayer` whose keys/values are views of buffers with spare positions."""

    _kbuf: torch.Tensor | None = None
    _vbuf: torch.Tensor | None = None
    _view: torch.Tensor | None = None  # the keys view handed out last (to spot replacements)
    _start = _end = 0

    def _owned(self) -> bool:
        return self._kbuf is not None and self.keys is self._view

    def _adopt(self, like: torch.Tensor, extra: int) -> None:
        """Copy the current keys/values into fresh buffers with room for `extra` + HEADROOM."""
        length = self.keys.shape[-2] if self.keys is not None and self.keys.dim() == 4 else 0
        rows, heads, _, dim = like.shape
        shape = (rows, heads, length + extra + HEADROOM, dim)
        kbuf, vbuf = like.new_empty(shape), like.new_empty(shape)
        if length:
            kbuf[:, :, :length].copy_(self.keys)
            vbuf[:, :, :length].copy_(self.values)
        self._kbuf, self._vbuf, self._start, self._end = kbuf, vbuf, 0, length

    def _publish(self) -> None:
        self.keys = self._view = self._kbuf[:, :, self._start:self._end]
        self.values = self._vbuf[:, :, self._start:self._end]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        if not self._owned() or self._end + n > self._kbuf.shape[-2]:
            self._adopt(key_states, n)
        self._kbuf[:, :, self._end:self._end + n].copy_(key_states)
        self._vbuf[:, :, self._end:self._end + n].copy_(value_states)
        self._end += n
        self._publish()
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if not self._owned():
            super().batch_select_indices(indices)
            return
        self._kbuf, self._vbuf = self._kbuf[indices], self._vbuf[indices]
        self._publish()

    def crop_left(self, first: int) -> None:
        """Drop the first `first` positions of every row (no copy)."""
        if self._owned():
            self._start += first
            self._publish()
        else:
            self.keys = self.keys[:, :, first:]
            self.values = self.values[:, :, first:]

    def reset(self) -> None:
        self._kbuf = self._vbuf = self._view = None
        self._start = self._end = 0
        super().reset()


class HeadroomCache(DynamicCache):
    """A `DynamicCache` of `HeadroomLayer`s, one per layer, created lazily as transformers'."""

    def __init__(self) -> None:
        Cache.__init__(self, layer_class_to_replicate=HeadroomLayer)
