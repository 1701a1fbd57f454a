"""Randomness keyed by a seed tensor, so a served request is reproducible and stateless."""

import keras
from keras import ops


class StatelessSeed(keras.random.SeedGenerator):
    """A `SeedGenerator` whose draws depend only on a seed tensor and their order.

    `keras.random` accepts only Python ints or `SeedGenerator`s as seeds. A served `sample`
    signature receives its seed as a tensor, and must not keep a seed variable that concurrent
    requests would race on. This generator holds no variable: draw i of a call uses the
    stateless seed pair `(seed, i)`, so the same seed always gives the same draws.

    Args:
        seed: an integer or scalar integer tensor.

    Example:
    >>> rng = StatelessSeed(7)
    >>> a = keras.random.normal((2,), seed=rng)
    >>> b = keras.random.normal((2,), seed=StatelessSeed(7))  # equal to `a`
    """

    def __init__(self, seed):  # no super().__init__(): that would create a state variable
        self._seed = ops.cast(seed, "int32")
        self._draws = 0

    def next(self, ordered=True):
        self._draws += 1
        return ops.stack([self._seed, ops.convert_to_tensor(self._draws, "int32")])
