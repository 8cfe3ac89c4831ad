"""The helpers that fit text to Slack's fields (unit tests of small pure functions)."""

from __future__ import annotations

import html

import pytest

from bot.messages import blocks as kit
from bot.messages.format import (
    clip,
    field,
    fit,
    fit_list,
    section,
    split_markup,
    text_sections,
)
from tests.support.slack_limits import check_modal


def test_fit_escapes_and_cuts_visibly_never_inside_an_entity():
    assert fit("a < b & c", 100) == "a &lt; b &amp; c"
    for limit in range(1, 30):
        cut = fit("AT&T <rocks> & rolls " * 3, limit)
        assert len(cut) <= limit and cut.endswith("…")
        body = cut[:-1]
        assert body.count("&") == body.count(";"), cut  # no half entity like "&am"
    assert fit("", 10) == "" and fit(None, 10) == ""


def test_clip_does_not_break_a_token():
    text = "Due " + "<!date^1700000000^{date_short_pretty}|2023-11-14 22:13 UTC>"
    assert clip(text, 30) == "Due …"
    assert clip("x" * 10, 10) == "x" * 10 and clip("x" * 11, 10) == "x" * 9 + "…"


def test_fit_list_says_how_many_more():
    names = [f"Component {n}" for n in range(300)]
    out = fit_list(names, 200)
    assert len(out) <= 200 and out.startswith("Component 0, Component 1")
    shown = out.rsplit(" and ", 1)[0].split(", ")
    assert out.endswith(f" and {300 - len(shown)} more")
    assert fit_list(["a & b", "c"], 100) == "a &amp; b, c"
    assert fit_list([], 100) == "None listed"
    lone = fit_list(["x" * 500, "y"], 100)
    assert len(lone) <= 100 and lone.endswith("… and 1 more")


def test_split_markup_keeps_every_word_and_every_entity():
    text = "word & <tag> " * 1000
    pieces = split_markup(html.escape(text, quote=False), 3000)
    assert all(0 < len(p) <= 3000 for p in pieces) and len(pieces) >= 5
    assert html.unescape(" ".join(pieces)).split() == text.split()
    assert all(p.count("&") == p.count(";") for p in pieces)
    solid = split_markup("x" * 7000, 3000)
    assert [len(p) for p in solid] == [3000, 3000, 1000]
    assert split_markup("", 3000) == []


def test_text_sections_caps_the_blocks_and_shows_the_cut():
    sections = text_sections("word " * 10000, max_blocks=3)
    assert len(sections) == 3 and sections[-1]["text"]["text"].endswith("…")
    assert all(len(s["text"]["text"]) <= 3000 for s in sections)
    assert text_sections("") == [] and text_sections("short")[0] == section("short")


def test_field_holds_2000_with_its_label():
    made = field("Components", "x" * 5000)
    assert len(made["text"]) == 2000 and made["text"].startswith("*Components*\n") and made["text"].endswith("…")


def test_text_input_grows_to_hold_its_value_and_refuses_what_no_field_holds():
    grown = kit.text_input("t", initial="r" * 400, max_length=150, placeholder="p")
    assert grown["initial_value"] == "r" * 400 and grown["max_length"] == 400
    assert kit.text_input("t", initial="short", max_length=150, placeholder="p")["max_length"] == 150
    assert kit.text_input("t", initial="r" * 3000, max_length=150, placeholder="p")["max_length"] == 3000
    with pytest.raises(ValueError):
        kit.text_input("t", initial="r" * 3001, max_length=150, placeholder="p")
    assert kit.typed("r" * 5000) == "r" * 2999 + "…"


def test_selects_past_100_options_use_groups_so_every_initial_option_is_offered():
    options = [(f"Name {n}", f"id-{n}") for n in range(250)]
    element = kit.multi_select("c", options, ["id-249", "id-0"], "Pick", group_label="Components")
    assert [len(g["options"]) for g in element["option_groups"]] == [100, 100, 50]
    assert element["option_groups"][2]["label"]["text"] == "Components 201–250"
    assert [o["value"] for o in element["initial_options"]] == ["id-0", "id-249"]
    view = kit.modal("cb", "Title", "Go", [kit.input_block("b", "Components", element)], {})
    check_modal(view)
    single = kit.select("s", options, "id-200", "Pick")
    assert single["initial_option"]["value"] == "id-200" and "option_groups" in single
    check_modal(kit.modal("cb", "Title", "Go", [kit.input_block("b", "One", single)], {}))
    with pytest.raises(ValueError):
        kit.option("label", "v" * 151)
