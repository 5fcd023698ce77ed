"""An example Glidepath plugin: `tiny_resnet` (a model) and `shapes` (a dataset)."""
