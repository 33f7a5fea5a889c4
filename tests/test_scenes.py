"""The role-play scene catalog: built-in TOML files, an operator's directory, and picking a scene by name,
by level or by a learner's interests."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from core.i18n import UI_LANGUAGES
from core.lesson import Level
from core.scenes import Scene, SceneError, find, for_level, load, surprise

MINIMAL = """\
level = "B1"
role = "a tour guide in an old town"
setting = "the main square at ten in the morning"
goal = "ask about the tour's route, length and price"
phrases = ["How long is the tour?", "Where does it start?", "How much is it?"]

[title]
en = "{title}"

[goal_text]
en = "Find out where the tour goes, how long it takes and what it costs."
"""


@pytest.fixture(scope="module")
def built_in() -> dict[str, Scene]:
    return load()


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_every_built_in_scene_loads_with_at_least_four_for_each_level_a1_to_c1(built_in: dict[str, Scene]) -> None:
    counts = Counter(scene.level for scene in built_in.values())
    assert len(built_in) >= 24
    assert all(counts[level] >= 4 for level in (Level.A1, Level.A2, Level.B1, Level.B2, Level.C1))


def test_every_built_in_scene_has_its_title_and_goal_in_all_six_ui_languages(built_in: dict[str, Scene]) -> None:
    for scene in built_in.values():
        assert set(scene.titles) == set(UI_LANGUAGES), scene.id
        assert set(scene.goals) == set(UI_LANGUAGES), scene.id
        assert all(len(title) <= 30 for title in scene.titles.values()), scene.id


def test_every_built_in_scene_has_three_to_five_phrases_and_turns_in_range(built_in: dict[str, Scene]) -> None:
    for scene in built_in.values():
        assert 3 <= len(scene.phrases) <= 5, scene.id
        assert 6 <= scene.turns <= 20, scene.id


def test_scene_ids_fit_a_button_action(built_in: dict[str, Scene]) -> None:
    assert all(len(f"scene:{scene_id}".encode()) <= 64 for scene_id in built_in)


def test_an_operator_scene_with_only_english_texts_falls_back_to_english(tmp_path: Path) -> None:
    write(tmp_path, "old-town-tour", MINIMAL.format(title="A walking tour"))
    scene = load(tmp_path)["old-town-tour"]
    assert (scene.title("de"), scene.turns, scene.tags) == ("A walking tour", 12, ())
    assert scene.goal_for("pt-BR") == "Find out where the tour goes, how long it takes and what it costs."


def test_an_operator_scene_replaces_the_built_in_with_the_same_id(tmp_path: Path) -> None:
    write(tmp_path, "cafe-order", MINIMAL.format(title="Our own café"))
    scenes = load(tmp_path)
    assert scenes["cafe-order"].title("es") == "Our own café"
    assert len(scenes) == len(load())


def test_a_file_missing_a_key_raises_scene_error_naming_the_file_and_key(tmp_path: Path) -> None:
    write(tmp_path, "no-goal", MINIMAL.format(title="A walking tour").replace('goal = "ask', 'aim = "ask'))
    with pytest.raises(SceneError, match=r"no-goal\.toml: missing key.*goal"):
        load(tmp_path)


def test_a_file_with_an_unknown_level_raises_scene_error_naming_the_file(tmp_path: Path) -> None:
    write(tmp_path, "too-hard", MINIMAL.format(title="A walking tour").replace('"B1"', '"D4"'))
    with pytest.raises(SceneError, match=r"too-hard\.toml.*unknown level 'D4'"):
        load(tmp_path)


@pytest.mark.parametrize(
    ("name", "old", "new", "what"),
    [
        ("long-title", "A walking tour", "A very long walking tour of the old town", "at most 30"),
        ("few-turns", "level =", "turns = 3\nlevel =", "from 6 to 20"),
        ("text-turns", "level =", 'turns = "ten"\nlevel =', "whole number"),
        ("Bad_Id", "level =", "level =", "not a valid scene id"),
        ("list-role", 'role = "a tour guide in an old town"', 'role = ["a guide"]', "'role' must be a string"),
        ("typo-key", "level =", 'tag = ["walks"]\nlevel =', "unknown key"),
        ("bad-toml", "[title]", "[title", "not valid TOML"),
    ],
)
def test_an_invalid_value_raises_scene_error_saying_what_is_wrong(
    tmp_path: Path, name: str, old: str, new: str, what: str
) -> None:
    write(tmp_path, name, MINIMAL.format(title="A walking tour").replace(old, new))
    with pytest.raises(SceneError, match=f"{name}.toml.*{what}"):
        load(tmp_path)


def test_a_missing_operator_directory_raises_scene_error(tmp_path: Path) -> None:
    with pytest.raises(SceneError, match="does not exist"):
        load(tmp_path / "nowhere")


def test_find_by_id(built_in: dict[str, Scene]) -> None:
    assert find(built_in, "lost-luggage") is built_in["lost-luggage"]


def test_find_by_a_spanish_title_with_accents(built_in: dict[str, Scene]) -> None:
    assert find(built_in, "En el médico") is built_in["doctor-cold"]


def test_find_by_a_spanish_title_without_accents(built_in: dict[str, Scene]) -> None:
    assert find(built_in, "en el medico") is built_in["doctor-cold"]


def test_find_by_a_word_of_a_title(built_in: dict[str, Scene]) -> None:
    assert find(built_in, "café") is built_in["cafe-order"]


def test_find_by_a_typo(built_in: dict[str, Scene]) -> None:
    assert find(built_in, "lost lugage") is built_in["lost-luggage"]


def test_find_by_a_misspelt_word_of_a_title(built_in: dict[str, Scene]) -> None:
    assert find(built_in, "docter") is built_in["doctor-cold"]


def test_find_gives_none_for_nonsense(built_in: dict[str, Scene]) -> None:
    assert find(built_in, "xqzv wjkp") is None
    assert find(built_in, "  ") is None


def test_for_level_c2_gives_the_c1_scenes(built_in: dict[str, Scene]) -> None:
    c1 = for_level(built_in, Level.C1)
    assert for_level(built_in, Level.C2) == c1
    assert [scene.id for scene in c1] == sorted(scene.id for scene in c1)
    assert c1 and all(scene.level is Level.C1 for scene in c1)


def test_surprise_prefers_a_scene_whose_tag_occurs_in_the_interests(built_in: dict[str, Scene]) -> None:
    picks = {surprise(built_in, Level.A2, ["plays football on Sundays"], random.Random(seed)).id for seed in range(20)}
    assert picks == {"sports-club"}


def test_surprise_is_deterministic_with_a_seeded_rng(built_in: dict[str, Scene]) -> None:
    first = [surprise(built_in, Level.B1, ["collects stamps"], random.Random(seed)).id for seed in range(10)]
    again = [surprise(built_in, Level.B1, ["collects stamps"], random.Random(seed)).id for seed in range(10)]
    assert first == again
    assert len(set(first)) > 1
