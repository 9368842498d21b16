"""Datasets (``*_dataset.py``, registered in basicsr's DATASET_REGISTRY) and LMDB input/output."""
