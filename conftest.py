"""pytest set-up for `tests/` and `notebooks/` alike (see tests/environment.py)."""

from tests.environment import build_hub


def pytest_collection_finish(session):
    # Notebooks run in their own kernels, which need the offline hub on disk before they start.
    if any(item.nodeid.endswith(".ipynb") for item in session.items):
        build_hub()
