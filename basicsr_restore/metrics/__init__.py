"""Protocol-aware metrics (``*_metric.py``, registered in basicsr's METRIC_REGISTRY)."""
