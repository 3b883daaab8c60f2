"""Array parameters written as literals: plain values only, never quoted, never guessed."""

import re
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from raccrochage_platform.db import array_literal


def test_plain_values_are_joined() -> None:
    case = str(uuid.uuid4())
    assert array_literal([case, "psad-33-bordeaux-nord", "2A"]) == "{" + case + ",psad-33-bordeaux-nord,2A}"
    assert array_literal([17, 0, 120]) == "{17,0,120}"
    assert array_literal([]) == "{}"


@pytest.mark.parametrize("bad", [None, "", "NULL", "null", "a b", 'a"b', "a,b", "{a}", "a\\b", "é"])
def test_a_value_that_needs_quoting_is_refused(bad) -> None:
    with pytest.raises(ValueError, match="array_literal"):
        array_literal(["fine", bad, "fine-too"])


def test_a_single_empty_value_is_refused_not_read_as_an_empty_array() -> None:
    with pytest.raises(ValueError, match="array_literal"):
        array_literal([""])


@pytest.mark.parametrize("bad", [["a", ""], ["", "a"], ["a", "", "b"], ["nULl"], [1, "a b"], ["a\u00a0b"]])
def test_empty_elements_anywhere_and_odd_characters_are_refused(bad) -> None:
    with pytest.raises(ValueError, match="array_literal"):
        array_literal(bad)


def test_integers_and_strings_mixed_are_joined() -> None:
    assert array_literal([1, "b-2", -3]) == "{1,b-2,-3}"


# The rule as a regular expression (how it was first written): the fast check must agree with it.
_RULE = re.compile(r"[0-9A-Za-z-]+(?:,[0-9A-Za-z-]+)*")
_NULL = re.compile(r"(?:^|,)(?i:null)(?:,|$)")


@given(
    st.lists(
        st.one_of(
            st.integers(),
            st.text(alphabet='aZ0-,lLuUnN é"{}\\', max_size=6),
            st.sampled_from(["null", "NULL", "Null", "nul", "nulls"]),
        )
    )
)
def test_the_fast_check_agrees_with_the_rule(values) -> None:
    text = ",".join(map(str, values))
    plain = not values or (
        _RULE.fullmatch(text) is not None
        and text.count(",") == len(values) - 1
        and _NULL.search(text) is None
    )
    if plain:
        assert array_literal(values) == "{" + text + "}"
    else:
        with pytest.raises(ValueError, match="array_literal"):
            array_literal(values)
