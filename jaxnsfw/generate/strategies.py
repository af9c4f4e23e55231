"""The evolution strategies `evolve` can use, behind one interface on flat (P, D) gene arrays.

`ga` is DEAP's eaSimple (ga.py), the set-up the open_nsfw port used; the others are evosax's
algorithms with their published defaults, started around the best genome of the random initial
population with a given spread (their std_init, in genes). All minimise fitness.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import jax
import jax.numpy as jnp

from jaxnsfw.generate.ga import TournamentGA


class Strategy(enum.Enum):
    GA = "ga"  # DEAP eaSimple: tournament 3, two-point crossover 0.5, mutation 0.1
    SIMPLE_GA = "simple-ga"  # evosax SimpleGA (Such et al. 2017): truncation selection
    CMA_ES = "cma-es"
    SEP_CMA_ES = "sep-cma-es"
    SNES = "snes"
    PGPE = "pgpe"
    DE = "de"  # differential evolution


# Genes live in [0, 1]: a spread of 0.1 moves a circle by a tenth of the canvas, a colour by 25 levels.
DEFAULT_SPREAD = 0.1

_DISTRIBUTION_BASED = {Strategy.CMA_ES: "CMA_ES", Strategy.SEP_CMA_ES: "Sep_CMA_ES", Strategy.SNES: "SNES",
                       Strategy.PGPE: "PGPE"}
_POPULATION_BASED = {Strategy.SIMPLE_GA: "SimpleGA", Strategy.DE: "DifferentialEvolution"}


class MissingExtra(RuntimeError):
    """A strategy needs evosax, which is an extra."""


def check_available(strategy: Strategy) -> None:
    """MissingExtra, saying what to install, when `strategy` needs evosax and it is not installed."""
    import importlib.util

    if strategy is not Strategy.GA and importlib.util.find_spec("evosax") is None:
        raise MissingExtra(f'--strategy {strategy.value} uses evosax, which is not installed: '
                           f'pip install "jaxnsfw[evolve]"')


@dataclasses.dataclass(frozen=True)
class Evolver:
    """ask/tell over flat genes for one strategy; every method is pure and jit-able."""

    strategy: Strategy
    population_size: int
    num_dims: int
    spread: float = DEFAULT_SPREAD  # evosax's std_init (SimpleGA: its mutation std); ga does not use it

    def _algorithm(self):
        if self.strategy is Strategy.GA:
            return TournamentGA(self.population_size, self.num_dims)
        check_available(self.strategy)
        import evosax.algorithms

        name = _DISTRIBUTION_BASED.get(self.strategy) or _POPULATION_BASED[self.strategy]
        algorithm_class = getattr(evosax.algorithms, name)
        if self.strategy is Strategy.SIMPLE_GA:
            return algorithm_class(self.population_size, jnp.zeros(self.num_dims),
                                   std_schedule=lambda generation: self.spread)
        return algorithm_class(self.population_size, jnp.zeros(self.num_dims))

    def _params(self, algorithm):
        params = algorithm.default_params
        if hasattr(params, "std_init"):
            params = params.replace(std_init=self.spread)
        return params

    def init(self, key: jax.Array, population: jax.Array, fitness: jax.Array) -> Any:
        """State from an evaluated initial population (distribution-based strategies start at its best)."""
        algorithm = self._algorithm()
        if self.strategy is Strategy.GA:
            return algorithm.init(population, fitness)
        params = self._params(algorithm)
        if self.strategy in _POPULATION_BASED:
            return algorithm.init(key, population, fitness, params)
        return algorithm.init(key, population[jnp.argmin(fitness)], params)

    def ask(self, key: jax.Array, state: Any) -> tuple[jax.Array, Any]:
        algorithm = self._algorithm()
        if self.strategy is Strategy.GA:
            return algorithm.ask(key, state), state
        return algorithm.ask(key, state, self._params(algorithm))

    @property
    def has_centre(self) -> bool:
        """Whether the strategy samples around a centre (its mean) that `candidates` appends."""
        return self.strategy in _DISTRIBUTION_BASED

    def candidates(self, key: jax.Array, state: Any) -> tuple[jax.Array, Any]:
        """ask's population, then, for a distribution-based strategy, the centre it was drawn around:
        (population_size + has_centre, D). The centre is the strategy's own estimate of the best
        genome, and with a spread over a thousand genes every sample lies far from it, so it often
        scores better than any of them; evaluating it costs one picture more. tell takes the
        population (the first population_size rows) and its fitness only."""
        population, state = self.ask(key, state)
        if self.has_centre:
            population = jnp.concatenate([population, state.mean[None]])
        return population, state

    def tell(self, key: jax.Array, population: jax.Array, fitness: jax.Array, state: Any) -> Any:
        algorithm = self._algorithm()
        if self.strategy is Strategy.GA:
            return algorithm.tell(population, fitness, state)
        state, _ = algorithm.tell(key, population, fitness, state, self._params(algorithm))
        return state
