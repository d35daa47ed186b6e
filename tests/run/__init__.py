"""Tests of helpers/run/; the shared fixtures stay in tests/conftest.py and tests/common.py."""
