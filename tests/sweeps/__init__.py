"""Tests of helpers/sweeps/; the shared fixtures stay in tests/conftest.py and tests/common.py."""
