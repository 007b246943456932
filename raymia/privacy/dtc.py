"""Distance-to-confident (DtC): a white-box membership signal.

DtC(x, y) is the smallest radius e such that projected gradient ascent on the true-class
margin phi(y | x + d), with ||d|| <= e (L2 by default, Linf selectable), reaches
phi(y | x + d) >= tau. It is 0 for a sample that is already confident and censored at
``eps_max`` when tau is never reached. Members are expected to sit closer to confidence than
non-members, even where attacks on the output alone fail (Kaya et al., 2020: "a false sense of
privacy").

Confidence is measured as the margin (scaled logit) phi = log p_y - log(sum_{i != y} p_i)
= z_y - logsumexp_{i != y} z_i, computed in float64 from the logits: p_y = sigmoid(phi), so
"p_y >= p" is "phi >= logit(p)", but phi does not saturate where p_y rounds to 1 (on float32
a confident model gives many reference non-members p_y = 1.0 exactly, and a tau of 1.0 could
neither be reached nor told apart), and its gradient does not vanish there as that of log p_y
does. tau therefore lives in the margin domain too (see :func:`resolve_tau`).

The search over e is a per-sample bisection. :func:`dtc` runs it for all samples at once, one
batched PGD per bisection round, dropping samples from the batch as soon as they reach tau;
:func:`dtc_reference` is the same algorithm one sample at a time, kept as the correctness
reference and the benchmark baseline. How a trial measures it: docs/ARCHITECTURE.md, "DtC".
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from raymia import deadline
from raymia.data.datasets import class_pairs
from raymia.privacy.logits import device_dtype, eval_mode, margin, wide
from raymia.privacy.metrics import advantage, advantage_ci, auc, bootstrap_ci, null_advantage

__all__ = [
    "DtcOptions",
    "DtcResult",
    "dtc",
    "dtc_reference",
    "balanced_rows",
    "parse_tau",
    "resolve_tau",
    "summarize_dtc",
]

Norm = Literal["l2", "linf"]

# Inputs are standardized to about unit variance per pixel, so an L2 radius of 8 is a large
# perturbation for small images and a Linf radius of 1 shifts every pixel by a full standard
# deviation: samples that still do not reach tau within these are fairly called censored.
DEFAULT_EPS_MAX: dict[str, float] = {"l2": 8.0, "linf": 1.0}

ArrayLike = np.ndarray | torch.Tensor

# Batched PGD keeps its batch size a multiple of this (see _rows_to_keep).
_ROW_BUCKET = 32


@dataclass(frozen=True)
class DtcOptions:
    """How DtC is searched.

    Attributes:
        norm: ``"l2"`` (default) or ``"linf"``: the ball the perturbation lives in.
        eps_max: largest radius searched; a sample not reaching tau within it is censored
            there. ``None`` (default) picks the norm's default from ``DEFAULT_EPS_MAX``
            (8.0 for L2, 1.0 for Linf, for inputs standardized to unit variance per pixel).
        bisection_steps: bisection rounds over [0, eps_max]; the resolution is
            eps_max / 2**bisection_steps.
        pgd_steps: gradient ascent steps per PGD run.
        relative_step_size: PGD step size as a multiple of e / pgd_steps (2.5 lets the ascent
            cross the whole ball and still correct its course).
        batch_size: samples per chunk; chunks only bound memory, they do not change results.
    """

    norm: Norm = "l2"
    eps_max: float | None = None
    # 6 rounds of 6-step PGD rank a trained mnist-5k model's 500 DtC samples as 10 rounds of
    # 20 steps do (Spearman 0.998) in a sixth of the time; the radius resolves to eps_max / 64.
    bisection_steps: int = 6
    pgd_steps: int = 6
    relative_step_size: float = 2.5
    batch_size: int = 512

    def __post_init__(self) -> None:
        if self.norm not in DEFAULT_EPS_MAX:
            raise ValueError(f"DtcOptions.norm: got {self.norm!r}, expected 'l2' or 'linf'")
        if self.eps_max is None:
            # Frozen dataclass: fill the norm-dependent default once, here.
            object.__setattr__(self, "eps_max", DEFAULT_EPS_MAX[self.norm])
        checks = [
            ("eps_max", self.eps_max, self.eps_max is not None and self.eps_max > 0, "> 0"),
            ("bisection_steps", self.bisection_steps, self.bisection_steps >= 0, ">= 0"),
            ("pgd_steps", self.pgd_steps, self.pgd_steps >= 1, ">= 1"),
            ("relative_step_size", self.relative_step_size, self.relative_step_size > 0, "> 0"),
            ("batch_size", self.batch_size, self.batch_size >= 1, ">= 1"),
        ]
        for name, value, ok, expected in checks:
            if not ok:
                raise ValueError(f"DtcOptions.{name}: got {value!r}, expected {expected}")

    @property
    def radius_max(self) -> float:
        """Return eps_max as a float (the norm's default when none was given)."""
        return float(DEFAULT_EPS_MAX[self.norm] if self.eps_max is None else self.eps_max)


@dataclass(frozen=True, eq=False)
class DtcResult:
    """Per-sample DtC.

    Attributes:
        distance: float64, one per sample: 0 for samples already confident, eps_max for
            censored ones, else the smallest radius found by bisection (its upper end).
        censored: bool, one per sample: True where tau was not reached within eps_max.
    """

    distance: np.ndarray
    censored: np.ndarray

    def __post_init__(self) -> None:
        if self.distance.shape != self.censored.shape or self.distance.ndim != 1:
            raise ValueError(
                "DtcResult: distance and censored must be 1-d arrays of the same length, got "
                f"shapes {self.distance.shape} and {self.censored.shape}"
            )

    def __len__(self) -> int:
        return int(self.distance.shape[0])


_TAU_FORMS = "'quantile:q' or 'absolute:p' with q, p in (0, 1), e.g. 'quantile:0.9'"


def resolve_tau(spec: str, reference_margin: np.ndarray | None) -> float:
    """Turn a tau spec into a margin target (the logit domain of
    :func:`raymia.privacy.logits.true_class_margin`).

    ``"quantile:q"`` returns the q-quantile of ``reference_margin`` (the true-class margins of
    reference non-members, so that tau stays reachable even under label smoothing, and stays
    below what the most confident of them reach even where their p_y rounds to 1);
    ``"absolute:p"`` returns logit(p) = log(p / (1 - p)), the margin at which p_y = p. Both q
    and p must lie in (0, 1).

    Returns:
        tau as a finite float (any real number: a margin, not a probability).

    Raises:
        ValueError: the spec is malformed, a quantile spec has no reference margins, or the
            quantile is not finite (non-finite logits).
    """
    kind, value = parse_tau(spec)
    if kind == "absolute":
        return math.log(value) - math.log1p(-value)
    if reference_margin is None or np.asarray(reference_margin).size == 0:
        raise ValueError(
            f"DtC tau {spec!r} needs the true-class margins of reference non-members, got none"
        )
    tau = float(np.quantile(np.asarray(reference_margin, dtype=np.float64), value))
    _check_tau(tau)
    return tau


def parse_tau(spec: str) -> tuple[str, float]:
    """Split a tau spec into its kind and value, or raise a ValueError naming both forms."""
    kind, sep, raw = str(spec).partition(":")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not sep or kind.strip() not in ("quantile", "absolute") or not 0.0 < value < 1.0:
        raise ValueError(f"DtC tau: got {spec!r}, expected {_TAU_FORMS}")
    return kind.strip(), value


def dtc(model: nn.Module, x: ArrayLike, y: ArrayLike, tau: float, options: DtcOptions) -> DtcResult:
    """Compute DtC for every sample, batched, for a margin target ``tau`` (see
    :func:`resolve_tau`; a probability p corresponds to logit(p)).

    Steps: (1) samples already at margin >= tau get distance 0; (2) one PGD run at eps_max
    for the rest, those never reaching tau are censored at eps_max; (3) per-sample bisection
    over [0, eps_max] for the others, each round one batched PGD in which every sample has its
    own radius. Steps (1) and (2) share one PGD run: its confidence check at the start (d = 0)
    is step (1). The input gradient at d = 0 is the same for every radius, so the bisection
    rounds reuse the one from that run instead of recomputing it.

    The work runs on a frozen eval-mode copy of the model, laid out for fast batched input
    gradients (see :func:`_for_input_gradients`); the caller's model is not touched.

    Returns:
        A :class:`DtcResult` with one distance and one censored flag per sample.
    """
    xt, yt, eps_max = _search_inputs(model, x, y, tau, options)
    n = xt.shape[0]
    distance = np.full(n, eps_max, dtype=np.float64)
    censored = np.zeros(n, dtype=bool)
    if n == 0:
        return DtcResult(distance, censored)

    model, xt = _for_input_gradients(model, xt)
    with eval_mode(model, freeze=True):
        radii = np.full(n, eps_max, dtype=np.float64)
        reached_at, grad0 = _pgd_batched(model, xt, yt, radii, tau, options)
        distance[reached_at == 0] = 0.0
        censored[reached_at < 0] = True

        # Bisection only for samples that reach tau at eps_max but were not confident at d = 0.
        todo = np.flatnonzero(reached_at > 0)
        if todo.size:
            rows = torch.as_tensor(todo, device=xt.device)
            x_todo, y_todo, grad0_todo = xt[rows], yt[rows], grad0[rows]
            del grad0
            lo = np.zeros(todo.size, dtype=np.float64)
            hi = np.full(todo.size, eps_max, dtype=np.float64)
            for _ in range(options.bisection_steps):
                mid = (lo + hi) / 2.0
                reached, _ = _pgd_batched(model, x_todo, y_todo, mid, tau, options, grad0_todo)
                ok = reached >= 0
                hi = np.where(ok, mid, hi)
                lo = np.where(ok, lo, mid)
            distance[todo] = hi
    return DtcResult(distance, censored)


def dtc_reference(
    model: nn.Module, x: ArrayLike, y: ArrayLike, tau: float, options: DtcOptions
) -> DtcResult:
    """Compute DtC one sample at a time: the same algorithm as :func:`dtc`, written plainly.

    ``tau`` is a margin target, as for :func:`dtc`.

    Kept as the correctness reference for :func:`dtc` and as the benchmark baseline.

    Returns:
        A :class:`DtcResult` with one distance and one censored flag per sample.
    """
    xt, yt, eps_max = _search_inputs(model, x, y, tau, options)
    n = xt.shape[0]
    distance = np.zeros(n, dtype=np.float64)
    censored = np.zeros(n, dtype=bool)
    with eval_mode(model, freeze=True):
        for i in range(n):
            xi, yi = xt[i : i + 1], yt[i : i + 1]
            with torch.no_grad():
                confident = _reached(_true_class_margin(model(xi), yi), tau).item()
            if confident:
                distance[i] = 0.0
                continue
            if not _pgd_one(model, xi, yi, eps_max, tau, options):
                distance[i], censored[i] = eps_max, True
                continue
            lo, hi = 0.0, eps_max
            for _ in range(options.bisection_steps):
                mid = (lo + hi) / 2.0
                if _pgd_one(model, xi, yi, mid, tau, options):
                    hi = mid
                else:
                    lo = mid
            distance[i] = hi
    return DtcResult(distance, censored)


def summarize_dtc(
    member: DtcResult,
    non_member: DtcResult,
    n_permutations: int = 0,
    seed: int = 0,
    n_boot: int = 0,
) -> dict[str, float | None]:
    """Summarize DtC of members against non-members for one trial.

    The membership score is -distance (members are expected to be closer to confident).

    Returns:
        ``dtc_auc`` and ``dtc_adv`` (AUC and membership advantage of that score), with
        their 95% intervals as every attack has them (:func:`raymia.privacy.metrics.summarize`):
        ``dtc_auc_lo`` / ``dtc_auc_hi`` (stratified bootstrap, ``n_boot`` replicates seeded by
        ``seed``; None when n_boot is 0) and ``dtc_adv_lo`` / ``dtc_adv_hi`` (DKW),
        ``dtc_adv_null_q95`` and ``dtc_adv_p`` (95th percentile of the advantage under
        ``n_permutations`` label permutations, and the permutation p-value of ``dtc_adv``, from
        :func:`raymia.privacy.metrics.null_advantage` seeded by ``seed``; None when n_permutations
        is
        0), ``dtc_median_member``, ``dtc_median_non_member`` (median distances) and
        ``dtc_censored`` (censored fraction over members and non-members together).
    """
    if len(member) == 0 or len(non_member) == 0:
        raise ValueError(
            f"summarize_dtc needs members and non-members, got {len(member)} and {len(non_member)}"
        )
    scores = -np.concatenate([member.distance, non_member.distance])
    is_member = np.concatenate([np.ones(len(member), bool), np.zeros(len(non_member), bool)])
    censored = np.concatenate([member.censored, non_member.censored])
    q95 = p_value = auc_lo = auc_hi = None
    if n_permutations:
        null = null_advantage(scores, is_member, n_permutations=n_permutations, seed=seed)
        q95, p_value = null.q95, null.p_value
    if n_boot:
        auc_lo, auc_hi = bootstrap_ci(scores, is_member, "auc", n_boot=n_boot, seed=seed)
    adv_lo, adv_hi = advantage_ci(scores, is_member, 0.95)
    return {
        "dtc_auc": auc(scores, is_member),
        "dtc_auc_lo": auc_lo,
        "dtc_auc_hi": auc_hi,
        "dtc_adv": advantage(scores, is_member),
        "dtc_adv_lo": adv_lo,
        "dtc_adv_hi": adv_hi,
        "dtc_adv_null_q95": q95,
        "dtc_adv_p": p_value,
        "dtc_median_member": float(np.median(member.distance)),
        "dtc_median_non_member": float(np.median(non_member.distance)),
        "dtc_censored": float(np.mean(censored)),
    }


def balanced_rows(
    member_labels: ArrayLike, non_member_labels: ArrayLike, per_side: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pick up to ``per_side`` members and as many non-members, class by class.

    Every class c gets k_c members and k_c non-members, drawn at random (seeded by ``seed``)
    from its n_c = min(#members, #non-members of class c). The k_c are proportional to n_c
    (largest remainders, ties broken at random), so a subset of a class-balanced set keeps its
    class make-up; with per_side >= sum n_c every available pair is taken.

    Returns:
        (member rows, non-member rows): sorted int64 indices into ``member_labels`` and
        ``non_member_labels``, of equal length min(per_side, sum n_c).
    """
    y_m = np.asarray(member_labels).reshape(-1)
    y_n = np.asarray(non_member_labels).reshape(-1)
    classes = np.union1d(y_m, y_n)
    avail = np.array([min(np.sum(y_m == c), np.sum(y_n == c)) for c in classes], dtype=np.int64)
    rng = np.random.default_rng([seed, 17])
    take = _largest_remainder(avail, min(max(per_side, 0), int(avail.sum())), rng)
    return class_pairs(y_m, y_n, classes, take, rng)


def _largest_remainder(sizes: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """Split ``total`` (<= sizes.sum()) into integer parts proportional to ``sizes``, each part
    at most its size: the floors of the exact shares, plus one for the largest remainders."""
    if total == 0 or sizes.sum() == 0:
        return np.zeros_like(sizes)
    share = sizes * (total / sizes.sum())
    parts = np.floor(share).astype(np.int64)
    # Random order first, then a stable sort by remainder: equal remainders break at random.
    order = rng.permutation(sizes.size)
    order = order[np.argsort(-(share - parts)[order], kind="stable")]
    parts[order[: total - int(parts.sum())]] += 1
    return parts


# --- internals ---------------------------------------------------------------------------------


def _for_input_gradients(model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, torch.Tensor]:
    """Return a copy of the model and the inputs, laid out for batched input gradients.

    Results are the same as with the model as given; only the speed differs:
    - image batches (4-d) go channels-last: on a large batch of small feature maps the
      channels-last convolution and pooling kernels are faster than NCHW ones on CPU. A Flatten
      would hand its gradient back in NCHW order, which pushes every backward kernel before it
      onto a slow mixed-layout path, so its gradient is turned channels-last too;
    - a ReLU whose input nobody else reads (see :func:`_inplace_safe_relus`) works in place,
      saving a full-size allocation per layer and step.
    Measured with benchmarks/dtc_speed.py on 2 CPU cores: each of the three gains 10-20%.
    """
    fast = copy.deepcopy(model)
    for relu in _inplace_safe_relus(fast):
        relu.inplace = True
    if x.dim() != 4:
        return fast, x
    fast = fast.to(memory_format=torch.channels_last)
    for module in fast.modules():
        if isinstance(module, nn.Flatten):
            module.register_forward_pre_hook(_channels_last_gradient)
    return fast, x.contiguous(memory_format=torch.channels_last)


# Layers whose backward reads their input, not their output, so a ReLU may overwrite the output.
_INPUT_SAVING = (nn.Conv2d, nn.Linear, nn.Identity, nn.BatchNorm2d, nn.GroupNorm, nn.MaxPool2d)


def _inplace_safe_relus(model: nn.Module) -> list[nn.ReLU]:
    """Return the ReLUs that may run in place: inside a Sequential, right after a layer from
    ``_INPUT_SAVING`` (in a Sequential that layer's output feeds the ReLU and nothing else)."""
    found = []
    for seq in model.modules():
        if isinstance(seq, nn.Sequential):
            layers = list(seq)
            found += [
                b
                for a, b in zip(layers, layers[1:], strict=False)
                if isinstance(b, nn.ReLU) and isinstance(a, _INPUT_SAVING)
            ]
    return found


def _channels_last_gradient(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
    """Forward pre-hook: make the gradient flowing back into a 4-d input channels-last."""
    (inp,) = args
    if inp.requires_grad and inp.dim() == 4:
        inp.register_hook(lambda g: g.contiguous(memory_format=torch.channels_last))


def _pgd_batched(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    radii: np.ndarray,
    tau: float,
    options: DtcOptions,
    grad0: torch.Tensor | None = None,
) -> tuple[np.ndarray, torch.Tensor]:
    """Run PGD with a radius per sample, all samples in one tensor (chunked for memory).

    ``grad0`` is the input gradient at d = 0 from an earlier run on the same samples, which
    must all be known not to be confident at d = 0. Step 0 (check and gradient at d = 0) is the
    same for every radius, so with ``grad0`` it is taken from there instead of recomputed.

    Returns:
        The step at which each sample first reached tau (0 = at d = 0) or -1 where it never
        did (int64 array), and the input gradient at d = 0 of every sample.
    """
    n = x.shape[0]
    reached_at = torch.full((n,), -1, dtype=torch.long, device=x.device)
    grad0_out = torch.empty_like(x) if grad0 is None else grad0
    eps_all = torch.as_tensor(radii, device=x.device).to(x.dtype)
    for start in range(0, n, options.batch_size):
        deadline.check()  # a sweep's --trial-timeout ends a slow trial within one PGD batch
        stop = min(n, start + options.batch_size)
        idx = torch.arange(start, stop, device=x.device)
        xa, ya, eps = x[start:stop], y[start:stop], eps_all[start:stop]
        alpha = _step_sizes(eps, options)
        d = torch.zeros_like(xa)
        # Rows still searching; finished rows may stay in the tensors as padding (see below).
        live = torch.ones(stop - start, dtype=torch.bool, device=x.device)
        first = 0
        if grad0 is not None:
            d, first = _ascent_step(d, grad0[start:stop], alpha, eps, options.norm), 1
        for step in range(first, options.pgd_steps + 1):
            last = step == options.pgd_steps
            inp = (xa + d).requires_grad_(not last)
            with torch.enable_grad():  # also when the caller runs under no_grad
                margin = _true_class_margin(model(inp), ya)
                # The forward that feeds the gradient also gives the confidence check.
                done = _reached(margin.detach(), tau) & live
                if last:
                    reached_at[idx[done]] = step
                    break
                (grad,) = torch.autograd.grad(margin.sum(), inp)
            if step == 0 and grad0 is None:
                grad0_out[start:stop] = grad
            if bool(done.any()):
                reached_at[idx[done]] = step
                live = live & ~done
                keep = _rows_to_keep(live)
                if keep is None:
                    break
                if keep.shape[0] < live.shape[0]:
                    # Drop finished samples so they stop costing forward/backward passes.
                    idx, xa, ya, eps, alpha = idx[keep], xa[keep], ya[keep], eps[keep], alpha[keep]
                    d, grad, live = d[keep], grad[keep], live[keep]
            d = _ascent_step(d, grad, alpha, eps, options.norm)
    return reached_at.cpu().numpy(), grad0_out


def _rows_to_keep(live: torch.Tensor) -> torch.Tensor | None:
    """Return the row indices to keep after some samples finished, or None when all did.

    The kept row count is the live count rounded up to a multiple of ``_ROW_BUCKET``, padded
    with finished rows (whose results are no longer read). Shrinking to the exact live count
    would give nearly every PGD step a new batch size, and each new shape makes the convolution
    backend build new kernels (on CPU about as costly as the step itself); buckets bound the
    shapes to batch_size / _ROW_BUCKET per chunk for at most _ROW_BUCKET - 1 padding rows.
    """
    n_live = int(live.sum())
    if n_live == 0:
        return None
    rows = min(live.shape[0], -(-n_live // _ROW_BUCKET) * _ROW_BUCKET)
    if rows == live.shape[0]:
        return torch.arange(rows, device=live.device)
    padding = torch.nonzero(~live).view(-1)[: rows - n_live]
    return torch.sort(torch.cat([torch.nonzero(live).view(-1), padding])).values


def _pgd_one(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    radius: float,
    tau: float,
    options: DtcOptions,
) -> bool:
    """Run PGD on one sample (batch of 1) at one radius; return whether it reached tau."""
    eps = torch.tensor([radius], dtype=torch.float64, device=x.device).to(x.dtype)
    alpha = _step_sizes(eps, options)
    d = torch.zeros_like(x)
    deadline.check()
    for step in range(options.pgd_steps + 1):
        inp = (x + d).requires_grad_(True)
        with torch.enable_grad():
            margin = _true_class_margin(model(inp), y)
            if _reached(margin.detach(), tau).item():
                return True
            if step == options.pgd_steps:
                return False
            (grad,) = torch.autograd.grad(margin.sum(), inp)
        d = _ascent_step(d, grad, alpha, eps, options.norm)
    return False


def _step_sizes(eps: torch.Tensor, options: DtcOptions) -> torch.Tensor:
    """Return the per-sample PGD step size, proportional to the sample's radius."""
    return eps * options.relative_step_size / options.pgd_steps


def _ascent_step(
    d: torch.Tensor, grad: torch.Tensor, alpha: torch.Tensor, eps: torch.Tensor, norm: Norm
) -> torch.Tensor:
    """Take one ascent step per sample and project back onto that sample's ball."""
    shape = (-1,) + (1,) * (d.dim() - 1)
    alpha, eps = alpha.view(shape), eps.view(shape)
    if norm == "linf":
        d = d + alpha * grad.sign()
        return torch.maximum(torch.minimum(d, eps), -eps)
    # L2: a unit step along the gradient direction, so the step size, not the gradient's
    # scale (tiny for nearly confident samples), sets how far each sample moves.
    g_norm = grad.flatten(1).norm(dim=1).view(shape)
    d = d + alpha * grad / g_norm.clamp_min(torch.finfo(grad.dtype).tiny)
    d_norm = d.flatten(1).norm(dim=1).view(shape)
    return d * torch.clamp(eps / d_norm.clamp_min(torch.finfo(d.dtype).tiny), max=1.0)


def _true_class_margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Return phi = z_y - logsumexp_{i != y} z_i per sample, in float64 (float32 on MPS).

    The cast is part of the autograd graph, so the gradient flows back to the input. Where
    p_y -> 1 the gradient of log p_y = -softplus(-phi) shrinks by 1 - p_y (to 0 once p_y rounds
    to 1); that of phi does not, and points the same way.
    """
    return margin(wide(logits), y)


def _reached(margin: torch.Tensor, tau: float) -> torch.Tensor:
    """Return whether phi >= tau per sample (both margins, see :func:`_true_class_margin`).

    Every confidence check goes through here, so one decision rule holds everywhere (which is
    what keeps DtC non-decreasing in tau and dtc equal to dtc_reference).
    """
    return margin >= tau


def _check_tau(tau: float) -> None:
    if not math.isfinite(float(tau)):
        raise ValueError(f"DtC tau: got {tau!r}, expected a finite margin (logit of p_y)")


def _search_inputs(
    model: nn.Module, x: ArrayLike, y: ArrayLike, tau: float, options: DtcOptions
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Check tau; return x and y on the model's device and dtype, and the radius cap."""
    _check_tau(tau)
    device, dtype = device_dtype(model)
    xt, yt = _as_tensors(x, y, device, dtype)
    return xt, yt, options.radius_max


def _as_tensors(
    x: ArrayLike, y: ArrayLike, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    xt = torch.as_tensor(x).to(device=device, dtype=dtype)
    yt = torch.as_tensor(y).to(device=device, dtype=torch.long).view(-1)
    if xt.shape[0] != yt.shape[0]:
        raise ValueError(f"DtC: x has {xt.shape[0]} samples but y has {yt.shape[0]} labels")
    return xt.detach(), yt
