"""Progressive retrieval at run time: item i of a foreach sees, and waits for, what items
0..i-1 of a node in that foreach stored (see `sources`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from genarun.graph.compiled import shared_loop_count

if TYPE_CHECKING:
    import numpy as np

    from genarun.graph.compiled import CompiledNode
    from genarun.retrieval.stored import RowInfo, StoredMatrix
    from genarun.run.state import RunState


def _rule(
    node: CompiledNode, target: CompiledNode, path: tuple[int, ...]
) -> tuple[tuple[int, ...], int, int] | None:
    """(the shared foreach items above, the level, this item's index) or None."""
    shared = shared_loop_count(node.loops, target.loops)
    if shared == 0:
        return None
    level = shared - 1
    return path[:level], level, path[level]


def earlier_items_ready(
    run: RunState,
    node: CompiledNode,
    path: tuple[int, ...],
    pending: Mapping[tuple[str, str], Mapping[tuple[int, ...], int]],
    finished: dict[tuple[Any, ...], int] | None = None,
) -> bool:
    """Whether every earlier item of each progressive source has finished (with its subtree
    down to the source node). `finished` remembers how many first items were found finished
    (they stay so), so waiting items of a long foreach are not checked from 0 each time."""
    for name in node.progressive:
        target = run.compiled.nodes[name]
        rule = _rule(node, target, path)
        if rule is None:
            continue
        base, level, own = rule
        loop_node = target.loops[level]
        chain = (*target.ancestors, target.id)
        members = chain[chain.index(loop_node) + 1 :]
        results = run.results.get(loop_node, {})
        key = (run.id, name, base)
        start = finished.get(key, 0) if finished is not None else 0
        for j in range(start, own):
            item = (*base, j)
            result = results.get(item)
            ready = result is not None
            if result is not None and result.status == "done":  # else its subtree never runs
                for member in members:
                    counts = pending.get((run.id, member))
                    if counts is not None and counts.get(item, 0) > 0:
                        ready = False
                        break
            if not ready:
                if finished is not None:
                    finished[key] = max(start, j)
                return False
        if finished is not None:
            finished[key] = max(start, own)
    return True


@dataclass(frozen=True)
class EarlierItems:
    """Which stored rows an execution may see: of its progressive sources in this run, only
    the earlier items (by node id: the shared foreach items above, the level, this item's
    index; None: this node outside any foreach, nothing earlier); every other row."""

    run_id: str
    rules: dict[str, tuple[tuple[int, ...], int, int] | None]

    def keeps(self, row: RowInfo) -> bool:
        if row.run_id != self.run_id or row.node_id not in self.rules:
            return True
        rule = self.rules[row.node_id]
        if rule is None:
            return False
        base, level, own = rule
        return len(row.path) > level and row.path[:level] == base and row.path[level] < own

    def mask(self, stored: StoredMatrix) -> np.ndarray:
        """The rows kept, computed with numpy (a search is not a Python call per row)."""
        import numpy as np  # imported by a search only: a plain run never loads it

        kept = np.ones(len(stored.rows), dtype=bool)
        run_code = stored.codes.get(self.run_id)
        if run_code is None:
            return kept
        this_run = stored.run_codes == run_code
        for name, rule in self.rules.items():
            code = stored.codes.get(name)
            if code is None:
                continue
            selected = this_run & (stored.node_codes == code)
            if rule is not None and rule[1] == 0:
                heads = stored.path_heads
                kept &= ~selected | ((heads >= 0) & (heads < rule[2]))
            else:  # deeper foreach levels: the few rows of this node, one by one
                for row in np.nonzero(selected)[0]:
                    kept[row] = self.keeps(stored.rows[row])
        return kept


def earlier_items_filter(
    run_id: str, node: CompiledNode, path: tuple[int, ...], compiled_nodes: dict[str, Any]
) -> EarlierItems | None:
    """The filter of an execution's search; None when nothing is filtered."""
    rules = {name: _rule(node, compiled_nodes[name], path) for name in node.progressive}
    return EarlierItems(run_id, rules) if rules else None
