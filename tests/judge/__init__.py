"""Tests of helpers/judge/; the shared fixtures stay in tests/conftest.py and tests/common.py."""
