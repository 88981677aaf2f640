"""README's backend tables are the generated ones (``python3 -m ctr_magic.capabilities --update README.md``)."""

from __future__ import annotations

from pathlib import Path

from ctr_magic import capabilities, features

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_carries_the_generated_tables() -> None:
    assert capabilities.render_readme_section() in README.read_text(), (
        "README's backend tables are stale: run `python3 -m ctr_magic.capabilities --update README.md`")


def test_every_feature_names_its_commands_and_a_way_out() -> None:
    for item in features.FEATURES:
        assert item.way_out and item.title
        assert features.members(item.protocol), item.title
