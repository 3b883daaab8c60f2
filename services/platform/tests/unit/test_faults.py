"""RACCROCHAGE_CRASH_AT: parsed strictly; a point kills its process at its armed hit, no other."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from raccrochage_platform.faults import VARIABLE, crash_point, parse


def test_points_and_hits_are_parsed() -> None:
    assert parse("") == {}
    assert parse("consumer.after_commit:3, relay.after_publish") == {
        "consumer.after_commit": 3,
        "relay.after_publish": 1,
    }


@pytest.mark.parametrize(
    ("spec", "says"),
    [("consumer.after_ack:1", "unknown point 'consumer.after_ack'"), ("uow.mid_transaction:0", "from 1")],
)
def test_a_wrong_spec_says_what(spec: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse(spec)


def test_unarmed_points_do_nothing() -> None:
    crash_point("consumer.after_commit")  # this process has no RACCROCHAGE_CRASH_AT


def test_the_armed_hit_kills_the_process_with_sigkill() -> None:
    script = (
        "from raccrochage_platform.faults import crash_point\n"
        "for n in range(1, 6):\n"
        "    crash_point('uow.mid_transaction'); crash_point('relay.after_publish')\n"
        "    print(n, flush=True)\n"
    )
    env = {**os.environ, VARIABLE: "relay.after_publish:3"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL
    assert done.stdout.split() == ["1", "2"]
