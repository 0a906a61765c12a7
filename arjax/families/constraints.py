"""Constraints for families NumPyro does not have: the circle as fractions ``[0, 1]``."""

from numpyro.distributions import constraints
from numpyro.distributions.transforms import AffineTransform, ComposeTransform, SigmoidTransform, biject_to

__all__ = ["unit_circle"]


class _UnitCircle(constraints._Interval, constraints._SingletonConstraint):
    """Fractions on the circle, checked as the closed interval ``[0, 1]`` like NumPyro's ``circular``."""

    def __init__(self):
        super().__init__(0.0, 1.0)

    def tree_flatten(self):
        return (), ((), dict())


unit_circle = _UnitCircle()
"""The circle ``[0, 1)`` of fractional coordinates; NUTS sees it through a sigmoid, as NumPyro's ``circular``."""


@biject_to.register(type(unit_circle))
def _unit_circle_transform(constraint):
    return ComposeTransform([SigmoidTransform(), AffineTransform(0.0, 1.0, domain=constraints.unit_interval)])
