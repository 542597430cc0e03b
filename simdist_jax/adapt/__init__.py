"""Stage 4: dynamics-only adaptation in the shifted "real" world (recording, evaluation, the adaptation loop)."""
