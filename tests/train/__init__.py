"""Tests of helpers/train/; the shared fixtures stay in tests/conftest.py and tests/common.py."""
