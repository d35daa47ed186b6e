"""Tests of helpers/offline/; the shared fixtures stay in tests/conftest.py and tests/common.py."""
