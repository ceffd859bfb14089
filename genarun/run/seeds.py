"""Per-execution seeds: derived from the run seed, the node's path and its foreach indexes.

Adding a node never changes another node's seed, so it never changes another's picks or images.
"""

from __future__ import annotations

import hashlib
import secrets

SEED_BITS = 31  # fits every backend: numpy's legacy seeding, torch, HTTP APIs


def fresh_seed() -> int:
    """Fresh entropy for `seed: random` (recorded with the run or execution)."""
    return secrets.randbits(SEED_BITS)


def derive_seed(run_seed: int, node_path: str, indexes: tuple[int, ...]) -> int:
    """The seed of one execution of a node."""
    key = f"{run_seed}|{node_path}|{','.join(map(str, indexes))}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & ((1 << SEED_BITS) - 1)
