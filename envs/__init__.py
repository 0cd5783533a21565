"""Task families as gymnasium environments, and the wrappers (non-stationary, sparse reward, recorder)."""

from envs.registry import FAMILIES, make, register_all
from envs.tasks import Task, TaskDistribution, TaskError

register_all()

__all__ = ["FAMILIES", "Task", "TaskDistribution", "TaskError", "make", "register_all"]
