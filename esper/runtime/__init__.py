"""Tasks and data loading."""

from esper.runtime.data import TensorLoader, lm_windows, random_crop_flip
from esper.runtime.synthetic import FreshSyntheticLoader, SyntheticConfig, make_images
from esper.runtime.tasks import TASK_NAMES, Task, TaskOptions, build_task

__all__ = ["TensorLoader", "lm_windows", "random_crop_flip", "FreshSyntheticLoader", "SyntheticConfig",
           "make_images", "TASK_NAMES", "Task", "TaskOptions", "build_task"]
