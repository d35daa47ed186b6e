"""Tests of helpers/teaching/; the shared fixtures stay in tests/conftest.py and tests/common.py."""
