"""Tests of helpers/panels/; the shared fixtures stay in tests/conftest.py and tests/common.py."""
