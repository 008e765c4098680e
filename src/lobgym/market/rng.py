"""Per-env random streams stored in arrays and advanced inside kernels.

Each env owns ``N_STREAMS`` independent xoshiro256** generators (Blackman & Vigna, 2018), seeded
from the env's 64-bit seed through SplitMix64 as the authors recommend. The generator state lives in
a ``(N, N_STREAMS, 4)`` uint64 array, so env ``i`` of a batch seeded ``s_i`` draws exactly the
numbers a single env seeded ``s_i`` draws. The numba global RNG is never used.
"""

from __future__ import annotations

import math

import numpy as np

from lobgym.market._jit import inline, kernel
from lobgym.market.constants import N_STREAMS, RNG_WORDS

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_U5 = np.uint64(5)
_U7 = np.uint64(7)
_U9 = np.uint64(9)
_U11 = np.uint64(11)
_U17 = np.uint64(17)
_U27 = np.uint64(27)
_U30 = np.uint64(30)
_U31 = np.uint64(31)
_U45 = np.uint64(45)
_U57 = np.uint64(64 - 7)
_U19 = np.uint64(64 - 45)
_INV_2_53 = 1.0 / 9007199254740992.0  # 2**-53


def make_rng(n_envs: int) -> np.ndarray:
    """Allocate generator state for ``n_envs`` envs (unseeded: call :func:`seed_rng`)."""
    return np.zeros((n_envs, N_STREAMS, RNG_WORDS), dtype=np.uint64)


@inline
def _splitmix_next(x):
    x = x + _GOLDEN
    z = x
    z = (z ^ (z >> _U30)) * _MIX1
    z = (z ^ (z >> _U27)) * _MIX2
    z = z ^ (z >> _U31)
    return x, z


@kernel
def seed_one(rng, i, seed):
    """Seed every stream of env ``i`` from the 64-bit ``seed`` (SplitMix64 expansion)."""
    x = np.uint64(seed)
    for s in range(rng.shape[1]):
        for w in range(rng.shape[2]):
            x, z = _splitmix_next(x)
            rng[i, s, w] = z


@kernel
def seed_rng(rng, seeds):
    """Seed env ``i`` with ``seeds[i]`` for every env of the batch."""
    for i in range(rng.shape[0]):
        seed_one(rng, i, seeds[i])


@inline
def _rotl(x, k, k_complement):
    return (x << k) | (x >> k_complement)


@inline
def next_u64(rng, i, s):
    """Advance stream ``s`` of env ``i`` and return 64 random bits (xoshiro256**)."""
    s0 = rng[i, s, 0]
    s1 = rng[i, s, 1]
    s2 = rng[i, s, 2]
    s3 = rng[i, s, 3]
    result = _rotl(s1 * _U5, _U7, _U57) * _U9
    t = s1 << _U17
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = _rotl(s3, _U45, _U19)
    rng[i, s, 0] = s0
    rng[i, s, 1] = s1
    rng[i, s, 2] = s2
    rng[i, s, 3] = s3
    return result


@inline
def uniform(rng, i, s):
    """A float64 uniform on [0, 1) with 53 random bits."""
    return np.float64(next_u64(rng, i, s) >> _U11) * _INV_2_53


@inline
def normal(rng, i, s):
    """A standard normal draw (Box–Muller, cosine branch; consumes exactly two uniforms)."""
    u1 = 1.0 - uniform(rng, i, s)  # in (0, 1], so the log is finite
    u2 = uniform(rng, i, s)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@inline
def poisson_from_uniform(u, lam):
    """Inverse-CDF Poisson(lam) draw from one uniform ``u`` (exact for the small means used per step)."""
    if lam <= 0.0:
        return 0
    p = math.exp(-lam)
    cdf = p
    k = 0
    while u >= cdf and p > 0.0:
        k += 1
        p *= lam / k
        cdf += p
    return k
