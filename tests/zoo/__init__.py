"""Tests of helpers/zoo/; the shared fixtures stay in tests/conftest.py and tests/common.py."""
