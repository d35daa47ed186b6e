"""Fine-tuning: LoRA, DreamBooth-LoRA and textual inversion.

`data` (images, captions, buckets), `plan` (the machine's preset and the memory plan), `steps` (one step), `loop`
(the loop, checkpoints, validation) and `report` (base against fine-tune). What it saves (diffusers, kohya and
A1111 files) is written by `helpers.base.adapters`, where `helpers.run.styles` finds it again by name. It imports
`helpers.run`, `helpers.judge` and everything below them, never the panels or sweeps.
"""
