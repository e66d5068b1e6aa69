"""Tiling maths: pad to a size multiple, tile starts, raised-cosine blend weights, tile plans."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from dbgan.infer.common import InferenceError

# --------------------------------------------------------------------------- padding / tiles


def pad_image(x: Tensor, multiple: int) -> Tensor:
    """Pad ``N x C x H x W`` at the bottom/right to a multiple (reflect, then replicate), as the nets do."""
    from dbgan.nets.common import pad_to_multiple

    return pad_to_multiple(x, multiple)[0]


def tile_starts(size: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Start offsets of tiles of length ``tile`` covering ``[0, size)`` with at least ``overlap`` shared pixels.

    Tiles step ``tile - overlap`` (starts rounded down to multiples of ``align``);
    the last tile ends exactly at ``size``. ``tile >= size`` gives ``[0]``.
    """
    if tile >= size:
        return [0]
    step = tile - overlap
    if step < 1:
        raise InferenceError(f"overlap ({overlap}) must be smaller than the tile ({tile})")
    starts = []
    pos = 0
    last = size - tile
    while pos < last:
        starts.append(pos - pos % align)
        pos += step
    if last % align:
        raise InferenceError(f"tile end {last} is not a multiple of {align}")
    starts.append(last)
    return sorted(set(starts))


def _ramp(n: int, device: Any = None) -> Tensor:
    """Raised-cosine ramp of ``n`` values strictly inside (0, 1), rising."""
    i = torch.arange(n, dtype=torch.float64, device=device)
    return 0.5 - 0.5 * torch.cos(math.pi * (i + 0.5) / n)


def blend_weights(starts: Sequence[int], tile: int, size: int) -> list[Tensor]:
    """Per-tile 1-D blending weights along one axis, normalised to sum to 1 at every position.

    Each tile's weight is 1, falling as a raised cosine across the region it shares
    with its neighbour (the whole shared region, which is ``overlap`` or more for
    the last tile) and staying 1 at the image border. All weights are > 0, so the
    normalisation is defined everywhere and a pixel where all tiles agree gets
    exactly their value (up to float rounding).
    """
    raw = []
    for k, s in enumerate(starts):
        w = torch.ones(min(tile, size), dtype=torch.float64)
        if k > 0:
            shared = starts[k - 1] + tile - s
            if shared > 0:
                w[:shared] = torch.minimum(w[:shared], _ramp(shared))
        if k + 1 < len(starts):
            shared = s + tile - starts[k + 1]
            if shared > 0:
                w[-shared:] = torch.minimum(w[-shared:], _ramp(shared).flip(0))
        raw.append(w)
    total = torch.zeros(size, dtype=torch.float64)
    for s, w in zip(starts, raw):
        total[s : s + w.numel()] += w
    return [(w / total[s : s + w.numel()]).to(torch.float32) for s, w in zip(starts, raw)]


@dataclass
class TilePlan:
    """Where the tiles of one padded image go (``single``: one tile = the untiled path)."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    ys: list[int]
    xs: list[int]

    @property
    def single(self) -> bool:
        return len(self.ys) == 1 and len(self.xs) == 1

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)


def _round_down(v: int, m: int) -> int:
    return max(m, v // m * m)


def _round_up(v: int, m: int) -> int:
    return -(-v // m) * m


def _auto_axis(size: int, max_tile: int, overlap: int, multiple: int) -> int:
    """Tile length (a multiple of ``multiple``, <= ``max_tile``) for covering ``size`` cheaply.

    ``n`` tiles of length ``t = round_up(ceil((size + (n-1) * overlap) / n), multiple)``
    are scored ``n * (t + multiple / 2)``: the computed length plus a per-tile
    penalty, because small tiles starve a net with a large ``size_multiple`` (the
    U-Net's innermost levels) of context and run less efficiently. The best score
    wins, fewer tiles on ties.
    """
    if size <= max_tile:
        return size
    best: Optional[tuple[float, int, int]] = None
    n = 2
    while n <= size:
        t = max(multiple, _round_up(-(-(size + (n - 1) * overlap) // n), multiple))
        if t <= max_tile or t == multiple:
            cand = (n * (t + multiple / 2), n, t)
            if best is None or cand < best:
                best = cand
            if n > best[1] + 6 or t == multiple:
                break
        n += 1
    return best[2] if best is not None else max(max_tile, multiple)
