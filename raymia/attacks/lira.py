"""LiRA (Carlini et al. 2022): the target's true-class margin against Gaussian fits of the
margins reference models give it.

Offline: K models that never trained on the sample (OUT), a one-sided test. Online: models
trained on random halves of a population holding the scored samples, each sample IN for about
half of them, a likelihood ratio of the IN and OUT fits. Both query augmented copies of each
sample (:func:`query_views`: the image itself, shifted by one pixel each way, and mirrored where
the data set allows it) and fit one Gaussian per view, averaging the per-view scores, as the
reference code does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

import numpy as np
import torch

from raymia.attacks.registry import Attack, Target, register
from raymia.privacy.logits import ArrayLike, chunked, margin, stable_log_softmax
from raymia.registry import Setting

SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))

__all__ = [
    "LIRA_PER_SAMPLE_STD_MIN_K",
    "background_of",
    "lira_offline_scores",
    "lira_online_scores",
    "query_signal",
    "QueryViews",
    "query_views",
]

# Below this many reference models a per-sample standard deviation is too noisy to estimate;
# Carlini et al. (2022) then fix one variance for all samples.
LIRA_PER_SAMPLE_STD_MIN_K = 16

# A zero spread (identical reference outputs) would divide by zero in the Gaussian fit.
_MIN_STD = 1e-12


def _pooled_std(values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Return one standard deviation per view (last axis) for every sample of values (K, N, A).

    Per sample (ddof 1) when at least :data:`LIRA_PER_SAMPLE_STD_MIN_K` models count for it;
    below that the pooled within-sample one, sqrt(sum (v_kn - mu_n)^2 / sum (K_n - 1)), shared
    by all samples (Carlini's fixed variance), or with one model per sample the standard
    deviation of all values. ``mask`` (K, N) selects the models that count for each sample.
    """
    if mask is None:
        mask = np.ones(values.shape[:2], dtype=bool)
    w = np.broadcast_to(mask[..., None], values.shape)
    count = w.sum(axis=0)  # (N, A)
    mean = np.where(w, values, 0.0).sum(axis=0) / np.maximum(count, 1)
    sq = np.where(w, (values - mean) ** 2, 0.0)
    if count.min() >= LIRA_PER_SAMPLE_STD_MIN_K:
        std = np.sqrt(sq.sum(axis=0) / (count - 1))
    elif count.max() >= 2:
        dof = np.maximum(count - 1, 0).sum(axis=0)  # (A,)
        std = np.broadcast_to(np.sqrt(sq.sum(axis=(0, 1)) / np.maximum(dof, 1)), mean.shape)
    else:
        std = np.broadcast_to(np.nanstd(np.where(w, values, np.nan), axis=(0, 1)), mean.shape)
    return np.maximum(std, _MIN_STD)


def _as_views(
    target: np.ndarray, reference: np.ndarray, name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Return target (N, A) and reference (K, N, A), from (N,)/(K, N) or (N, A)/(K, N, A)."""
    if target.ndim == 1 and reference.ndim == 2:
        target, reference = target[:, None], reference[..., None]
    if (
        target.ndim != 2
        or reference.ndim != 3
        or reference.shape[1:] != target.shape
        or reference.shape[0] < 1
    ):
        raise ValueError(
            f"{name}: expected target_phi (N,) and reference_phi (K, N) with K >= 1 (or (N, A) "
            f"and (K, N, A) for A query views), got shapes {target.shape} and {reference.shape}"
        )
    return target, reference


def _log_ndtr(z: np.ndarray) -> np.ndarray:
    try:
        from scipy.special import log_ndtr  # the same stable function scipy.stats uses

        return np.asarray(log_ndtr(z), dtype=np.float64)
    except ImportError:  # scipy ships with scikit-learn, but torch has the same function
        return torch.special.log_ndtr(torch.from_numpy(np.asarray(z, np.float64))).numpy()


def lira_offline_scores(target_phi: ArrayLike, reference_phi: ArrayLike) -> np.ndarray:
    """Return offline LiRA's score per sample: log Phi((phi - mu_out) / sigma_out), averaged
    over query views.

    ``target_phi`` (N,) is the target model's :func:`raymia.privacy.logits.true_class_margin`,
    ``reference_phi`` (K, N) that of K reference models never trained on these samples (OUT
    models); with A query views (:func:`query_views`) they are (N, A) and (K, N, A), one fit
    per view. mu_out is each sample's mean over the K models. sigma_out is per sample (ddof 1)
    when K >= 16; below that one standard deviation is shared by all samples (Carlini's fixed
    variance): the pooled within-sample one, sqrt(sum (phi_kn - mu_n)^2 / (N (K - 1))), or
    with K = 1 the standard deviation of all N reference values. A sample whose target phi
    lies far above what models without it produce scores near 0 (member); far below, very
    negative.

    Returns:
        float64 log-probabilities, shape (N,), <= 0.
    """
    target, ref = _as_views(
        np.asarray(target_phi, dtype=np.float64),
        np.asarray(reference_phi, dtype=np.float64),
        "lira_offline_scores",
    )
    mean = ref.mean(axis=0)
    std = _pooled_std(ref)
    return _log_ndtr((target - mean) / std).mean(axis=1)


def lira_online_scores(
    target_phi: ArrayLike, reference_phi: ArrayLike, is_in: ArrayLike
) -> np.ndarray:
    """Return online LiRA's score per sample: the log-likelihood ratio of the target's margin
    under the IN and the OUT Gaussian, averaged over query views.

    ``target_phi`` (N,) or (N, A); ``reference_phi`` (K, N) or (K, N, A) from K reference
    models, ``is_in`` (K, N) whether model k trained on sample n; every sample needs at least
    one IN and one OUT model. Means are per sample; the standard deviations per sample when
    each side has at least :data:`LIRA_PER_SAMPLE_STD_MIN_K` models, otherwise pooled within
    samples, one per side and view (Carlini's fixed variance for small K).

    Returns:
        float64 scores, shape (N,): log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out).
    """
    target, ref = _as_views(
        np.asarray(target_phi, dtype=np.float64),
        np.asarray(reference_phi, dtype=np.float64),
        "lira_online_scores",
    )
    inside = np.asarray(is_in, dtype=bool)
    if inside.shape != ref.shape[:2]:
        raise ValueError(f"is_in must have shape {ref.shape[:2]}, got {inside.shape}")
    if not (inside.any(axis=0).all() and (~inside).any(axis=0).all()):
        raise ValueError("online LiRA needs at least one IN and one OUT model for every sample")

    def log_density(mask: np.ndarray) -> np.ndarray:
        w = mask[..., None]
        mean = np.where(w, ref, 0.0).sum(axis=0) / w.sum(axis=0)
        std = _pooled_std(ref, mask)
        z = (target - mean) / std
        return -0.5 * z**2 - np.log(std)

    return (log_density(inside) - log_density(~inside)).mean(axis=1)


class QueryViews(Sequence[torch.Tensor]):
    """The query views of a batch of images, each built when it is read (index or iterate):
    one view's copy of the images is alive at a time, not all of them (ten at 32x32x3 with
    mirrors: 2.4 GB for 19,700 images)."""

    def __init__(
        self,
        x: torch.Tensor,
        shifts: tuple[tuple[int, int], ...],
        flip: bool,
        background: torch.Tensor | None,
    ):
        self._x, self._shifts, self._flip, self._background = x, shifts, flip, background

    def __len__(self) -> int:
        return len(self._shifts) * (2 if self._flip else 1)

    @overload
    def __getitem__(self, i: int) -> torch.Tensor: ...
    @overload
    def __getitem__(self, i: slice) -> list[torch.Tensor]: ...
    def __getitem__(self, i: int | slice) -> torch.Tensor | list[torch.Tensor]:
        if isinstance(i, slice):
            return [self[j] for j in range(len(self))[i]]
        if not -len(self) <= i < len(self):
            raise IndexError(f"query view {i} of {len(self)}")
        i %= len(self)
        dy, dx = self._shifts[i % len(self._shifts)]
        view = _shifted(self._x, dy, dx, self._background)
        return torch.flip(view, dims=(3,)) if i >= len(self._shifts) else view


def _shifted(x: torch.Tensor, dy: int, dx: int, background: torch.Tensor | None) -> torch.Tensor:
    """Return x shifted by (dy, dx) pixels, the border filled with `background`."""
    if not dy and not dx:
        return x
    if background is None:
        raise ValueError("a shifted query view needs the background its border is filled with")
    shifted = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    if dy:
        rows = slice(0, dy) if dy > 0 else slice(x.shape[2] + dy, None)
        shifted[:, :, rows, :] = background
    if dx:
        cols = slice(0, dx) if dx > 0 else slice(x.shape[3] + dx, None)
        shifted[:, :, :, cols] = background
    return shifted


def query_views(
    x: torch.Tensor, flip: bool, augmented: bool = True, background: torch.Tensor | None = None
) -> QueryViews:
    """Return the query views of a batch of images (N, C, H, W), built one at a time as they
    are read (:class:`QueryViews`): the images themselves and, when ``augmented``, their
    copies shifted by one pixel up, down, left and right (the border filled with the images'
    background: ``background``, default :func:`background_of` x), and where ``flip`` (the data
    set's mirror images keep their class: not digits or MNIST) the mirror image of each."""
    if not augmented:
        return QueryViews(x, ((0, 0),), False, None)
    background = background_of(x) if background is None else background
    return QueryViews(x, SHIFTS, flip, background)


def background_of(x: torch.Tensor) -> torch.Tensor:
    """Return the background shifted views fill their border with: the per-channel minimum
    over the images x (N, C, H, W), shape (1, C, 1, 1); zeros for no images."""
    return x.amin(dim=(0, 2, 3), keepdim=True) if x.numel() else x.new_zeros(1)


def query_signal(
    model: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    views: Sequence[torch.Tensor] | None = None,
    *,
    log_probability: bool = False,
) -> np.ndarray:
    """Return the model's signal on every query view, shape (N, A): the true-class margin
    phi (LiRA) or, with ``log_probability``, log p(y|x) (RMIA), both in float64. ``views``
    defaults to the plain images (A = 1)."""

    def chunk(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        if log_probability:
            log_p, _ = stable_log_softmax(logits)
            return {"s": log_p.gather(1, labels.view(-1, 1)).squeeze(1)}
        return {"s": margin(logits, labels)}

    views = [x] if views is None else views
    return np.stack([chunked(model, v, y, None, chunk)["s"] for v in views], axis=1)


def target_views(
    target: Target, x: torch.Tensor | None = None, background: torch.Tensor | None = None
) -> QueryViews:
    """Return the query views of `x` (default the target's samples) as the trial's options and
    the data set ask (``augmented_queries``; mirror images only where the data set allows),
    the border filled with `background` (default :func:`background_of` x)."""
    x = target.x if x is None else x
    augmented = bool(getattr(target.options, "augmented_queries", 0))
    return query_views(x, target.flip, augmented, background)


def _scores(target: Target) -> np.ndarray:
    views = target_views(target)
    target_phi = query_signal(target.model, target.x, target.y, views)
    reference_phi = np.stack(
        [query_signal(m, target.x, target.y, views) for m in target.reference_models]
    )
    return lira_offline_scores(target_phi, reference_phi)


def _online_scores(target: Target) -> np.ndarray:
    online = target.online
    if online is None or online.is_in is None:
        raise ValueError("online LiRA needs the trial's online reference models")
    views = target_views(target)
    target_phi = query_signal(target.model, target.x, target.y, views)
    reference_phi = np.stack([query_signal(m, target.x, target.y, views) for m in online.models])
    return lira_online_scores(target_phi, reference_phi, online.is_in)


register(
    Attack(
        name="lira",
        summary="offline LiRA: the margin's Gaussian likelihood under reference models",
        citation="Carlini et al. 2022",
        rank=60,
        score=_scores,
        options={"lira_reference_models": Setting(int, "LiRA's K (0 = off)", le=256)},
        reference_models="lira_reference_models",
    )
)

register(
    Attack(
        name="lira_online",
        summary="online LiRA: likelihood ratio of the margin under IN and OUT Gaussian fits",
        citation="Carlini et al. 2022",
        rank=61,
        score=_online_scores,
        options={
            "online_models": Setting(
                int,
                "online reference models, trained on halves of the scored samples and "
                "reference data, for `lira_online` and `rmia_online` (0 = off, else >= 2)",
                le=256,
            ),
            "augmented_queries": Setting(
                int,
                "query shifted (and, where allowed, mirrored) copies for the reference-model "
                "attacks (1 = on)",
                default=1,
                le=1,
            ),
        },
        reference_models="online_models",
        reference_kind="online",
    )
)
