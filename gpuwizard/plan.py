"""Recipe -> ordered Steps. Pure functions: nothing here touches a host or the network.

Order: NVIDIA stack (drivers) -> Python environment -> rclone + datasets ->
verification -> the user's own steps. Every recipe string that reaches the shell is
quoted by the module that builds the step.
"""

from __future__ import annotations

from gpuwizard.recipe import Recipe
from gpuwizard.steps import Step


def build(recipe: Recipe) -> list[Step]:
    """The full ordered step list for one host of ``recipe``."""
    raise NotImplementedError  # filled in by the lead
