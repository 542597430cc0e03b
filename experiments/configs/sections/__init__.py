"""Config sections shared by the task configs: one per pipeline stage, each with `get(task, preset, dims)`."""
