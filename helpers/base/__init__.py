"""The ground floor: what every wing shares.

Errors for people (`errors`), the one table of family facts (`families`), the sampler names (`schedulers`),
devices and dtypes, images and masks, the record of a loaded pipeline (`loaded`), PNG recipes (`records`), the
adapters folder that training writes and the zoo reads by name (`adapters`: diffusers, kohya and A1111 files),
image grids, timings and their statistics, library noise kept quiet (`quiet`, and `library_notices`, imported
first of all), whether the Hub can be reached (`online`), the smoke switch and the version. Modules here
import only each other and libraries, never a wing above.
"""
