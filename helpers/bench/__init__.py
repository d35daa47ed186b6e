"""The benchmark harness: this project's loading and fast modes against plain diffusers, in one run.

Loaded only by `python -m helpers bench` and notebook 08, never by `import helpers`:

- `harness`: each model and variant measured in a fresh process; the switch time; the run as a whole;
- `report`: the machine, the summary against the baseline, the targets, JSON, markdown and a chart;
- `flops`: FLOPs of one denoising step, counted from a model's configs on the meta device;
- `randomweights`: full-size models with random weights from real config files, for GPUs with no network.
"""
