"""Tasks and environments: the MJX env, per-episode domains, the MuJoCo C "real" twin and the task registry."""
