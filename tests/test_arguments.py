"""The commands' number types: a bad value is a usage error that says what was expected."""

from __future__ import annotations

import argparse

import pytest

from jaxnsfw import arguments


@pytest.mark.parametrize("parse, good, bad, message", [
    (arguments.positive_int, ("1", 1), "0", "must be at least 1, got 0"),
    (arguments.positive_float, ("0.5", 0.5), "0", "must be more than 0, got 0.0"),
    (arguments.non_negative_float, ("0", 0.0), "-1", "must be 0 or more, got -1.0"),
    (arguments.probability, ("1", 1.0), "1.5", "must be within 0..1, got 1.5"),
])
def test_each_type_takes_its_range_and_names_it_when_refused(parse, good, bad, message):
    assert parse(good[0]) == good[1]
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse(bad)


def test_progress_follows_the_flag_or_else_whether_stderr_is_a_terminal(monkeypatch):
    parser = argparse.ArgumentParser()
    arguments.add_progress_arguments(parser)
    assert arguments.show_progress(parser.parse_args(["--progress"])) is True
    assert arguments.show_progress(parser.parse_args(["--no-progress"])) is False
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert arguments.show_progress(parser.parse_args([])) is True
