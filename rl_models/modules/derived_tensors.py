"""Tensors derived from parameters, reused between inference steps while nothing changed.

The policy computes only the tracks that are real in a batch (a song rarely fills all C
slots). Picking those tracks' weights out of a per-track parameter copies them: at the
report's size a few MB per step. During a song the real tracks do not change, so at inference
(no autograd) the picked copy is kept and reused until the tracks or the parameter change. The
shared encoder's weights in torch's LSTM layout are kept the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

import torch
from torch import nn

__all__ = ["derived", "select_tracks"]

_CACHE_ATTR = "_derived_tensor_cache"

T = TypeVar("T")


def derived(owner: nn.Module, key: Hashable, sources: Sequence[torch.Tensor],
            make: Callable[[], T], extra: Hashable = None) -> T:
    """``make()``, cached on ``owner`` under ``key`` when no gradient is needed.

    The cached value is reused only while every source keeps its storage and its in-place
    version counter (an optimizer step or a weight sync bumps it) and ``extra`` is equal.
    With autograd on, ``make()`` runs every time, so gradients flow as usual.
    """
    if torch.is_grad_enabled() and any(s.requires_grad for s in sources):
        return make()
    cache = owner.__dict__.setdefault(_CACHE_ATTR, {})
    stamp = (tuple((s._version, s.data_ptr()) for s in sources), extra)
    hit = cache.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    value = make()
    cache[key] = (stamp, value)
    return value


def select_tracks(owner: nn.Module, param: torch.Tensor, dim: int,
                  tracks: torch.Tensor) -> torch.Tensor:
    """``param.index_select(dim, tracks)``, cached on ``owner`` when no gradient is needed.

    Args:
        owner: The module that holds ``param`` (keeps the cache).
        param: A per-track parameter.
        dim: Its track axis.
        tracks: Track indices, int64 [shape=(A,)].
    """
    return derived(owner, ("tracks", id(param), dim), (param,),
                   lambda: param.index_select(dim, tracks), extra=tuple(tracks.tolist()))
