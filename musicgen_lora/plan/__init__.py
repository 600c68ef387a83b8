"""The memory planner: the peak memory of training a config, predicted before anything is loaded
(:func:`plan_memory`), and the largest batch x duration that fits a given memory (:mod:`.fit`)."""

from .memory import MemoryPlan, plan_memory

__all__ = ["MemoryPlan", "plan_memory"]
