"""Adding an attack or a mechanism is one registration: a toy attack and a toy mechanism,
registered here and nowhere else, appear in a trial's row, in the objectives a sweep accepts,
in the analysis tables and in the README's tables."""

from __future__ import annotations

import pytest
import torch

from raymia.analysis.configurations import mechanism_summary, mechanisms_markdown
from raymia.attacks import Attack
from raymia.attacks import register as register_attack
from raymia.attacks import unregister as unregister_attack
from raymia.errors import ConfigError
from raymia.mechanisms import Batch, Mechanism, Setting, register, unregister
from raymia.readme import attack_table, mechanism_table
from raymia.results.front import parse_objectives
from raymia.results.labels import config_label
from raymia.results.rows import load_results, write_trials
from raymia.results.tables import front_table
from raymia.sweep.settings import SweepSettings, check_settings
from raymia.sweep.space import load_space
from raymia.sweep.worker import trial_config
from raymia.trial.runner import run_trial


class ToyDim(Mechanism):
    """Dims every input by a factor 1 - strength."""

    name = "toy_dim"
    level = "input"
    setting = Setting(float, "dimming factor", lt=1.0)
    notes = "a toy"
    hooks = frozenset({"batch"})
    order = 25

    def transform(self, batch: Batch) -> Batch:
        return batch.with_(x=batch.x * (1 - self.strength))


def _top_logit(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return logits.max(dim=1).values


TOY_ATTACK = Attack(
    name="toy_top", summary="the top logit", citation="a test", rank=70, from_logits=_top_logit
)
FAST = {
    "epochs": 1,
    "members": 150,
    "non_members": 150,
    "reference": 200,
    "device": "cpu",
    "dtc": {"enabled": False},
    "attacks": {
        "n_bootstrap": 0,
        "n_permutations": 20,
        "merlin_neighbours": 5,
        "shadow_calibration": False,
    },
}


@pytest.fixture(scope="module")
def rows():
    """The toys registered; a baseline trial and a toy_dim trial, with their rows."""
    register(ToyDim)
    register_attack(TOY_ATTACK)
    try:
        baseline = run_trial({**FAST, "seed": 1})
        dimmed = run_trial({**FAST, "seed": 1, "mechanisms": {"toy_dim": 0.5}})
        yield baseline, dimmed
    finally:
        unregister_attack("toy_top")
        unregister("toy_dim")


def test_the_toys_are_in_a_trials_row(rows):
    baseline, dimmed = rows
    assert dimmed["toy_dim"] == 0.5 and baseline["toy_dim"] == 0.0
    for row in rows:
        assert 0.0 <= row["toy_top_adv"] <= 1.0 and 0.0 <= row["toy_top_auc"] <= 1.0
        assert row["adv"] >= row["toy_top_adv"]  # the best attack's advantage counts it
        assert len(row["scores"]["score_toy_top"]) == 2 * row["eval_members"]
    # the mechanism ran: dimmed inputs train other weights, so other scores
    assert baseline["scores"]["score_loss"].tolist() != dimmed["scores"]["score_loss"].tolist()


def test_a_sweep_accepts_the_toys(rows, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("mechanisms:\n  toy_dim: {uniform: [0.0, 0.5]}\n  dropout: 0.1\n")
    loaded = load_space(space)
    assert loaded.varied() == ["toy_dim"]
    settings = SweepSettings(space=str(space), out=str(tmp_path / "out"))
    for objectives in ("acc:max,toy_top_adv:min", "acc:max,toy_top_auc:min"):
        check_settings(SweepSettings(**{**settings.__dict__, "objectives": objectives}), loaded)
    with pytest.raises(ConfigError, match="unknown objective 'toy_top_tpr'"):
        check_settings(
            SweepSettings(**{**settings.__dict__, "objectives": "acc:max,toy_top_tpr:min"}),
            loaded,
        )
    params = {"trial": {}, "seed": 0, "mechanisms": {"toy_dim": 0.3, "dropout": 0.1}}
    assert trial_config(params) == ({"seed": 0, "mechanisms": params["mechanisms"]}, [])


def test_the_analysis_tables_show_the_toys(rows, tmp_path):
    records = []
    for i, row in enumerate(rows):
        record = {k: v for k, v in row.items() if k != "scores"}
        records.append({**record, "trial_id": f"t{i}"})
    write_trials(tmp_path, records)
    df = load_results(tmp_path)
    summary = mechanism_summary(df)
    assert list(summary["config"]) == ["none", "toy_dim=0.5"]
    assert "toy_top_adv_mean" in summary.columns
    table = mechanisms_markdown(summary)
    assert "| toy_dim=0.5 |" in table and "toy_top_adv" in table
    front = front_table(df, parse_objectives("acc:max,toy_top_adv:min"))
    assert "toy_top_adv ↓" in front
    assert config_label(df.iloc[1]) == "toy_dim=0.5"


def test_the_readme_tables_list_the_toys(rows):
    assert "| input | `toy_dim` | dimming factor, [0, 1) | a toy |" in mechanism_table()
    assert "| `toy_top` | the top logit | - | no | - | a test |" in attack_table()
