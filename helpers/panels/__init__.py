"""The notebook panels (ipywidgets): `widgets` (`setup_notebook`, the compare and sweep panels),
`generation` (the generation panel, assembled from its sections), `gallery`, `settings` (what the panel's inputs
mean), `ab` (blind A/B votes) and `background` (the thread they run in).

Panels stand above everything they show: they may import `helpers.sweeps`, `helpers.run`, `helpers.judge`, the
registry and the ground floor; nothing below imports a panel.
"""
