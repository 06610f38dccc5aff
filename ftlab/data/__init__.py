"""Datasets (image folders, annotation-file datasets, the digits demo) and the input pipeline."""
