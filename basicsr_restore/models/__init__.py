"""Models: ``RestorationModel`` (``restoration_model.py``: its options and how the parts are put together) with its
weights (``weights.py``), its training step (``training.py``) and its validation (``validation.py``); the forks' model
names and recipe keys (``fork_model.py``, ``fork_recipe.py``), the learning-rate schedules (``lr_scheduler.py``) and
the NaN guard of the step (``step_guard.py``)."""
