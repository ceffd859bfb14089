"""PANIC-TDA's experiment configs (`ExperimentConfig` JSON) read as genarun trees.

A config such as

    {"networks": [["FluxDev", "Moondream"]], "seeds": [42, 56], "prompts": ["a cat"],
     "embedding_models": ["Nomic"], "max_length": 100}

becomes a tree with one run per network x seed x prompt (a `matrix`), a `cycle` node that
embeds every output with every embedding model (PANIC-TDA embeds each run with all of them,
it does not run the models again per embedder) and a `persistence` node. PANIC-TDA's model
class names become aliases under `models:` naming catalog entries, so the converted tree shows
the mapping and one line changes a model. Every value of the converted tree is located at the
config line it came from: a problem found later (a network whose models do not fit together)
names the config's line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from genarun.errors import Problem, TreeError, did_you_mean
from genarun.tree.load import Document
from genarun.tree.reader_common import PathKey

# PANIC-TDA's generative model classes -> genarun catalog entries.
GENAI_MODELS: dict[str, str] = {
    "FluxDev": "flux-dev",
    "FluxSchnell": "flux-schnell",
    "SDXLTurbo": "sdxl-turbo",
    "Moondream": "moondream2",
    "BLIP2": "blip2",
    "DummyT2I": "dummy-t2i",
    "DummyT2I2": "dummy-t2i",
    "DummyI2T": "dummy-i2t",
    "DummyI2T2": "dummy-i2t",
}
# PANIC-TDA's embedding model classes -> genarun catalog entries.
EMBEDDING_MODELS: dict[str, str] = {
    "Nomic": "nomic-text",
    "NomicVision": "nomic-vision",
    "JinaClip": "jina-clip",
    "STSBMpnet": "stsb-mpnet",
    "STSBRoberta": "stsb-roberta",
    "STSBDistilRoberta": "stsb-distilroberta",
    "Dummy": "dummy-text-embed",
    "Dummy2": "dummy-embed",
}
CONFIG_FIELDS = ("networks", "seeds", "prompts", "embedding_models", "max_length")
SHORTCUTS = ("seed_count", "num_runs")  # N runs per network and prompt instead of `seeds`
# Columns of PANIC-TDA's ExperimentConfig table that a dumped config may carry: not settings.
BOOKKEEPING = ("id", "started_at", "completed_at")


def is_panic_config(data: Any) -> bool:
    """Whether loaded data is a PANIC-TDA config rather than a tree: a mapping without the
    `genarun` key holding any of ExperimentConfig's fields."""
    return (
        isinstance(data, dict)
        and "genarun" not in data
        and any(k in data for k in (*CONFIG_FIELDS, *SHORTCUTS))
    )


def panic_tree(doc: Document) -> Document:
    """The tree equivalent to the PANIC-TDA config `doc`, as a Document whose text is the tree
    in JSON (what a run stores and resumes from) and whose lines point into the config."""
    tree, lines = _convert(doc)
    text = json.dumps(tree, indent=2, ensure_ascii=False) + "\n"
    return Document(path=doc.path, data=tree, text=text, lines=lines)


def panic_tree_yaml(doc: Document) -> str:
    """The converted tree as YAML, with a header naming the config (for `genarun convert`)."""
    import yaml

    tree, _ = _convert(doc)
    header = (
        f"# Converted from the PANIC-TDA config {doc.path} by `genarun convert`.\n"
        "# Each PANIC-TDA model name is an alias under models: change one line to use another.\n"
    )
    return header + yaml.safe_dump(tree, sort_keys=False, allow_unicode=True, width=100)


def _convert(doc: Document) -> tuple[dict[str, Any], dict[PathKey, int]]:
    data: dict[str, Any] = doc.data
    file = str(doc.path)
    problems: list[Problem] = []

    def problem(field: str | tuple[str | int, ...], message: str, hint: str) -> None:
        place = (field,) if isinstance(field, str) else field
        problems.append(Problem(message, file, doc.line(place), hint=hint))

    known = (*CONFIG_FIELDS, *SHORTCUTS, *BOOKKEEPING)
    for key in data:
        if key not in known:
            close = did_you_mean(key, list(known))
            problem(
                key,
                f"'{key}' is not a field of a PANIC-TDA experiment config",
                close
                or f"the fields are {', '.join(CONFIG_FIELDS)} (or seed_count instead of seeds)",
            )
    networks = _string_lists(data, "networks", problem)
    prompts = _strings(data, "prompts", problem)
    embedders = _strings(data, "embedding_models", problem)
    seeds = _seeds(data, problem)
    length = data.get("max_length")
    if "max_length" not in data:
        problem((), "missing 'max_length'", 'add "max_length": 100 (steps in each run)')
    elif not isinstance(length, int) or isinstance(length, bool) or length < 1:
        problem(
            "max_length", f"max_length must be a whole number above 0, not {length!r}", "e.g. 100"
        )
    aliases: dict[str, str] = {}
    for n, network in enumerate(networks):
        for m, name in enumerate(network):
            target = _model(name, GENAI_MODELS, "generative", ("networks", n, m), problem)
            if target:
                aliases[name] = target
    for n, name in enumerate(embedders):
        target = _model(name, EMBEDDING_MODELS, "embedding", ("embedding_models", n), problem)
        if target:
            aliases[name] = target
    if problems:
        raise TreeError(problems)
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", doc.path.stem).strip("-_") or "panic"
    tree: dict[str, Any] = {
        "genarun": 1,
        "name": name,
        "description": f"PANIC-TDA experiment config {doc.path.name}",
        "models": aliases,
        "vars": {"steps": length},
        "matrix": {"network": networks, "seed": seeds, "prompt": prompts},
        "nodes": [
            {
                "id": "trajectory",
                "kind": "cycle",
                "network": "{{ network }}",
                "start": "{{ prompt }}",
                "steps": "{{ steps }}",
                "embed": embedders,
                "children": [
                    {"id": "topology", "kind": "persistence", "of": "trajectory", "maxdim": 1}
                ],
            }
        ],
    }
    seed_key = next((k for k in ("seeds", *SHORTCUTS) if k in data), "seeds")
    lines: dict[PathKey, int] = {(): doc.line(()) or 1}
    where = {
        ("models",): (),
        ("vars", "steps"): ("max_length",),
        ("matrix", "network"): ("networks",),
        ("matrix", "seed"): (seed_key,),
        ("matrix", "prompt"): ("prompts",),
        ("nodes",): (),
        ("nodes", 0): (),
        ("nodes", 0, "network"): ("networks",),
        ("nodes", 0, "start"): ("prompts",),
        ("nodes", 0, "steps"): ("max_length",),
        ("nodes", 0, "embed"): ("embedding_models",),
    }
    for target_key, source_key in where.items():
        lines[target_key] = doc.line(source_key) or 1
    for n, network in enumerate(networks):
        for m, _ in enumerate(network):
            lines[("matrix", "network", n, m)] = doc.line(("networks", n, m)) or 1
    for n, _ in enumerate(embedders):
        lines[("nodes", 0, "embed", n)] = doc.line(("embedding_models", n)) or 1
    for alias in aliases:
        lines[("models", alias)] = _first_line(doc, data, alias)
    return tree, lines


def _first_line(doc: Document, data: dict[str, Any], name: str) -> int:
    for n, network in enumerate(data.get("networks") or []):
        for m, model in enumerate(network):
            if model == name:
                return doc.line(("networks", n, m)) or 1
    for n, model in enumerate(data.get("embedding_models") or []):
        if model == name:
            return doc.line(("embedding_models", n)) or 1
    return 1


def _strings(data: dict[str, Any], key: str, problem: Any) -> list[str]:
    value = data.get(key)
    if key not in data:
        problem((), f"missing '{key}'", f'add "{key}": [...] (a list of names or texts)')
        return []
    if not isinstance(value, list) or not value:
        problem(key, f"{key} must be a non-empty list, not {_kind(value)}", f'e.g. "{key}": [...]')
        return []
    good = []
    for n, item in enumerate(value):
        if isinstance(item, str) and item:
            good.append(item)
        else:
            problem((key, n), f"{key}[{n}] must be a non-empty text, not {_kind(item)}", "quote it")
    return good


def _string_lists(data: dict[str, Any], key: str, problem: Any) -> list[list[str]]:
    value = data.get(key)
    if key not in data:
        problem((), f"missing '{key}'", 'add "networks": [["FluxDev", "Moondream"]]')
        return []
    if not isinstance(value, list) or not value:
        problem(key, f"{key} must be a non-empty list of networks, not {_kind(value)}",
                'e.g. "networks": [["FluxDev", "Moondream"]]')  # fmt: skip
        return []
    out = []
    for n, network in enumerate(value):
        if not isinstance(network, list) or not network:
            problem((key, n), f"networks[{n}] must be a non-empty list of model names, not "
                    f"{_kind(network)}", 'e.g. ["FluxDev", "Moondream"]')  # fmt: skip
            continue
        names = [m for m in network if isinstance(m, str)]
        if len(names) != len(network):
            problem((key, n), f"networks[{n}] must hold model names (texts)", "quote each name")
            continue
        out.append(names)
    return out


def _seeds(data: dict[str, Any], problem: Any) -> list[int | str]:
    given = [k for k in ("seeds", *SHORTCUTS) if k in data]
    if not given:
        problem((), "missing 'seeds'", 'add "seeds": [42, 56], or "seed_count": 4')
        return []
    if len(given) > 1:
        problem(given[1], f"give one of {' and '.join(given)}", f"remove '{given[1]}'")
        return []
    key = given[0]
    value = data[key]
    if key != "seeds":
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problem(key, f"{key} must be a whole number above 0, not {value!r}", "e.g. 4")
            return []
        return list(range(value))  # reproducible: seeds 0..N-1
    if not isinstance(value, list) or not value:
        problem(key, f"seeds must be a non-empty list of whole numbers, not {_kind(value)}",
                'e.g. "seeds": [42, 56]')  # fmt: skip
        return []
    seeds: list[int | str] = []
    for n, seed in enumerate(value):
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < -1:
            problem(("seeds", n), f"seeds[{n}] must be a whole number (-1 for random), not "
                    f"{seed!r}", "e.g. 42")  # fmt: skip
        else:
            # PANIC-TDA's -1: fresh randomness at every invocation (genarun's `random`).
            seeds.append("random" if seed == -1 else seed)
    return seeds


def _model(
    name: str, known: dict[str, str], what: str, place: tuple[str | int, ...], problem: Any
) -> str | None:
    from genarun.plugins import registry

    if name in known:
        return known[name]
    catalog = registry().catalog
    if name in catalog:  # a genarun catalog name is taken as it is
        return name
    close = did_you_mean(name, set(known) | set(catalog))
    problem(
        place,
        f"unknown {what} model '{name}'",
        close or f"PANIC-TDA's {what} models: {', '.join(known)} (or a `genarun models list` name)",
    )
    return None


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


def read_config_or_tree(path: Path) -> Document:
    """Load a tree file; a PANIC-TDA config in it is converted to its tree."""
    from genarun.tree.load import load_document

    doc = load_document(path)
    return panic_tree(doc) if is_panic_config(doc.data) else doc
