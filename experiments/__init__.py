"""Experiment configs of the pipeline (`experiments/configs/<task>.py:<preset>`)."""
