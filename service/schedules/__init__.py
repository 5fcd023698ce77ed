"""Schedule preview: the LR per epoch of a scheduler spec, and its decisions over given metric
values, from the worker's own code (service/training/schedule.py `walk`) without training."""
