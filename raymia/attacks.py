"""Per-sample membership scores from black-box attacks: higher score = more likely a member.

Every score function takes a model and a labelled set (x: (N, C, H, W) float, y: (N,) integer
labels, tensors or arrays) and returns one float64 score per sample, in the convention of
:mod:`raymia.metrics`. The model runs in eval mode without gradients (each submodule's previous
mode is restored afterwards), on its own device; x and y move there chunk by chunk, so the
evaluated set never has to fit on the device at once.

Attacks (DESIGN.md, "Attacks"):

- loss threshold (Yeom et al. 2018): score = -cross-entropy; :func:`yeom_threshold` is the
  attacker's threshold (the mean training loss);
- Merlin (Jayaraman et al. 2021): the fraction of T Gaussian-noised copies of a sample whose
  loss is higher than the clean loss;
- confidence (the true-class probability p_y, reported as its logit phi = log p_y - log(1 - p_y):
  monotone in p_y, so every ROC metric is that of p_y, but never rounded to 1), entropy
  (-entropy of the prediction) and modified entropy (Song & Mittal 2021: -Mentr);
- LiRA offline (Carlini et al. 2022): :func:`scaled_logit` per model, K reference models from
  :func:`train_reference_models`, scores from :func:`lira_offline_scores`.

Post-processing of the logits runs in float64 (on any device but MPS, which lacks it): members
of a memorizing model have losses near 1e-8, which float32 would round to exact ties. Even
float64's log_softmax rounds log p_y to exactly 0 beyond a logit margin of about 37, so the
scores come from a log-softmax that keeps those differences (:func:`_stable_log_softmax`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._torch import device_dtype, eval_mode
from .config import AttackOptions, TrialConfig
from .data import DatasetInfo, Split, check_reference_size
from .train import train_model

__all__ = [
    "ATTACKS",
    "confidence_scores",
    "entropy_scores",
    "lira_offline_scores",
    "loss_scores",
    "merlin_scores",
    "modified_entropy_scores",
    "per_sample_loss",
    "reference_rows",
    "scaled_logit",
    "score_all",
    "train_reference_models",
    "yeom_score_threshold",
    "yeom_threshold",
]

ArrayLike = np.ndarray | torch.Tensor

# The attacks score_all returns, in its key order.
ATTACKS = ("loss", "merlin", "confidence", "entropy", "modified_entropy")

# Floor for every log taken of a probability: no probability representable in float64 has a log
# below -745, so this only replaces -inf (from infinite logits) and keeps 0 * log 0 from NaN.
_LOG_FLOOR = -1e4

# Below this many reference models a per-sample standard deviation is too noisy to estimate;
# Carlini et al. (2022) then fix one variance for all samples.
LIRA_PER_SAMPLE_STD_MIN_K = 16

# A zero spread (identical reference outputs) would divide by zero in the Gaussian fit.
_MIN_STD = 1e-12

# Reference model i trains with seed_offset 100 + 2 i: clear of the target (0) and its
# distillation teacher (1), and the stride 2 keeps each model's own teacher (offset + 1) from
# sharing its seed with the next reference model.
_REFERENCE_SEED_OFFSET = 100
_REFERENCE_SEED_STRIDE = 2


# --------------------------------------------------------------------------------------------
# Plumbing
# --------------------------------------------------------------------------------------------


def _check_xy(x: ArrayLike, y: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Return x and y as (still host-side) tensors, y flat, after checking they match."""
    xt = torch.as_tensor(x)
    yt = torch.as_tensor(y).reshape(-1)
    if xt.shape[0] != yt.shape[0]:
        raise ValueError(f"x has {xt.shape[0]} samples but y has {yt.shape[0]} labels")
    return xt, yt


def _wide(t: torch.Tensor) -> torch.Tensor:
    """Return t in float64 where the device supports it (MPS does not: float32 there)."""
    return t.to(torch.float32 if t.device.type == "mps" else torch.float64)


def _chunked(
    model: nn.Module,
    x: ArrayLike,
    y: ArrayLike,
    batch_size: int,
    fn: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]],
) -> dict[str, np.ndarray]:
    """Run the model over (x, y) in chunks and return fn(logits, y)'s columns as float64 arrays.

    fn maps one chunk's logits (float64 where supported) and labels to per-sample tensors.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device, dtype = device_dtype(model)
    xt, yt = _check_xy(x, y)
    parts: dict[str, list[torch.Tensor]] = {}
    with eval_mode(model), torch.no_grad():
        for start in range(0, xt.shape[0], batch_size):
            xb = xt[start : start + batch_size].to(device=device, dtype=dtype)
            yb = yt[start : start + batch_size].to(device=device, dtype=torch.long)
            for key, value in fn(_wide(model(xb)), yb).items():
                parts.setdefault(key, []).append(value.detach().cpu())
    if not parts:  # empty input: learn the keys from a zero-sample call on the host
        keys = fn(torch.zeros(0, 1, dtype=torch.float64), torch.zeros(0, dtype=torch.long))
        return {key: np.zeros(0, dtype=np.float64) for key in keys}
    return {key: torch.cat(v).to(torch.float64).numpy() for key, v in parts.items()}


# --------------------------------------------------------------------------------------------
# Scores from one forward pass
# --------------------------------------------------------------------------------------------


def _stable_log_softmax(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return log p_i and log(1 - p_i) for every class, both accurate where p_top rounds to 1.

    With s = sum_{i != top} exp(z_i - z_top), log p_i = (z_i - z_top) - log1p(s): unlike
    log_softmax, which rounds log(1 + s) to 0 once the margin passes about 37, log1p keeps s,
    so log p_top = -log1p(s) stays nonzero and ordered. Only the arg-max class can have
    p > 1/2; for the others log(1 - p_i) = log1p(-p_i) is accurate, for the arg-max
    1 - p_top = s / (1 + s) is taken from log s = logsumexp_{i != top}(z_i - z_top).
    """
    top = logits.argmax(dim=1, keepdim=True)
    shifted = logits - logits.gather(1, top)  # <= 0, 0 at the arg-max
    log_rest = torch.logsumexp(shifted.scatter(1, top, float("-inf")), dim=1, keepdim=True)
    log_norm = torch.log1p(log_rest.exp())  # log(1 + s); s <= C - 1, so exp cannot overflow
    log_p = shifted - log_norm
    log_1m_p = torch.log1p(-log_p.exp()).scatter(1, top, log_rest - log_norm)
    return log_p, log_1m_p


def _loss(logits: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Return the per-sample cross-entropy, -log p_y, from the stable log-softmax."""
    log_p, _ = _stable_log_softmax(logits)
    return {"loss": -log_p.gather(1, y.view(-1, 1)).squeeze(1).clamp(min=_LOG_FLOOR)}


def _probability_scores(logits: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Return per-sample loss and the confidence, entropy and modified-entropy scores.

    All come from :func:`_stable_log_softmax`, so samples far past p_y = 1 in float64 keep
    distinct, ordered scores; "confidence" is the scaled logit phi (see :func:`_scaled_logit`).
    """
    log_p, log_1m_p = (t.clamp(min=_LOG_FLOOR) for t in _stable_log_softmax(logits))
    p = log_p.exp()
    is_true = F.one_hot(y, logits.shape[1]).bool()
    log_p_true = log_p.gather(1, y.view(-1, 1)).squeeze(1)
    one_minus_p_true = log_1m_p.gather(1, y.view(-1, 1)).squeeze(1).exp()
    # Mentr(p, y) = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i)
    mentr = -one_minus_p_true * log_p_true - torch.where(is_true, 0.0, p * log_1m_p).sum(dim=1)
    return {
        "loss": -log_p_true,
        "confidence": _scaled_logit(logits, y)["phi"],
        "entropy": (p * log_p).sum(dim=1),  # -entropy: a confident prediction scores high
        "modified_entropy": -mentr,
    }


def per_sample_loss(
    model: nn.Module, x: ArrayLike, y: ArrayLike, batch_size: int = 1024
) -> np.ndarray:
    """Return the cross-entropy loss of each sample (float64, shape (N,), >= 0).

    Computed as -log p_y from a stable log-softmax: it stays > 0 and ordered far past the
    logit margin (about 37) where float64's log_softmax rounds it to exactly 0.
    """
    return _chunked(model, x, y, batch_size, _loss)["loss"]


def loss_scores(model: nn.Module, x: ArrayLike, y: ArrayLike, batch_size: int = 1024) -> np.ndarray:
    """Return the loss-threshold attack's scores, -loss per sample (Yeom et al. 2018).

    Members were fit, so their loss is lower and their score higher.
    """
    return -per_sample_loss(model, x, y, batch_size)


def confidence_scores(
    model: nn.Module, x: ArrayLike, y: ArrayLike, batch_size: int = 1024
) -> np.ndarray:
    """Return the true-class confidence per sample as its logit, phi = log p_y - log(1 - p_y).

    phi = z_y - logsumexp_{i != y} z_i is strictly increasing in the softmax probability p_y
    (p_y = sigmoid(phi)), so every ROC metric equals that of p_y, but unlike p_y it does not
    round to 1 for confident samples, which would tie them. Float64, any real value.
    """
    return _chunked(model, x, y, batch_size, _probability_scores)["confidence"]


def entropy_scores(
    model: nn.Module, x: ArrayLike, y: ArrayLike, batch_size: int = 1024
) -> np.ndarray:
    """Return minus the entropy of each prediction (in [-log C, 0]; confident = member).

    Taken from stable log-probabilities, so confident predictions stay ordered.
    """
    return _chunked(model, x, y, batch_size, _probability_scores)["entropy"]


def modified_entropy_scores(
    model: nn.Module, x: ArrayLike, y: ArrayLike, batch_size: int = 1024
) -> np.ndarray:
    """Return -Mentr per sample (Song & Mittal 2021), <= 0.

    Mentr(p, y) = -(1 - p_y) log p_y - sum_{i != y} p_i log(1 - p_i): unlike entropy it uses the
    label, so a confidently wrong prediction scores low, not high. 1 - p_y and log p_y come
    from the logits directly, so confident predictions stay ordered.
    """
    return _chunked(model, x, y, batch_size, _probability_scores)["modified_entropy"]


def yeom_threshold(train_losses: ArrayLike) -> float:
    """Return the loss threshold of Yeom et al.: the mean training loss the attacker knows.

    The attack predicts member when loss <= threshold; on scores (-loss) that is score >=
    :func:`yeom_score_threshold`.
    """
    losses = np.asarray(train_losses, dtype=np.float64)
    if losses.size == 0:
        raise ValueError("yeom_threshold needs at least one training loss")
    return float(losses.mean())


def yeom_score_threshold(train_losses: ArrayLike) -> float:
    """Return -yeom_threshold(train_losses): the score threshold for
    :func:`raymia.metrics.advantage_at_threshold` on :func:`loss_scores`."""
    return -yeom_threshold(train_losses)


# --------------------------------------------------------------------------------------------
# Merlin
# --------------------------------------------------------------------------------------------


def merlin_scores(
    model: nn.Module,
    x: ArrayLike,
    y: ArrayLike,
    neighbours: int,
    sigma: float,
    seed: int,
    batch_size: int = 4096,
) -> np.ndarray:
    """Return Merlin's score per sample (Jayaraman et al. 2021), in [0, 1].

    Each sample gets ``neighbours`` copies with N(0, sigma^2) noise on every input value; the
    score is the fraction of copies whose loss is strictly higher than the clean loss (members
    sit nearer a loss minimum, so noise raises their loss more often).

    ``batch_size`` bounds the rows of one forward pass: a chunk of batch_size // (neighbours + 1)
    samples goes through together with all its noisy copies. The noise comes from a torch
    Generator on the model's device seeded with ``seed``, so the scores are deterministic for a
    given seed, batch_size and device.
    """
    if neighbours < 1:
        raise ValueError(f"neighbours must be >= 1, got {neighbours}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    device, dtype = device_dtype(model)
    generator = torch.Generator(device=device).manual_seed(int(seed))
    copies = neighbours + 1  # the clean sample rides in the same pass, see below
    per_chunk = max(1, batch_size // copies)

    def score(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        b = xb.shape[0]
        noise = torch.randn(
            (b, neighbours, *xb.shape[1:]), generator=generator, device=device, dtype=dtype
        )
        # Clean and noisy copies share one forward pass: a kernel can round differently at
        # another batch size, and a one-ulp drift would count as a loss increase.
        batch = torch.cat([xb.unsqueeze(1), xb.unsqueeze(1) + sigma * noise], dim=1)
        logits = _wide(model(batch.flatten(0, 1)))
        # The stable loss: past a margin of about 37, cross_entropy rounds clean and noisy
        # losses alike to 0, and a rise would go uncounted.
        loss = _loss(logits, yb.repeat_interleave(copies))["loss"]
        loss = loss.view(b, copies)
        return (loss[:, 1:] > loss[:, :1]).to(torch.float64).mean(dim=1)

    xt, yt = _check_xy(x, y)
    parts = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, xt.shape[0], per_chunk):
            xb = xt[start : start + per_chunk].to(device=device, dtype=dtype)
            yb = yt[start : start + per_chunk].to(device=device, dtype=torch.long)
            parts.append(score(xb, yb).cpu())
    if not parts:
        return np.zeros(0, dtype=np.float64)
    return torch.cat(parts).to(torch.float64).numpy()


# --------------------------------------------------------------------------------------------
# All output-based attacks at once
# --------------------------------------------------------------------------------------------


def score_all(
    model: nn.Module,
    x: ArrayLike,
    y: ArrayLike,
    options: AttackOptions,
    seed: int,
    batch_size: int = 1024,
) -> dict[str, np.ndarray]:
    """Return every output-based attack's scores, keyed as in :data:`ATTACKS`.

    One forward pass gives loss, confidence, entropy and modified entropy ("loss" holds the
    score -loss); Merlin adds its own noisy passes (options.merlin_neighbours copies at
    options.merlin_sigma, noise seeded by ``seed``). Each value is a float64 array of shape (N,).
    """
    found = _chunked(model, x, y, batch_size, _probability_scores)
    merlin = merlin_scores(
        model,
        x,
        y,
        options.merlin_neighbours,
        options.merlin_sigma,
        seed,
        batch_size=4 * batch_size,
    )
    scores = {
        "loss": -found["loss"],
        "merlin": merlin,
        "confidence": found["confidence"],
        "entropy": found["entropy"],
        "modified_entropy": found["modified_entropy"],
    }
    return {key: scores[key] for key in ATTACKS}


# --------------------------------------------------------------------------------------------
# LiRA offline
# --------------------------------------------------------------------------------------------


def _scaled_logit(logits: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    # log p_y - log sum_{i != y} p_i: the softmax normalizer cancels, leaving
    # z_y - logsumexp_{i != y} z_i, finite for finite logits even where p_y rounds to 1.
    others = logits.scatter(1, y.view(-1, 1), float("-inf"))
    return {"phi": logits.gather(1, y.view(-1, 1)).squeeze(1) - torch.logsumexp(others, dim=1)}


def scaled_logit(
    model: nn.Module, x: ArrayLike, y: ArrayLike, batch_size: int = 1024
) -> np.ndarray:
    """Return LiRA's statistic phi = log p_y - log(sum_{i != y} p_i) per sample (float64).

    phi is the logit of the true-class confidence, which is close to Gaussian across models
    (Carlini et al. 2022); members have larger phi.
    """
    return _chunked(model, x, y, batch_size, _scaled_logit)["phi"]


def lira_offline_scores(target_phi: ArrayLike, reference_phi: ArrayLike) -> np.ndarray:
    """Return offline LiRA's score per sample: log Phi((phi - mu_out) / sigma_out).

    ``target_phi`` (N,) is :func:`scaled_logit` of the target model, ``reference_phi`` (K, N)
    that of K reference models never trained on these samples (OUT models). mu_out is each
    sample's mean over the K models. sigma_out is per sample (ddof 1) when K >= 16; below that
    one standard deviation is shared by all samples (Carlini's fixed variance): the pooled
    within-sample one, sqrt(sum (phi_kn - mu_n)^2 / (N (K - 1))), or with K = 1 the standard
    deviation of all N reference values. A sample whose target phi lies far above what models
    without it produce scores near 0 (member); far below, very negative.

    Returns:
        float64 log-probabilities, shape (N,), <= 0.
    """
    target = np.asarray(target_phi, dtype=np.float64)
    ref = np.asarray(reference_phi, dtype=np.float64)
    if target.ndim != 1 or ref.ndim != 2 or ref.shape[1] != target.shape[0] or ref.shape[0] < 1:
        raise ValueError(
            "lira_offline_scores: expected target_phi (N,) and reference_phi (K, N) with K >= 1, "
            f"got shapes {target.shape} and {ref.shape}"
        )
    k = ref.shape[0]
    mean = ref.mean(axis=0)
    if k >= LIRA_PER_SAMPLE_STD_MIN_K:
        std = ref.std(axis=0, ddof=1)
    elif k >= 2:
        std = np.full_like(mean, np.sqrt(np.sum((ref - mean) ** 2) / (ref.size - ref.shape[1])))
    else:
        std = np.full_like(mean, ref.std() if ref.size else 0.0)
    std = np.maximum(std, _MIN_STD)
    try:
        from scipy.stats import norm  # imported here: scipy.stats takes a while to load

        return np.asarray(norm.logcdf(target, loc=mean, scale=std), dtype=np.float64)
    except ImportError:  # scipy ships with scikit-learn, but torch has the same stable function
        z = torch.from_numpy((target - mean) / std)
        return torch.special.log_ndtr(z).numpy()


def reference_rows(
    n: int, n_trained: int, n_held_out: int, k: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Return, per reference model, its (trained, held-out, calibration) rows of range(n).

    Model i trains on n_trained rows and stops / regularizes on n_held_out others, drawn by
    (seed, i) alone; the remaining rows are its calibration non-members, which it never sees.
    The three are disjoint and sorted. Raises DataError (naming the sizes) when fewer than
    :data:`raymia.data.MIN_CALIBRATION` calibration rows would be left.
    """
    check_reference_size(n, n_trained, n_held_out)
    cut = n_trained + n_held_out
    out = []
    for i in range(k):
        order = np.random.default_rng([seed, _REFERENCE_SEED_OFFSET, i]).permutation(n)
        out.append(
            (np.sort(order[:n_trained]), np.sort(order[n_trained:cut]), np.sort(order[cut:]))
        )
    return out


def train_reference_models(
    config: TrialConfig,
    info: DatasetInfo,
    reference: Split,
    k: int,
    device: torch.device | None = None,
    *,
    n_trained: int,
    n_held_out: int,
) -> list[nn.Module]:
    """Train k reference (shadow) models for offline LiRA and return them in eval mode.

    Each model is trained like the target: by :func:`raymia.train.train_model` under the same
    config (same mechanisms and strengths) on exactly n_trained samples of the attacker's
    reference data (the target's member count), with its own held-out slice of n_held_out
    reference samples (the target's held-out count) for early stopping and adversarial
    regularization, both from :func:`reference_rows` with config.seed, and its own seed
    (seed_offset 100 + 2 i). None of these models sees a member or non-member, so all are OUT
    models for both; none sees its own calibration rows. Raises DataError when the reference
    split is too small.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if k == 0:
        return []
    models: list[nn.Module] = []
    rows = reference_rows(len(reference), n_trained, n_held_out, k, config.seed)
    for i, (trained, held_out, _calibration) in enumerate(rows):
        result = train_model(
            config,
            info,
            reference.take(trained),
            held_out=reference.take(held_out),
            device=device,
            seed_offset=_REFERENCE_SEED_OFFSET + _REFERENCE_SEED_STRIDE * i,
        )
        models.append(result.model.eval())
    return models
