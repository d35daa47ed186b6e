"""pytest set-up for `tests/` and `notebooks/` alike (see tests/environment.py)."""

import json

import pytest

from tests.environment import build_hub


def pytest_collection_finish(session):
    # Notebooks run in their own kernels, which need the offline hub on disk before they start.
    if any(item.nodeid.endswith(".ipynb") for item in session.items):
        build_hub()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A notebook that runs longer than the time budget in its metadata fails, even if every cell passed."""
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or not item.nodeid.endswith(".ipynb") or not report.passed:
        return
    budget = json.loads(item.path.read_text(encoding="utf-8"))["metadata"]["sdzoo"]["time_budget_s"]
    if call.duration > budget:
        report.outcome = "failed"
        report.longrepr = f"{item.path.name} took {call.duration:.0f} s, over its time budget of {budget} s"
