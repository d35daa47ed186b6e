"""Judging images: the metrics of the registry's `evaluators` and the tables they fill.

`metricmath` (Fréchet distance, KID, IS), `inception` (the FID network), `metrics` (the judges, loaded and run),
`evaluate` (scores as tables, plots and files), `prompts` (the PartiPrompts suite) and `votes` (blind A/B votes,
Bradley-Terry). It imports the registry and the ground floor; it stands beside `helpers.run` and never imports it.
"""
