"""RMIA and online LiRA: known answers on constructed reference scores, the counting against
the brute-force matrix, the online design, and directions of effect on simulated data."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from scipy.stats import norm

from raymia.attacks import lira, rmia
from raymia.errors import ConfigError, DataError
from raymia.privacy import metrics
from raymia.trial import reference_models as reference
from raymia.trial.config import parse_trial_config


def _brute_counts(log_ratio_x, log_ratio_z, gamma):
    """The |X| x |Z| matrix RMIA's definition names, in probability space."""
    ratio = np.exp(log_ratio_x)[:, None] / np.exp(log_ratio_z)[None, :]
    return (ratio >= gamma).mean(axis=1)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_counts_equal_the_brute_force_matrix(gamma):
    rng = np.random.default_rng(3)
    x, z = rng.normal(size=300), rng.normal(size=400)
    np.testing.assert_allclose(rmia.rmia_counts(x, z, gamma), _brute_counts(x, z, gamma))


def test_counts_are_fast_on_large_sets():
    rng = np.random.default_rng(4)
    x, z = rng.normal(size=20_000), rng.normal(size=20_000)
    started = time.perf_counter()
    counts = rmia.rmia_counts(x, z)
    assert time.perf_counter() - started < 1.0  # the 4e8-entry matrix would take far longer
    # spot check against the definition for a few samples
    for i in (0, 17, 19_999):
        assert counts[i] == np.mean(x[i] - z >= 0)


def test_counts_known_answer_with_ties_and_nan():
    # ratios x: [1, 2]; z: [1, 2, 4] (log domain); LR >= 1 means z <= x
    x = np.log([1.0, 2.0])
    z = np.log([1.0, 2.0, 4.0, np.nan])
    np.testing.assert_allclose(rmia.rmia_counts(x, z), [1 / 3, 2 / 3])
    np.testing.assert_allclose(rmia.rmia_counts(x, z, gamma=0.5), [2 / 3, 1.0])
    assert rmia.rmia_counts(np.array([np.nan]), z)[0] == 0.0
    with pytest.raises(ValueError, match="gamma"):
        rmia.rmia_counts(x, z, gamma=0)


def test_offline_reference_known_answer():
    # two OUT models give p = 0.2 and 0.4 for sample 0, 0.6 and 0.8 for sample 1
    log_p = np.log([[0.2, 0.6], [0.4, 0.8]])
    a = 0.3
    expected = 0.5 * ((1 + a) * np.array([0.3, 0.7]) + (1 - a))
    np.testing.assert_allclose(np.exp(rmia.log_offline_reference(log_p, a)), expected)
    # a = 1: p(x) is the OUT mean itself; an OUT mask restricts the mean
    np.testing.assert_allclose(np.exp(rmia.log_offline_reference(log_p, 1.0)), [0.3, 0.7])
    out = np.array([[True, False], [True, True]])
    np.testing.assert_allclose(np.exp(rmia.log_offline_reference(log_p, 1.0, out)), [0.3, 0.8])
    np.testing.assert_allclose(np.exp(rmia.log_online_reference(log_p)), [0.3, 0.7])


def test_offline_scores_known_answer():
    # target p(x|theta) = [0.9, 0.5]; one reference model p = [0.5, 0.5]; a = 0 -> p(x) = 0.75
    # population: target p(z|theta) = [0.3, 0.6, 0.75], reference [0.3, 0.6, 0.75] -> p(z) =
    # [0.65, 0.8, 0.875]; ratios x: [1.2, 0.667], z: [0.4615, 0.75, 0.857]
    scores = rmia.rmia_offline_scores(
        np.log([0.9, 0.5]),
        np.log([[0.5, 0.5]]),
        np.log([0.3, 0.6, 0.75]),
        np.log([[0.3, 0.6, 0.75]]),
        a=0.0,
    )
    np.testing.assert_allclose(scores, [1.0, 1 / 3])


def test_online_scores_use_in_and_out_models():
    # x: IN model 0.9, OUT model 0.1 -> p(x) = 0.5; target 0.9 -> ratio 1.8
    # z: both models 0.5 -> p(z) = 0.5; target [0.5, 0.95] -> ratios [1, 1.9]
    scores = rmia.rmia_online_scores(
        np.log([0.9]), np.log([[0.9], [0.1]]), np.log([0.5, 0.95]), np.log([[0.5, 0.5]] * 2)
    )
    np.testing.assert_allclose(scores, [0.5])


def test_scores_are_averaged_over_query_views():
    target = np.log([[0.9, 0.4]])  # one sample, two views
    refs = np.log([[[0.5, 0.5]]])
    pop_t = np.log([[0.5, 0.5], [0.7, 0.7]])
    pop_r = np.log([[[0.5, 0.5], [0.5, 0.5]]])
    per_view = [
        rmia.rmia_offline_scores(target[:, j], refs[..., j], pop_t[:, j], pop_r[..., j], a=1.0)
        for j in range(2)
    ]
    combined = rmia.rmia_offline_scores(target, refs, pop_t, pop_r, a=1.0)
    np.testing.assert_allclose(combined, np.mean(per_view, axis=0))  # (1 + 0) / 2


def test_tune_offline_a_returns_the_best_grid_value():
    sim = _simulate(k=4, n=400, m=300, seed=5)
    out = ~sim["is_in"]
    chosen = rmia.tune_offline_a(
        sim["target_log_p"],
        sim["is_member"],
        sim["ref_log_p"],
        out,
        sim["pop_target_log_p"],
        sim["pop_ref_log_p"],
        np.ones(sim["pop_ref_log_p"].shape, bool),
    )
    assert chosen in rmia.OFFLINE_A_GRID
    aucs = {}
    for a in rmia.OFFLINE_A_GRID:
        px = rmia.log_offline_reference(sim["ref_log_p"], a, out)
        pz = rmia.log_offline_reference(sim["pop_ref_log_p"], a)
        s = rmia.rmia_counts(sim["target_log_p"] - px, sim["pop_target_log_p"] - pz)
        aucs[a] = metrics.auc(s, sim["is_member"])
    assert aucs[chosen] == pytest.approx(max(aucs.values()))
    # no member among the usable samples: the default
    assert (
        rmia.tune_offline_a(
            sim["target_log_p"],
            np.zeros(400, bool),
            sim["ref_log_p"],
            out,
            sim["pop_target_log_p"],
            sim["pop_ref_log_p"],
            np.ones(sim["pop_ref_log_p"].shape, bool),
        )
        == rmia.OFFLINE_A_DEFAULT
    )


# --------------------------------------------------------------------------------------------
# LiRA
# --------------------------------------------------------------------------------------------


def test_lira_online_known_answer_with_pooled_std():
    # 4 models, 2 samples; sample 0 IN for models 0, 1; sample 1 IN for models 2, 3
    ref = np.array([[4.0, 0.0], [6.0, 2.0], [0.0, 5.0], [2.0, 7.0]])
    is_in = np.array([[True, False], [True, False], [False, True], [False, True]])
    target = np.array([5.0, 1.0])
    mu_in, mu_out = np.array([5.0, 6.0]), np.array([1.0, 1.0])
    # each side's pair is its mean +- 1: a within-sample sum of squares 2 + 2 = 4 over
    # (2 - 1) + (2 - 1) = 2 degrees of freedom, so both sides pool to sqrt(2)
    s = math.sqrt(2.0)
    expected = norm.logpdf(target, mu_in, s) - norm.logpdf(target, mu_out, s)
    np.testing.assert_allclose(lira.lira_online_scores(target, ref, is_in), expected)


def test_lira_online_per_sample_std_from_many_models():
    rng = np.random.default_rng(1)
    k, n = 40, 6
    is_in = np.zeros((k, n), bool)
    is_in[: k // 2] = True
    ref = rng.normal(size=(k, n)) + 3 * is_in
    target = rng.normal(size=n)
    expected = norm.logpdf(
        target, ref[is_in].reshape(20, n).mean(0), ref[is_in].reshape(20, n).std(0, ddof=1)
    ) - norm.logpdf(
        target, ref[~is_in].reshape(20, n).mean(0), ref[~is_in].reshape(20, n).std(0, ddof=1)
    )
    np.testing.assert_allclose(lira.lira_online_scores(target, ref, is_in), expected)


def test_lira_online_refuses_samples_without_in_or_out_models():
    with pytest.raises(ValueError, match="IN and one OUT"):
        lira.lira_online_scores(np.zeros(2), np.zeros((2, 2)), np.array([[1, 1], [0, 1]], bool))


def test_lira_offline_averages_one_fit_per_view():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(3, 5, 2))
    target = rng.normal(size=(5, 2))
    per_view = [lira.lira_offline_scores(target[:, j], ref[..., j]) for j in range(2)]
    np.testing.assert_allclose(lira.lira_offline_scores(target, ref), np.mean(per_view, axis=0))


def test_query_views_shift_by_one_pixel_and_flip_only_where_allowed():
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).reshape(2, 1, 3, 3) + 1
    views = lira.query_views(x, flip=False)
    assert len(views) == 5 and torch.equal(views[0], x)
    down = views[1]  # shifted one row down, the top row filled with the background (min = 1)
    assert torch.equal(down[:, :, 1:], x[:, :, :-1]) and bool((down[:, :, 0] == 1).all())
    assert len(lira.query_views(x, flip=True)) == 10
    assert len(lira.query_views(x, flip=True, augmented=False)) == 1


# --------------------------------------------------------------------------------------------
# The online design
# --------------------------------------------------------------------------------------------


def test_online_rows_put_every_sample_in_half_of_the_models():
    pool, held, population, mask = reference.online_rows(60, 200, 40, 10, 4, seed=3)
    assert len(pool) == 20 and len(held) == 10 and len(population) == 170
    assert not set(pool) & set(held) and not set(held) & set(population)
    assert mask.shape == (4, 80) and (mask.sum(axis=0) == 2).all()
    again = reference.online_rows(60, 200, 40, 10, 4, seed=3)
    assert np.array_equal(again[3], mask)
    _, _, _, odd = reference.online_rows(60, 200, 40, 10, 5, seed=3)
    assert set(odd.sum(axis=0)) <= {2, 3}
    with pytest.raises(DataError, match="too small for online reference models"):
        reference.online_rows(60, 40, 40, 10, 4, seed=3)


def test_one_online_model_is_refused_before_training():
    from raymia.trial.runner import run_trial

    with pytest.raises(ConfigError, match="online_models = 1"):
        run_trial({"attacks": {"online_models": 1}})


def test_online_attacks_are_opt_in_and_offline_rmia_reuses_the_shadow():
    options = parse_trial_config({}).attacks
    assert options.online_models == 0
    assert reference.online_model_count(options) == 0
    # RMIA's one offline model is the shadow the default trial trains anyway
    assert reference.reference_model_count(options) == 1


# --------------------------------------------------------------------------------------------
# Directions of effect on simulated data of known truth
# --------------------------------------------------------------------------------------------


def _simulate(k: int, n: int, m: int, seed: int, boost: float = 3.0) -> dict[str, np.ndarray]:
    """Margins phi = difficulty + boost * IN + noise for a target, k reference models (each
    sample IN for half of them) and m population samples (OUT everywhere)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 3, size=n)
    pop_difficulty = rng.normal(0, 3, size=m)
    is_member = np.zeros(n, bool)
    is_member[rng.permutation(n)[: n // 2]] = True
    ranks = np.argsort(rng.random((k, n)), axis=0)
    is_in = ranks < k // 2

    def phi(base, inside):
        return base + boost * inside + rng.normal(0, 0.5, size=np.shape(inside))

    target_phi = phi(difficulty, is_member)
    ref_phi = phi(difficulty, is_in)
    pop_target = phi(pop_difficulty, np.zeros(m, bool))
    pop_ref = phi(pop_difficulty, np.zeros((k, m), bool))

    def log_p(margin):  # log sigmoid: the true-class log-probability of a binary softmax
        return -np.logaddexp(0.0, -margin)

    return {
        "is_member": is_member,
        "is_in": is_in,
        "target_phi": target_phi,
        "ref_phi": ref_phi,
        "target_log_p": log_p(target_phi),
        "ref_log_p": log_p(ref_phi),
        "pop_target_log_p": log_p(pop_target),
        "pop_ref_log_p": log_p(pop_ref),
    }


def test_rmia_and_online_lira_beat_the_loss_attack_at_low_fpr():
    sim = _simulate(k=8, n=4000, m=2000, seed=0)
    member = sim["is_member"]
    loss = metrics.tpr_at_fpr(sim["target_log_p"], member, 0.01)
    online_lira = metrics.tpr_at_fpr(
        lira.lira_online_scores(sim["target_phi"], sim["ref_phi"], sim["is_in"]), member, 0.01
    )
    online_rmia = metrics.tpr_at_fpr(
        rmia.rmia_online_scores(
            sim["target_log_p"], sim["ref_log_p"], sim["pop_target_log_p"], sim["pop_ref_log_p"]
        ),
        member,
        0.01,
    )
    print(f"TPR at 1% FPR: loss {loss:.3f}, online LiRA {online_lira:.3f}, RMIA {online_rmia:.3f}")
    assert online_lira > loss + 0.2
    assert online_rmia > loss + 0.2


def test_rmia_scores_members_higher_as_their_boost_grows():
    aucs = []
    for boost in (0.0, 1.0, 3.0):
        sim = _simulate(k=4, n=2000, m=1000, seed=1, boost=boost)
        # offline: only the OUT models' outputs are known, so each sample takes its OUT ones
        out = ~sim["is_in"]
        log_px = rmia.log_offline_reference(sim["ref_log_p"], 0.3, out)
        log_pz = rmia.log_offline_reference(sim["pop_ref_log_p"], 0.3)
        scores = rmia.rmia_counts(sim["target_log_p"] - log_px, sim["pop_target_log_p"] - log_pz)
        aucs.append(metrics.auc(scores, sim["is_member"]))
    assert abs(aucs[0] - 0.5) < 0.05 and aucs[0] < aucs[1] < aucs[2]


# --------------------------------------------------------------------------------------------
# A memorizing target on digits
# --------------------------------------------------------------------------------------------

MEMORIZING = {
    "members": 300,
    "non_members": 300,
    "held_out": 100,
    "reference": 737,
    "epochs": 40,
    "device": "cpu",
    "attacks": {
        "online_models": 4,
        "merlin_neighbours": 5,
        "n_bootstrap": 0,
        "n_permutations": 0,
    },
    "dtc": {"enabled": False},
}


@pytest.mark.slow
def test_memorizing_target_strong_attacks_beat_the_loss_attack():
    from raymia.trial.runner import run_trial

    torch.set_num_threads(2)
    row = run_trial(MEMORIZING)
    tprs = {a: row[f"{a}_tpr_at_1pct"] for a in ("loss", "rmia", "lira_online", "rmia_online")}
    print("TPR at 1% FPR on a memorizing digits target:", tprs, "eps_lb", row["eps_lb"])
    assert tprs["lira_online"] > tprs["loss"]
    assert tprs["rmia_online"] > tprs["loss"]
    assert tprs["rmia"] > tprs["loss"]
    assert row["eps_lb"] > 0


def test_online_models_train_on_their_half_of_the_scored_samples(small_digits, monkeypatch):
    """Each online model trains on the pool rows its IN-mask row selects (scored samples and a
    few reference samples), with a held-out slice and population of reference samples only."""
    from raymia.trial.train import TrainResult

    seen: list[tuple[set, set]] = []

    def recording(config, info, members, *, held_out=None, device=None, seed_offset=0, **_):
        seen.append((set(members.indices), set(held_out.indices)))
        return TrainResult(torch.nn.Linear(1, 1), 1, None, 0.0, 0.0)

    monkeypatch.setattr(reference, "train_model", recording)
    config = parse_trial_config({"members": 200, "non_members": 200, "reference": 400})
    scored = small_digits.members.take(np.arange(150))
    scored = type(scored)(
        torch.cat([scored.x, small_digits.non_members.x[:150]]),
        torch.cat([scored.y, small_digits.non_members.y[:150]]),
        np.r_[scored.indices, small_digits.non_members.indices[:150]],
    )
    online = reference.train_online_models(
        config, small_digits.info, scored, small_digits.reference, 4, n_trained=200, n_held_out=50
    )
    assert online.is_in.shape == (4, 300) and (online.is_in.sum(axis=0) == 2).all()
    reference_ids = set(small_digits.reference.indices)
    population = set(online.population.indices)
    assert population <= reference_ids and len(population) == 400 - 100 - 50
    for k, (trained, held) in enumerate(seen):
        assert trained & set(scored.indices) == set(scored.indices[online.is_in[k]])
        assert trained - set(scored.indices) <= reference_ids
        assert len(held) == 50 and not held & trained and not held & population
        assert not trained & population


class _Counting(torch.nn.Module):
    """A fixed linear classifier on flattened images that counts the rows it is asked for."""

    def __init__(self, seed: int):
        super().__init__()
        self.linear = torch.nn.Linear(64, 10)
        with torch.no_grad():
            g = torch.Generator().manual_seed(seed)
            self.linear.weight.copy_(torch.randn(10, 64, generator=g))
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += x.shape[0]
        return self.linear(x.flatten(1))


def test_offline_rmia_queries_only_the_population_rows_it_reads():
    # With one reference model `a` is not tuned, and the population rows that model trained or
    # stopped on are never read: they must cost no forward passes, and the scores are those of
    # querying every row and dropping them afterwards.
    from raymia.attacks.registry import ReferenceSet, Target
    from raymia.data.datasets import Split
    from raymia.trial.config import AttackOptions

    rng = np.random.default_rng(0)
    n, m = 40, 100
    x = torch.as_tensor(rng.normal(size=(n, 1, 8, 8)), dtype=torch.float32)
    y = torch.as_tensor(rng.integers(0, 10, n))
    pop = Split(
        torch.as_tensor(rng.normal(size=(m, 1, 8, 8)), dtype=torch.float32),
        torch.as_tensor(rng.integers(0, 10, m)),
        np.arange(m),
    )
    out = np.zeros((1, m), bool)
    out[0, rng.permutation(m)[:30]] = True  # 30 rows the reference model never saw
    target_model, ref_model = _Counting(1), _Counting(2)
    reference_set = ReferenceSet((ref_model,), pop, out, population_trained=~out)
    options = AttackOptions()  # augmented queries on: 5 views of each row
    target = Target(target_model, x, y, options, 0, offline=reference_set)
    scores = rmia._offline_scores(target)
    views = len(lira.target_views(target))
    assert views == 5
    assert target_model.rows == ref_model.rows == views * (n + 30)
    tx, rx, tz, rz = rmia._signals(target, reference_set)  # every row, as before
    usable = out.any(axis=0)
    expected = rmia.rmia_offline_scores(
        tx, rx, tz[usable], rz[:, usable], a=rmia.OFFLINE_A_DEFAULT, population_out=out[:, usable]
    )
    np.testing.assert_array_equal(scores, expected)


def test_query_views_are_built_one_at_a_time_with_the_same_values():
    # The views are built as they are read, so only one copy of the images is alive at a time;
    # each equals the shifted (and mirrored) images, and the first is the images themselves.
    x = torch.arange(2 * 1 * 3 * 3, dtype=torch.float32).reshape(2, 1, 3, 3) + 1
    views = lira.query_views(x, flip=True)
    assert not isinstance(views, list) and len(views) == 10
    assert views[0] is x
    for i, (dy, dx) in enumerate(lira.SHIFTS):
        expected = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        if dy:
            expected[:, :, 0 if dy > 0 else -1, :] = 1.0  # the background: the minimum
        if dx:
            expected[:, :, :, 0 if dx > 0 else -1] = 1.0
        assert torch.equal(views[i], expected)
        assert torch.equal(views[i + 5], torch.flip(expected, dims=(3,)))
    assert [v.shape for v in views] == [x.shape] * 10
    assert torch.equal(views[-1], views[9]) and len(views[2:4]) == 2
    with pytest.raises(IndexError):
        views[10]
