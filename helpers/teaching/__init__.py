"""The teaching code of notebooks 09 and 13: `diffusion` (the forward and reverse process on real
schedulers), and from scratch on nothing but torch and scikit-learn: `unet` (SD's U-Net rebuilt, with the key map
from diffusers'), `digits`, `tinydiffusion` (DDPM, improved DDPM, guidance) and `tinyvae`.

It imports only the ground floor.
"""
