"""Task configs: one module per task (`cartpole`, `go2`), each with `get_config(preset)`."""
