"""Models: ``RestorationModel`` (``restoration_model.py``) and its learning-rate schedules."""
