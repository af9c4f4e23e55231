"""DEAP's `eaSimple` genetic algorithm on JAX arrays, for a whole population per call.

evosax has truncation-selection GAs but not DEAP's tournament one, and DEAP's set-up is the
baseline the evolved images are compared with (the open_nsfw port evolved its pictures with it):
each generation, tournament selection of size 3 fills the offspring, consecutive pairs are mated
with two-point crossover with probability 0.5, each offspring is mutated with probability 0.1
(Gaussian, on a fraction of its genes), and the offspring replace the population.

Same interface shape as evosax's population-based algorithms, minimising fitness.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp


class GAState(NamedTuple):
    population: jax.Array  # (P, D)
    fitness: jax.Array  # (P,), lower is better


@dataclasses.dataclass(frozen=True)
class TournamentGA:
    population_size: int
    num_dims: int
    tournament_size: int = 3
    crossover_rate: float = 0.5  # DEAP's cxpb, per pair
    mutation_rate: float = 0.1  # DEAP's mutpb, per individual
    mutation_sigma: float = 0.1  # mutGaussian's sigma, in gene units (genes live in [0, 1])
    gene_mutation_rate: float = 0.1  # mutGaussian's indpb

    def init(self, population: jax.Array, fitness: jax.Array) -> GAState:
        return GAState(population, fitness)

    def select(self, key: jax.Array, state: GAState) -> jax.Array:
        """selTournament: for each slot, the fittest of `tournament_size` drawn with replacement."""
        entrants = jax.random.randint(key, (self.population_size, self.tournament_size), 0, self.population_size)
        winners = jnp.take_along_axis(entrants, jnp.argmin(state.fitness[entrants], axis=1)[:, None], axis=1)[:, 0]
        return state.population[winners]

    def crossover(self, key: jax.Array, offspring: jax.Array) -> jax.Array:
        """cxTwoPoint on pairs (0, 1), (2, 3), ...: the genes between two cut points are swapped."""
        pairs = self.population_size // 2
        first, second = offspring[0:2 * pairs:2], offspring[1:2 * pairs:2]
        key_mate, key_cuts = jax.random.split(key)
        mate = jax.random.uniform(key_mate, (pairs, 1)) < self.crossover_rate
        cuts = jnp.sort(jax.random.randint(key_cuts, (pairs, 2), 1, self.num_dims), axis=1)
        genes = jnp.arange(self.num_dims)[None, :]
        swap = mate & (genes >= cuts[:, :1]) & (genes < cuts[:, 1:])
        mated = jnp.stack([jnp.where(swap, second, first), jnp.where(swap, first, second)], axis=1)
        return offspring.at[:2 * pairs].set(mated.reshape(2 * pairs, self.num_dims))

    def mutate(self, key: jax.Array, offspring: jax.Array) -> jax.Array:
        key_who, key_which, key_noise = jax.random.split(key, 3)
        who = jax.random.uniform(key_who, (self.population_size, 1)) < self.mutation_rate
        which = jax.random.uniform(key_which, offspring.shape) < self.gene_mutation_rate
        noise = self.mutation_sigma * jax.random.normal(key_noise, offspring.shape)
        return offspring + jnp.where(who & which, noise, 0.0)

    def ask(self, key: jax.Array, state: GAState) -> jax.Array:
        key_select, key_cross, key_mutate = jax.random.split(key, 3)
        offspring = self.select(key_select, state)
        return self.mutate(key_mutate, self.crossover(key_cross, offspring))

    def tell(self, population: jax.Array, fitness: jax.Array, state: GAState) -> GAState:
        del state  # eaSimple: the offspring replace the population (the best ever is kept by the caller)
        return GAState(population, fitness)
