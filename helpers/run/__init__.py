"""Running a model: a registry entry becomes a loaded pipeline, then images and their records.

`memory` (where the weights live), `plan` (every way a model fits a machine, and the fastest that fits),
`fast` (speed-ups, with its options in `attention`, `stepcache` and `compilecache`), `loading` (a ready pipeline),
`singlefile` (checkpoint files and local model folders), `cache` (what stays loaded), the additions a call can bring
(`styles` for LoRAs and embeddings, `control`, `ip_adapter`, `prompt_weights`, `previews`, `hires` and `upscale`),
`request` (a call settled against its registry entry), `generate` (settle, prepare, run, record) and `edit` (img2img,
inpainting, outpainting). It imports the registry (`helpers.zoo`) and the ground floor, never the judges, sweeps,
training or panels above it.
"""
