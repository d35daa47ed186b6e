"""Tests of helpers/base/; the shared fixtures stay in tests/conftest.py and tests/common.py."""
