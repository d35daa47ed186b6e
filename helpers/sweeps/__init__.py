"""Many generations at once: `sweep` (a grid of settings, resumable), `file` (sweep files) and `compare`
(models side by side, scored).

It imports `helpers.run` to generate and `helpers.judge` to score, and what those import.
"""
