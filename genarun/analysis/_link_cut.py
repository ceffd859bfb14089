"""Bounds for the early cut: scales past which no class of a Rips filtration can be born.

H0/H1 (:func:`_last_birth`, and :func:`last_h1_birth` for large inputs): an H0 death or H1
birth needs an edge whose ends have no common neighbour. H2 (:func:`last_h2_birth`):

Adding edge uv (length t) to a flag complex K adds the cone C = uv * L over its link L (the
clique complex on the vertices joined to both u and v). K ∩ C is the suspension of L, so by
Mayer–Vietoris a new H2 class needs H̃0(L) != 0: a disconnected link. (The same sequence shows
that an H1 class can only die at such an edge.) So every H2 birth is at an edge whose link can
be disconnected, and the longest such edge bounds them all: past it, and once every class has
died, nothing is left to happen. Ties: with several edges of length t, the link of uv depends
on the order they are added in, so a link counts as connected only when it is connected in
every order: every vertex that may be in it reaches one that is surely in it (strictly closer
than t to u and v) through edges strictly shorter than t.

Most links of long edges are large and dense, and proving each connected one vertex at a time
would cost O(|L|^2) per edge. Instead a fixed set of "hubs" (chosen so that every vertex has
many hubs near it) proves most of them at once with bitsets: a root hub in the link, the hubs
of the link joined to it, and every vertex of the link next to one of those. The few links
this does not prove are checked exactly; the first that is really disconnected is the bound.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

# Hubs per edge check (bitset words of 64), edges checked per block, and the most exact link
# checks made before giving up (each costs O(|L|^2); past this the cut would save little).
_HUBS = 256
_BLOCK = 8192
_MAX_EXACT = 20_000


def last_h2_birth(d: np.ndarray, radius: float) -> float | None:
    """The longest edge (<= radius) whose link may be disconnected, or None if there is none.

    Every H2 birth (and every H1 death) of the Rips filtration of the float32 distance matrix
    ``d`` is at most this. ``inf`` when more than ``_MAX_EXACT`` links needed an exact check
    before the bound was found (no bound worth having).
    """
    n = len(d)
    iu, ju = np.triu_indices(n, 1)
    lengths = d[iu, ju]
    keep = lengths <= radius
    iu, ju, lengths = iu[keep], ju[keep], lengths[keep]
    if not len(lengths):
        return None
    order = np.argsort(lengths, kind="stable")[::-1]  # the longest first
    iu, ju, lengths = iu[order], ju[order], lengths[order]
    median = float(lengths[len(lengths) // 2])
    hubs = _hubs(d < median, min(_HUBS, n))
    to_hubs = d[hubs]  # (k, n)
    # (n, k): a block gathers rows of this for its edges' ends, in memory order (gathering
    # columns of to_hubs took 2.5 times as long).
    hubs_of = np.ascontiguousarray(to_hubs.T)
    hub_to_hub = to_hubs[:, hubs]
    not_self = ~_pack(np.eye(n, dtype=bool))
    exact = 0
    block = max(_BLOCK, 8 * n)  # each block packs an (n, n) matrix: keep that a small share
    for at in range(0, len(lengths), block):
        u, v, t = iu[at : at + block], ju[at : at + block], lengths[at : at + block]
        lo, hi = float(t[-1]), float(t[0])
        # Every vertex that may be in a link of this block, as bits (its ends left out).
        members = _pack(d <= hi)
        link = members[u] & members[v] & not_self[u] & not_self[v]
        empty = ~link.any(axis=1)  # an empty link bears no H2 class
        # Hubs surely in the link (strictly closer than t to both ends), the first as root,
        # and those of them joined to the root before any edge of the block.
        inlink = (hubs_of[u] < t[:, None]) & (hubs_of[v] < t[:, None])  # (B, k)
        rooted = inlink.any(axis=1)
        root = np.argmax(inlink, axis=1)
        joined = hub_to_hub < lo  # hub-hub edges before the block
        layer = inlink & joined[root]
        layer[np.arange(len(u)), root] = True
        near = _pack(to_hubs < lo)  # (k, words): each hub's neighbours before the block
        # Hubs in greedy order (the first cover the most); a link leaves the loop once covered.
        unproved = np.nonzero(rooted & ~empty)[0]
        left = link[unproved]
        for h in range(len(hubs)):
            if not len(unproved):
                break
            on = np.nonzero(layer[unproved, h])[0]
            if len(on):
                left[on] &= ~near[h]
            if h % 8 == 7 or h == len(hubs) - 1:
                still = left.any(axis=1)
                unproved, left = unproved[still], left[still]
        if len(unproved):
            unproved = unproved[
                ~_covered_through_hubs(left, inlink[unproved], layer[unproved], joined, near)
            ]
        proved = np.ones(len(u), dtype=bool)
        proved[unproved] = False
        proved[~rooted & ~empty] = False
        for i in np.nonzero(~proved)[0]:
            exact += 1
            if exact > _MAX_EXACT:
                return math.inf
            if not _link_connected(d, int(u[i]), int(v[i]), float(t[i])):
                return float(t[i])
    return None


def _covered_through_hubs(
    left: np.ndarray,
    inlink: np.ndarray,
    reached: np.ndarray,
    joined: np.ndarray,
    near: np.ndarray,
) -> np.ndarray:
    """Which of the links the root's own neighbours among the hubs did not cover are covered
    by hubs of the link farther from the root: a hub surely in the link and joined to a hub
    already reached, through edges shorter than every edge of the block, is in the root's
    component in every order of ties, and so is every link vertex next to it.

    ``left`` (m, words): each link's vertices not yet covered (updated); ``inlink`` (m, k):
    the hubs surely in each link; ``reached`` (m, k): the hubs used so far; ``joined`` (k, k)
    and ``near`` (k, words): hub-hub and hub-vertex edges before the block. On walks this
    proves 90-98 % of the links the first pass leaves, each an exact check of about 0.2 ms.
    """
    covered = np.asarray(~left.any(axis=1), dtype=bool)
    reached = reached.copy()
    frontier = reached
    steps = _pack(joined)  # (k, words): each hub's hub neighbours, as bits
    while True:
        # The hubs one step from the last ones reached: the union of their rows of `steps`.
        # (Not a float product of 0/1 matrices: a BLAS call that small waits for its threads,
        # see _hubs.)
        ahead = np.zeros((len(frontier), steps.shape[1]), dtype=np.uint64)
        for h in np.nonzero(frontier.any(axis=0))[0]:
            ahead[frontier[:, h]] |= steps[h]
        new = inlink & ~reached & _unpack(ahead, len(joined))
        new[covered] = False
        if not new.any():
            return covered
        for h in np.nonzero(new.any(axis=0))[0]:
            rows = np.nonzero(new[:, h])[0]
            left[rows] &= ~near[h]
        covered = np.asarray(~left.any(axis=1), dtype=bool)
        reached |= new
        frontier = new


def _pack(adjacent: np.ndarray) -> np.ndarray:
    """Rows of booleans as rows of uint64 bitsets (the same bit order everywhere)."""
    rows, cols = adjacent.shape
    padded = np.zeros((rows, -(-cols // 64) * 64), dtype=bool)
    padded[:, :cols] = adjacent
    return np.packbits(padded, axis=1).view(np.uint64)


def _unpack(bits: np.ndarray, cols: int) -> np.ndarray:
    """The inverse of :func:`_pack`: rows of uint64 bitsets as rows of ``cols`` booleans."""
    return np.unpackbits(bits.view(np.uint8), axis=1, count=cols).astype(bool)


def _hubs(adjacent: np.ndarray, k: int) -> np.ndarray:
    """k vertices that between them neighbour every vertex many times (greedy: a vertex's
    weight halves with each chosen hub next to it), so that most links hold a few of them.

    The matrix-vector products are numpy's own loops (einsum), not BLAS: OpenBLAS splits one
    of 1000 x 1000 over its threads and then waits until each has had a core, which on a busy
    machine is a scheduler tick: 12-24 ms per product on 2 threads at load 3, against 0.1 ms
    on one (and 0.3 ms in einsum), a third of the H2 bound's CPU."""
    a = adjacent.astype(np.float32)
    weight = np.ones(len(a), dtype=np.float32)
    chosen = np.zeros(0, dtype=np.intp)
    while len(chosen) < k:  # 8 at a time: an eighth of the matrix-vector products
        score = np.einsum("ij,j->i", a, weight)
        score[chosen] = -1.0
        picked = np.argsort(-score, kind="stable")[: min(8, k - len(chosen))]
        chosen = np.concatenate([chosen, picked])
        weight *= np.float32(0.5) ** adjacent[picked].sum(axis=0, dtype=np.float32)
    return chosen


def _link_connected(d: np.ndarray, u: int, v: int, t: float) -> bool:
    """Exactly: is the link of uv (length t) connected or empty in every order of the ties?"""
    farther = np.maximum(d[u], d[v])
    farther[[u, v]] = np.inf
    sure = np.nonzero(farther < t)[0]
    maybe = np.nonzero(farther == t)[0]
    if not len(sure):
        return not len(maybe)
    joined = d[np.ix_(sure, sure)] < t
    reached = np.zeros(len(sure), dtype=bool)
    reached[0] = True
    count = 1
    while True:
        reached |= joined[reached].any(axis=0)
        now = int(np.count_nonzero(reached))
        if now == count:
            break
        count = now
    if count < len(sure):
        return False
    return bool((d[np.ix_(maybe, sure)] < t).any(axis=1).all())


def last_h1_birth(d: np.ndarray, radius: float, hubs: int = 64) -> float | None:
    """The longest edge (<= radius) with no witness, as :func:`persistence._last_birth`, for
    inputs too large for its N^3 matrix products: a witness of uv is a vertex w with
    max(d(u,w), d(v,w)) < d(u,v); every H1 birth and H0 death is at an edge without one.

    Hubs (see :func:`_hubs`) witness most edges at once, a few at a time over the edge list;
    the edges none of them witnesses are checked against every vertex, longest first.
    """
    n = len(d)
    iu, ju = np.triu_indices(n, 1)
    iu, ju = iu.astype(np.int32), ju.astype(np.int32)
    lengths = d[iu, ju]
    keep = lengths <= radius
    iu, ju, lengths = iu[keep], ju[keep], lengths[keep]
    if not len(lengths):
        return None
    median = float(np.partition(lengths, len(lengths) // 2)[len(lengths) // 2])
    for h in _hubs(d < median, min(hubs, n)):
        witnessed = np.maximum(d[h, iu], d[h, ju]) < lengths
        iu, ju, lengths = iu[~witnessed], ju[~witnessed], lengths[~witnessed]
    order = np.argsort(lengths, kind="stable")[::-1]
    for at in range(0, len(order), 256):
        part = order[at : at + 256]
        u, v, t = iu[part], ju[part], lengths[part]
        unwitnessed = ~(np.maximum(d[u], d[v]) < t[:, None]).any(axis=1)
        if unwitnessed.any():
            return float(t[unwitnessed].max())
    return None


def dominated_share(d: np.ndarray, scale: float, samples: int = 128) -> float:
    """The share of a seeded sample of the edges up to ``scale`` that are dominated there: some
    other vertex w is joined to both ends and to every vertex joined to both (edges no
    longer than ``scale``), so edge collapse could remove the edge at the end of the filtration.

    A cheap forecast of what gudhi's edge collapse achieves: 94-100 % on settling runs (which
    lose 70-90 % of their edges to it), 0-1 % on near-orthogonal random walks (which lose
    0.3 %). Domination of an edge at its own length says nothing (38-47 % on those walks): the
    collapse only moves such edges later.
    """
    iu, ju = np.triu_indices(len(d), 1)
    lengths = d[iu, ju]
    edges = np.nonzero(lengths <= scale)[0]
    if not len(edges):
        return 0.0
    picked = np.random.default_rng(0).choice(edges, min(samples, len(edges)), replace=False)
    dominated = 0
    for e in picked:
        u, v = iu[e], ju[e]
        link = np.nonzero(np.maximum(d[u], d[v]) <= scale)[0]  # u and v are in it
        others = link[(link != u) & (link != v)]
        if len(others) and (d[np.ix_(others, link)] <= scale).all(axis=1).any():
            dominated += 1
    return dominated / len(picked)


def without_duplicates(d: np.ndarray) -> np.ndarray:
    """The matrix with one vertex of each set of identical rows (trajectories that settle repeat
    steps exactly). A vertex whose row equals another's is at distance 0 from it and has its
    neighbours at every scale, so removing it is a strong collapse all along the filtration:
    the same diagrams, but for the zero-length H0 pairs that no engine reports."""
    rows = np.ascontiguousarray(d).view(np.dtype((np.void, d.dtype.itemsize * d.shape[1])))
    _, first = np.unique(rows.ravel(), return_index=True)
    if len(first) == len(d):
        return d
    keep = np.sort(first)
    return np.ascontiguousarray(d[np.ix_(keep, keep)])


def _last_birth(d: np.ndarray, radius: float, give_up_above: float = math.inf) -> float | None:
    """The longest edge uv with no witness w, max(d(u,w), d(v,w)) < d(u,v); None if none.

    Adding edge uv to a flag filtration adds the cone uv * L over its link L (the vertices
    joined to both). If L is not empty, Mayer–Vietoris makes H1 before -> H1 after onto and
    leaves H0 alone: no class is born. So every H0 death and H1 birth is at an edge with no
    witness (a relative-neighbourhood-graph edge), and this one bounds them all. Edges longer
    than the enclosing radius always have the centre as witness. Returns ``inf`` as soon as
    such an edge is found above ``give_up_above``.
    """
    iu, ju = np.triu_indices(len(d), 1)
    lengths = d[iu, ju]
    keep = lengths <= radius
    iu, ju, lengths = iu[keep], ju[keep], lengths[keep]
    # Longest first, in blocks (lo, hi]: common neighbours within lo (one product of 0/1
    # adjacency matrices) are witnesses for the whole block; the few edges without one are
    # checked against every vertex. The last block, the shortest 2 %, is all checked so.
    ranks = [int(len(lengths) * f) for f in (0.02, 0.04, 0.06, 0.09, 0.13, 0.18, 0.25, 0.35, 0.5)]
    levels = [-math.inf, *np.unique(np.partition(lengths, ranks)[ranks]), radius]
    blocks = list(itertools.pairwise(levels))  # a stack: the longest edges on top
    while blocks:
        lo, hi = blocks.pop()
        inside = np.nonzero((lengths > lo) & (lengths <= hi))[0]
        if len(inside) and math.isfinite(lo):
            adjacent = (d <= lo).astype(np.float32)
            common = adjacent @ adjacent  # exact counts: float32 holds integers up to 2**24
            inside = inside[common[iu[inside], ju[inside]] == 0]
            if len(inside) > 20_000:  # too many to check one by one: split the block
                middle = np.partition(lengths[inside], len(inside) // 2)[len(inside) // 2]
                if middle < hi:
                    blocks += [(lo, middle), (middle, hi)]
                    continue
        birth = None
        for at in range(0, len(inside), 2048):
            part = inside[at : at + 2048]
            u, v, length = iu[part], ju[part], lengths[part]
            unwitnessed = ~(np.maximum(d[u], d[v]) < length[:, None]).any(axis=1)
            if unwitnessed.any():
                birth = max(birth or 0.0, float(length[unwitnessed].max()))
                if birth > give_up_above:
                    return math.inf
        if birth is not None:
            return birth
    return None
