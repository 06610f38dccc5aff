"""Devices: the data-parallel mesh and multi-process start-up."""
