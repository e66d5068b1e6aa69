"""Reflect padding of any width (shared by the torch and the CPU FFT blur paths)."""

from __future__ import annotations

import torch


def _reflect_index(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Indices into ``range(n)`` for reflect padding (``d c b | a b c d | c b a``) of any width."""
    idx = torch.arange(-before, n + after, device=device)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = torch.remainder(idx, period)
    return torch.where(idx >= n, period - idx, idx)


def reflect_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Reflect-pad the last two axes; unlike ``F.pad`` the padding may exceed the image size."""
    h, w = x.shape[-2:]
    if top or bottom:
        x = x.index_select(-2, _reflect_index(h, top, bottom, x.device))
    if left or right:
        x = x.index_select(-1, _reflect_index(w, left, right, x.device))
    return x
