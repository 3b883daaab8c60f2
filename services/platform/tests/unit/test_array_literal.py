"""Array parameters written as literals: plain values only, never quoted, never guessed."""

import uuid

import pytest

from raccrochage_platform.db import array_literal


def test_plain_values_are_joined() -> None:
    case = str(uuid.uuid4())
    assert array_literal([case, "psad-33-bordeaux-nord", "2A"]) == "{" + case + ",psad-33-bordeaux-nord,2A}"
    assert array_literal([17, 0, 120]) == "{17,0,120}"
    assert array_literal([]) == "{}"


@pytest.mark.parametrize("bad", [None, "", "NULL", "null", "a b", 'a"b', "a,b", "{a}", "a\\b", "é"])
def test_a_value_that_needs_quoting_is_refused(bad) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="array_literal"):
        array_literal(["fine", bad, "fine-too"])


def test_a_single_empty_value_is_refused_not_read_as_an_empty_array() -> None:
    with pytest.raises(ValueError, match="array_literal"):
        array_literal([""])
