"""The offline hub: tiny random stand-ins with the real repos' ids and file layout (`tiny`), written
into a Hub cache folder (`hub`), and single checkpoint files in the original layouts (`checkpoints`),
so tests, CI and `python -m helpers offline-hub` run with no network.

It imports the registry (for the repos to stand in for) and `helpers.judge.inception` (the FID network's tiny twin).
"""
