"""The README's mechanism and attack tables are the registries, rendered (raymia.readme)."""

from __future__ import annotations

from raymia.attacks import REGISTRY as ATTACKS
from raymia.mechanisms import REGISTRY as MECHANISMS
from raymia.readme import README, main, render


def test_the_readme_tables_are_up_to_date():
    assert main(["--check"]) == 0, "run: python -m raymia.readme"


def test_the_tables_list_every_registered_mechanism_and_attack_once():
    text = README.read_text()
    for name in MECHANISMS:
        assert text.count(f"| `{name}` |") == 1, name
    for name in ATTACKS:
        assert text.count(f"| `{name}` |") == 1, name


def test_a_stale_table_is_found_and_rewritten(tmp_path):
    stale = tmp_path / "README.md"
    stale.write_text(
        "intro\n<!-- begin attacks table (python -m raymia.readme) -->\n| old |\n"
        "<!-- end attacks table -->\noutro\n"
    )
    assert main(["--check", "--file", str(stale)]) == 1
    assert main(["--file", str(stale)]) == 0
    text = stale.read_text()
    assert "| old |" not in text and "| `merlin` |" in text
    assert text.startswith("intro\n") and text.endswith("outro\n")
    assert render(text) == text
