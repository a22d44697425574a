"""Per-track parameters restricted to the tracks a batch uses, reused between inference steps.

The policy computes only the tracks that are real in a batch (a song rarely fills all C
slots). Picking those tracks' weights out of a per-track parameter copies them: at the
report's size a few MB per step. During a song the real tracks do not change, so at inference
(no autograd) the picked copy is kept and reused until the tracks or the parameter change.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["select_tracks"]

_CACHE_ATTR = "_track_selection_cache"


def select_tracks(owner: nn.Module, param: torch.Tensor, dim: int,
                  tracks: torch.Tensor) -> torch.Tensor:
    """``param.index_select(dim, tracks)``, cached on ``owner`` when no gradient is needed.

    The cached copy is reused only for the same parameter (its storage and in-place version
    counter unchanged: an optimizer step or a weight sync bumps the counter) and the same
    tracks.

    Args:
        owner: The module that holds ``param`` (keeps the cache).
        param: A per-track parameter.
        dim: Its track axis.
        tracks: Track indices, int64 [shape=(A,)].
    """
    if torch.is_grad_enabled() and param.requires_grad:
        return param.index_select(dim, tracks)
    cache = owner.__dict__.setdefault(_CACHE_ATTR, {})
    key = (id(param), dim)
    hit = cache.get(key)
    if hit is not None:
        cached_tracks, version, pointer, selected = hit
        if (version == param._version and pointer == param.data_ptr()
                and cached_tracks.shape == tracks.shape and torch.equal(cached_tracks, tracks)):
            return selected
    selected = param.index_select(dim, tracks)
    cache[key] = (tracks.clone(), param._version, param.data_ptr(), selected)
    return selected
