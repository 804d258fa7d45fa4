"""Layer 1: model files: the expression language, units, species physiology, and the TOML parser
that turns a model file into a frozen `ModelSpec`; the model library."""
