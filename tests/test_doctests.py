"""The examples in the library's docstrings run as written (the docs quote some of them)."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["hf_lrschedule.options", "hf_lrschedule.refine", "hf_lrschedule.schedules", "hf_lrschedule.config", "hf_lrschedule.health", "hf_lrschedule.health_report", "hf_lrschedule.health_live"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no docstring examples"
    assert result.failed == 0
