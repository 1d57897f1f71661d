"""The user vectors the shift measures read, and the measures of one set of them.

Samples. `user_sets` draws, once per split and seed, up to `max_users` source users with
source training data, target users with target training data and warm overlap pairs (users
with training data in both domains). Only training interactions are read, never held-out
ratings, so a diagnostic cannot leak what evaluation measures.

Model vectors. `ModelVectors` evaluates a built method's `Represent` (`transferjax.methods.api`)
on those samples: x = the source-side vectors of the source users, y = the target-side vectors
of the target users, and the two vectors of each pair, as one compiled program (users in
chunks of `CHUNK`, so an encoder's memory stays bounded), reused by every call of a run.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from transferjax.diagnostics.measures import MEASURES, shift_measures

CHUNK = 256  # users one encoder call reads
LEAST = 4  # fewest rows per sample the measures accept (the proxy A-distance's halves)


@dataclasses.dataclass(frozen=True, eq=False)
class UserSets:
    """Users the diagnostics measure, each array in random order.

    Attributes:
      source: i32[n] source users with source training data.
      target: i32[m] target users with target training data.
      pairs: i32[w, 2] warm overlap pairs (source user, target user).
    """

    source: np.ndarray
    target: np.ndarray
    pairs: np.ndarray


def user_sets(split, *, max_users: int, seed: int) -> UserSets:
    """Up to `max_users` of each kind (`UserSets`), drawn without replacement by `seed`."""
    rng = np.random.default_rng(seed)

    def draw(a):
        return a[rng.permutation(len(a))[:max_users]]

    return UserSets(
        source=draw(np.flatnonzero(split.source_train.user_counts() > 0).astype(np.int32)),
        target=draw(np.flatnonzero(split.target_train.user_counts() > 0).astype(np.int32)),
        pairs=draw(np.asarray(split.warm_pairs, np.int32).reshape(-1, 2)),
    )


@dataclasses.dataclass(frozen=True, eq=False)
class ShiftVectors:
    """One set of vectors to measure.

    Attributes:
      source: f32[n, d] source-side vectors; target: f32[m, d] target-side vectors.
      pair_source, pair_target: f32[w, d] both vectors of w overlapping users (w may be 0).
      space: what the vectors are, one line.
    """

    source: np.ndarray
    target: np.ndarray
    pair_source: np.ndarray
    pair_target: np.ndarray
    space: str


def unmeasurable(v: ShiftVectors) -> str | None:
    """Why `v` cannot be measured (too few rows), or None."""
    n, m = len(v.source), len(v.target)
    if min(n, m) < LEAST:
        return f"needs >= {LEAST} source and target users, has {n} and {m}"
    return None


def measure(v: ShiftVectors, *, seed: int = 0, pad_steps: int = 300) -> dict[str, float]:
    """{measure: value} over `MEASURES` (no "cosine" without pairs), plus the sample sizes
    n_source, n_target, n_pairs; see `transferjax.diagnostics.measures` for the formulas.

    Raises:
      ValueError: fewer than `LEAST` rows on a side (`unmeasurable`).
    """
    why = unmeasurable(v)
    if why is not None:
        raise ValueError(f"shift diagnostics of {v.space}: {why}")
    has_pairs = len(v.pair_source) > 0
    got = shift_measures(
        jnp.asarray(v.source, jnp.float32),
        jnp.asarray(v.target, jnp.float32),
        jnp.asarray(v.pair_source, jnp.float32) if has_pairs else None,
        jnp.asarray(v.pair_target, jnp.float32) if has_pairs else None,
        key=jax.random.key(seed),
        pad_steps=pad_steps,
    )
    out = {k: float(got[k]) for k in MEASURES if k in got}
    out.update(n_source=len(v.source), n_target=len(v.target), n_pairs=len(v.pair_source))
    return out


def _encode(fn, view, users: jax.Array) -> jax.Array:
    """fn(view, users) over users i32[n] in chunks of CHUNK rows: f32[n, d]."""
    n = users.shape[0]
    if n == 0:
        return fn(view, users)
    c = min(CHUNK, n)
    padded = jnp.pad(users, (0, -n % c))  # padded rows read user 0 and are dropped
    out = jax.lax.map(lambda u: fn(view, u), padded.reshape(-1, c))
    return out.reshape(-1, out.shape[-1])[:n]


class ModelVectors:
    """`vectors(params) -> ShiftVectors` of a built method with a `Represent`, for fixed user
    samples; the program is compiled on the first call and reused."""

    def __init__(self, built, sets: UserSets):
        if built.represent is None:
            raise ValueError("the method gives no source-side and target-side user vectors")
        self.built, self.sets, self.space = built, sets, built.represent.space
        rep = built.represent

        def vectors(params, data, hyper, users):
            view = {**params, **data, "hyper": hyper}
            return (
                _encode(rep.source, view, users["source"]),
                _encode(rep.target, view, users["target"]),
                _encode(rep.source, view, users["pairs"][:, 0]),
                _encode(rep.target, view, users["pairs"][:, 1]),
            )

        self._users = {
            "source": jnp.asarray(sets.source),
            "target": jnp.asarray(sets.target),
            "pairs": jnp.asarray(sets.pairs),
        }
        self._fn = jax.jit(vectors)

    def __call__(self, params: dict, hyper: dict | None = None) -> ShiftVectors:
        """The vectors of one trial's `params` (no trial axis)."""
        hyper = self.built.hyper if hyper is None else hyper
        got = jax.device_get(self._fn(params, self.built.data, hyper, self._users))
        return ShiftVectors(*(np.asarray(a, np.float32) for a in got), space=self.space)
