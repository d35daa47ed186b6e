"""Many generations at once: `sweep` (a grid of settings, resumable), `file` (sweep files) `compare`
(models side by side, scored) and `quality` (quantized plans against full precision, scored).

It imports `helpers.run` to generate and `helpers.judge` to score, and what those import.
"""
