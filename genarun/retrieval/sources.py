"""What a `retrieve` node's `from` and a novelty guard's `against` name, checked at compile time.

An entry is `documents` or a node id. A node of the tree must embed its outputs (an `embed`
node, a cycle with `embed:`, or a node with `index:` or `novelty:`). Naming a node that shares
no foreach with this one adds a dependency edge (it finishes first, as a name in a template
does). Naming a node inside a foreach this one is also in (or this node itself) is
*progressive*: item i sees what items 0..i-1 stored, and waits for them, never for its own
item, whose output may itself depend on what was retrieved.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from genarun.errors import Problem, did_you_mean
from genarun.graph.compiled import shared_loop_count
from genarun.tree.validate import TreeNode

DOCUMENTS = "documents"
RUN_MODES = ("this", "tree", "all")


@dataclass
class Sources:
    deps: set[str] = field(default_factory=set)  # nodes that finish first
    progressive: set[str] = field(default_factory=set)  # nodes whose earlier items it waits for
    problems: list[Problem] = field(default_factory=list)


def source_lists(spec: Any, fields: frozenset[str]) -> list[tuple[tuple[str, ...], list[str], str]]:
    """(where in the tree file, names, runs mode) of each field that names sources."""
    out: list[tuple[tuple[str, ...], list[str], str]] = []
    for name in sorted(fields):
        value = getattr(spec, name, None)
        if value is None:
            continue
        alias = type(spec).model_fields[name].alias or name
        runs = str(getattr(spec, "runs", "this"))
        out.append(((alias,), [value] if isinstance(value, str) else list(value), runs))
    if spec.novelty is not None:
        out.append((("novelty", "against"), list(spec.novelty.against), spec.novelty.runs))
    return out


def embeds_outputs(tn: TreeNode) -> bool:
    """Whether the node stores vectors of what it produces, for searches to find."""
    spec = tn.spec
    if spec.kind == "embed" or spec.index not in (None, False) or spec.novelty is not None:
        return True
    return spec.kind == "cycle" and bool(getattr(spec, "embed", None))


def _loops(tn: TreeNode) -> tuple[str, ...]:
    from genarun.graph.node_fields import foreach_loops

    return foreach_loops(tn)


def resolve_sources(
    tn: TreeNode,
    fields: frozenset[str],
    by_id: dict[str, TreeNode],
    descendants: set[str],
    ancestor_ids: tuple[str, ...],
    file: str,
    line: Callable[[tuple], int | None],
    broken: frozenset[str] = frozenset(),
) -> Sources:
    found = Sources()
    spec = tn.spec
    own_loops = _loops(tn)
    for where, names, runs in source_lists(spec, fields):
        label = ".".join(where)
        at = line(where)
        if not names:
            found.problems.append(
                Problem(f"{label}: names nothing", file, at, spec.id, hint=_NAMES_HINT)
            )
        for name in names:
            if name == DOCUMENTS:
                continue
            target = by_id.get(name)
            if target is None:
                if runs == "this" and name not in broken:  # broken: its own error is reported
                    hint = did_you_mean(name, set(by_id) | {DOCUMENTS})
                    found.problems.append(
                        Problem(
                            f"{label}: no node '{name}' in the tree",
                            file,
                            at,
                            spec.id,
                            hint=(hint + "; " if hint else "")
                            + "to search a node of past runs of other trees, set runs: tree, all "
                            "or a run id",
                        )
                    )
                continue  # a node of past runs: looked up when the search runs
            if name == spec.id and where[0] != "novelty":
                found.problems.append(
                    Problem(f"{label}: '{name}' is this node itself", file, at, spec.id)
                )
                continue
            if name in descendants:
                found.problems.append(
                    Problem(
                        f"{label}: '{name}' is inside this node's own subtree, which runs after it",
                        file,
                        at,
                        spec.id,
                        hint=f"move this node below '{name}', or beside it",
                    )
                )
                continue
            if not embeds_outputs(target):
                found.problems.append(
                    Problem(
                        f"{label}: node '{name}' embeds nothing, so there is nothing of it to "
                        "search",
                        file,
                        at,
                        spec.id,
                        hint=f"give '{name}' index: true (or index: <embedding model>), or name "
                        "an embed node",
                    )
                )
                continue
            if name == spec.id or shared_loop_count(own_loops, _loops(target)) > 0:
                found.progressive.add(name)
            elif name not in ancestor_ids:
                found.deps.add(name)
    return found


_NAMES_HINT = "give `documents` and node ids, such as [documents, article]"
