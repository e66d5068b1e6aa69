"""Blur-realism diagnostics: how far generated blur is from real blur, without pairs.

Two figures, both on *content-free* features of image crops (issue 15, part 4):

* :func:`two_sample_accuracy` -- a held-out two-sample test. A logistic regression is
  trained on half of the real and half of the generated crops' features and scored on
  the other halves: 0.5 means the two sets cannot be told apart by these features,
  1.0 means they always can. Given each crop's source photo, the halves are cut by
  photo, so that the classifier cannot win by recognising photos.
* :func:`kid` -- the kernel inception distance (Binkowski et al., 2018): the unbiased
  estimator of the squared MMD with the polynomial kernel ``(x.y / d + 1) ** 3``,
  averaged over random subsets. About 0 for identical distributions (it can be slightly
  negative), larger when they differ.

**No Inception network.** dbgan downloads nothing, so the features are not Inception's
but fixed, hand-made statistics of the degradation (:func:`realism_features`):

* brightness: an 8-bin histogram of the luma and each channel's mean and spread
  (exposure, tone, white balance, saturation);
* multi-scale high-pass statistics: at scales 1, 2 and 4 (2x2 average pooling in between),
  the luma minus its 3x3 binomial blur; per scale the log standard deviation, the
  kurtosis, the fraction of near-zero values, and the lag-1 autocorrelation across and
  down (blur, noise level and noise correlation from demosaicing or denoising);
* the chroma high-pass level (R-G, B-G), which colour noise raises;
* 16 fixed random 5x5 zero-mean filters (a random projection, seeded, the same for
  every call) on the scale-1 high pass, rectified and averaged.

So the figures measure *these* statistics only; "indistinguishable" here means
"indistinguishable by blur, noise, brightness and colour statistics", which is what a
blur generator should match, and is blind to scene content. Pure functions (torch);
deterministic under ``seed``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from dbgan.constants import LUMA

__all__ = ["realism_features", "two_sample_accuracy", "kid", "realism_report", "random_crops"]

_N_RANDOM = 16


def _as_batch(crops: Tensor | Sequence[Tensor]) -> Tensor:
    x = crops if isinstance(crops, Tensor) else torch.stack(list(crops))
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected N x C x H x W crops with 1 or 3 channels, got shape {tuple(x.shape)}")
    if x.shape[-1] < 16 or x.shape[-2] < 16:
        raise ValueError(f"crops must be at least 16 x 16 pixels, got {tuple(x.shape[-2:])}")
    x = x.float().clamp(0, 1)
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


def _binomial_highpass(y: Tensor) -> Tensor:
    k1 = torch.tensor([1.0, 2.0, 1.0], dtype=y.dtype) / 4
    k = (k1[:, None] * k1[None, :])[None, None]
    return y - F.conv2d(F.pad(y, (1, 1, 1, 1), mode="reflect"), k)


def _random_filters() -> Tensor:
    g = torch.Generator().manual_seed(20261130)
    w = torch.randn(_N_RANDOM, 1, 5, 5, generator=g)
    w = w - w.mean(dim=(2, 3), keepdim=True)
    return w / w.flatten(1).norm(dim=1)[:, None, None, None]


def _lag_corr(h: Tensor, dim: int) -> Tensor:
    a, b = h.narrow(dim, 1, h.shape[dim] - 1), h.narrow(dim, 0, h.shape[dim] - 1)
    a = a - a.mean(dim=(1, 2, 3), keepdim=True)
    b = b - b.mean(dim=(1, 2, 3), keepdim=True)
    return (a * b).mean(dim=(1, 2, 3)) / (a.pow(2).mean(dim=(1, 2, 3)).sqrt() * b.pow(2).mean(dim=(1, 2, 3)).sqrt() + 1e-12)


def realism_features(crops: Tensor | Sequence[Tensor]) -> Tensor:
    """``N x F`` float64 features of ``N x C x H x W`` crops in [0, 1] (see the module docstring)."""
    x = _as_batch(crops)
    n = x.shape[0]
    w = torch.tensor(LUMA, dtype=x.dtype)[None, :, None, None]
    y = (x * w).sum(1, keepdim=True)
    feats = [
        torch.stack([torch.histc(y[i], bins=8, min=0.0, max=1.0) for i in range(n)]) / y[0].numel(),
        x.mean(dim=(2, 3)),
        x.std(dim=(2, 3)),
    ]
    cur = y
    for _ in range(3):  # scales 1, 2, 4
        h = _binomial_highpass(cur)
        sd = h.std(dim=(1, 2, 3))
        hc = h - h.mean(dim=(1, 2, 3), keepdim=True)
        kurt = hc.pow(4).mean(dim=(1, 2, 3)) / (hc.pow(2).mean(dim=(1, 2, 3)).pow(2) + 1e-12)
        small = (h.abs() < 2.0 / 255).float().mean(dim=(1, 2, 3))
        feats += [torch.log(sd + 1e-4)[:, None], torch.log(kurt + 1e-6)[:, None], small[:, None],
                  _lag_corr(h, 3)[:, None], _lag_corr(h, 2)[:, None]]
        cur = F.avg_pool2d(cur, 2)
    chroma = torch.cat([x[:, 0:1] - x[:, 1:2], x[:, 2:3] - x[:, 1:2]], 0)
    ch = _binomial_highpass(chroma).std(dim=(1, 2, 3))
    feats.append(torch.log(torch.stack([ch[:n], ch[n:]], 1) + 1e-4))
    h1 = _binomial_highpass(y)
    r = F.conv2d(F.pad(h1, (2, 2, 2, 2), mode="reflect"), _random_filters().to(h1.dtype))
    feats.append(torch.log(F.relu(r).mean(dim=(2, 3)) + 1e-4))
    return torch.cat(feats, 1).double()


def _standardise(train: Tensor, *others: Tensor) -> list[Tensor]:
    mu, sd = train.mean(0, keepdim=True), train.std(0, keepdim=True).clamp_min(1e-8)
    return [(t - mu) / sd for t in (train, *others)]


def _fit_logistic(x: Tensor, y: Tensor, l2: float, iters: int) -> tuple[Tensor, Tensor]:
    """L2-regularised logistic regression by Newton's method (IRLS): exact, deterministic, no learning rate.

    Each class carries half of the total weight, whatever its count.
    """
    n1 = float(y.sum())
    sw = torch.where(y > 0.5, 0.5 / max(n1, 1.0), 0.5 / max(len(y) - n1, 1.0)).to(x.dtype)
    xb = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    wb = torch.zeros(xb.shape[1], dtype=x.dtype)
    reg = torch.full((xb.shape[1],), 2 * l2, dtype=x.dtype)
    reg[-1] = 1e-10  # the bias is not penalised
    for _ in range(iters):
        p = torch.sigmoid(xb @ wb)
        grad = xb.T @ (sw * (p - y)) + reg * wb
        hess = (xb * (sw * p * (1 - p))[:, None]).T @ xb + torch.diag(reg)
        step = torch.linalg.solve(hess, grad)
        wb = wb - step
        if float(step.abs().max()) < 1e-8:
            break
    return wb[:-1], wb[-1]


def _halves(n: int, groups: Tensor | None, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Indices of a train half and a test half: a random half of the rows, or of the groups when given."""
    if groups is None:
        perm = torch.randperm(n, generator=g)
        return perm[: n // 2], perm[n // 2 :]
    groups = torch.as_tensor(groups)
    if len(groups) != n:
        raise ValueError(f"{len(groups)} group labels for {n} rows")
    uniq = torch.unique(groups)
    if len(uniq) < 2:
        raise ValueError("a grouped two-sample test needs at least 2 groups per set")
    train_groups = uniq[torch.randperm(len(uniq), generator=g)[: len(uniq) // 2]]
    in_train = torch.isin(groups, train_groups)
    return torch.nonzero(in_train).flatten(), torch.nonzero(~in_train).flatten()


def two_sample_accuracy(real: Tensor, fake: Tensor, *, seed: int = 0, l2: float = 1e-2, iters: int = 30,
                        groups_real: Tensor | None = None, groups_fake: Tensor | None = None) -> float:
    """Held-out accuracy of a logistic regression telling ``real`` from ``fake`` feature rows.

    Each set is cut in half at random (``seed``); the classifier is trained on the first
    halves (features standardised on them, each class weighted equally) and scored on the
    second halves, each class weighted equally: 0.5 = indistinguishable.

    ``groups_real`` / ``groups_fake`` (one label per row, e.g. the source photo of each
    crop): cut each set by *groups* instead, so that no group is on both sides. Crops of
    the same photo share its content; without groups the classifier can learn to
    recognise the photos, not the blur.
    """
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"expected two N x F feature matrices, got {tuple(real.shape)} and {tuple(fake.shape)}")
    if min(len(real), len(fake)) < 4:
        raise ValueError(f"need at least 4 crops per set for a held-out test, got {len(real)} and {len(fake)}")
    g = torch.Generator().manual_seed(int(seed))
    r_tr, r_te = _halves(len(real), groups_real, g)
    f_tr, f_te = _halves(len(fake), groups_fake, g)
    r, f = real.double(), fake.double()
    xtr, xte = torch.cat([r[r_tr], f[f_tr]]), torch.cat([r[r_te], f[f_te]])
    ytr = torch.cat([torch.ones(len(r_tr)), torch.zeros(len(f_tr))]).double()
    xtr, xte = _standardise(xtr, xte)
    w, b = _fit_logistic(xtr, ytr, l2, iters)
    pred = (xte @ w + b) > 0
    acc_real = pred[: len(r_te)].double().mean()
    acc_fake = (~pred[len(r_te) :]).double().mean()
    return float((acc_real + acc_fake) / 2)


def _mmd2_unbiased(x: Tensor, y: Tensor) -> Tensor:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    return ((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
            + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
            - 2 * kxy.mean())


def kid(real: Tensor, fake: Tensor, *, subsets: int = 20, subset_size: int | None = None, seed: int = 0) -> tuple[float, float]:
    """KID between two feature sets: mean and standard deviation over ``subsets`` random subsets.

    Features are standardised with the pooled mean and standard deviation of both sets
    (the hand-made features have mixed units, unlike Inception's); ``subset_size``
    defaults to half the smaller set's size (capped at 1000), so that the subsets differ.
    """
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"expected two N x F feature matrices, got {tuple(real.shape)} and {tuple(fake.shape)}")
    m = min(len(real), len(fake))
    if m < 2:
        raise ValueError("KID needs at least 2 samples per set")
    s = max(2, min(m, subset_size or min(1000, m // 2)))
    pooled = torch.cat([real, fake]).double()
    mu, sd = pooled.mean(0, keepdim=True), pooled.std(0, keepdim=True).clamp_min(1e-8)
    x, y = (real.double() - mu) / sd, (fake.double() - mu) / sd
    g = torch.Generator().manual_seed(int(seed))
    vals = torch.stack([
        _mmd2_unbiased(x[torch.randperm(len(x), generator=g)[:s]], y[torch.randperm(len(y), generator=g)[:s]])
        for _ in range(subsets)
    ])
    return float(vals.mean()), float(vals.std()) if subsets > 1 else 0.0


def random_crops(images: Sequence[Tensor], size: int, per_image: int, *, seed: int = 0) -> Tensor:
    """``per_image`` random ``size x size`` crops of each ``C x H x W`` image (positions from ``seed``)."""
    g = torch.Generator().manual_seed(int(seed))
    out = []
    for img in images:
        h, w = img.shape[-2:]
        if h < size or w < size:
            raise ValueError(f"image of {h} x {w} is smaller than the crop size {size}")
        for _ in range(per_image):
            yy = int(torch.randint(0, h - size + 1, (1,), generator=g))
            xx = int(torch.randint(0, w - size + 1, (1,), generator=g))
            out.append(img[..., yy:yy + size, xx:xx + size])
    return torch.stack(out)


def realism_report(real_crops: Tensor | Sequence[Tensor], fake_crops: Tensor | Sequence[Tensor], *, seed: int = 0,
                   groups_real: Tensor | None = None, groups_fake: Tensor | None = None) -> dict[str, float]:
    """``{"accuracy", "kid", "kid_std", "n_real", "n_fake"}`` for two sets of crops (see the module docstring).

    ``groups_real`` / ``groups_fake``: the source photo of each crop, for a grouped
    two-sample test (:func:`two_sample_accuracy`).
    """
    fr, ff = realism_features(real_crops), realism_features(fake_crops)
    acc = two_sample_accuracy(fr, ff, seed=seed, groups_real=groups_real, groups_fake=groups_fake)
    k, ks = kid(fr, ff, seed=seed)
    if not math.isfinite(k):
        raise ValueError("KID is not finite (are the crops finite?)")
    return {"accuracy": acc, "kid": k, "kid_std": ks, "n_real": len(fr), "n_fake": len(ff)}
