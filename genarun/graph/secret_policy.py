"""Where `secret('NAME')` may be used, checked when the tree is compiled (before anything runs).

- A secret is named by a literal (`secret('API_KEY')`), so the check can see which secret a
  template sends.
- Each secret is declared: in the tree's `secrets:` with the hosts it may go to, or, for a
  fetch node's own fields, by the node's `hosts:`.
- Only a fetch sends secrets: in another kind's fields (a prompt, a template's text) the value
  would have no place to go but an output, so it is refused. Vars may hold one (a var is a
  placeholder until a fetch sends it).
- A fetch whose URL is known before the run (literal, or made of tree vars and `--set` values)
  may carry a secret only to one of that secret's hosts.

At send time the fetch node checks the same again with the URL it actually sends to.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from genarun.errors import Problem
from genarun.tree import secrets as secret_refs
from genarun.tree.template_core import has_jinja
from genarun.tree.validate import LoadedTree, TreeNode

if TYPE_CHECKING:
    from jinja2 import nodes

# Kinds that send their fields to a host, and so may carry secrets.
SENDING_KINDS = frozenset({"fetch"})


def _calls(source: str) -> Iterator[nodes.Call]:
    if "secret" not in source or not has_jinja(source):
        return  # a call needs Jinja syntax: text without it is not parsed (nor Jinja loaded)
    from jinja2 import TemplateSyntaxError, nodes

    from genarun.tree.template_env import ENV

    try:
        ast = ENV.parse(source)
    except TemplateSyntaxError:
        return  # reported by the template compiler
    for call in ast.find_all(nodes.Call):
        if isinstance(call.node, nodes.Name) and call.node.name == "secret":
            yield call


def _strings(value: Any) -> Iterator[str]:
    yield from secret_refs.strings_in(value)


def _literal_name(call: nodes.Call) -> str | None:
    from jinja2 import nodes  # loaded already: `call` came from Jinja's parser

    if len(call.args) == 1 and not call.kwargs and isinstance(call.args[0], nodes.Const):
        name = call.args[0].value
        if isinstance(name, str) and secret_refs.SECRET_NAME.fullmatch(name):
            return name
    return None


def secret_names_in(value: Any) -> list[str]:
    """The secrets named (by literal) in the templates of a field's value."""
    found: list[str] = []
    for text in _strings(value):
        for call in _calls(text):
            name = _literal_name(call)
            if name and name not in found:
                found.append(name)
    return found


def secret_problems(
    loaded: LoadedTree,
    compiled_nodes: dict[str, Any],
    tree_vars: list[tuple[str, Any]],
    matrix: dict[str, list[Any]],
) -> list[Problem]:
    """Every misuse of `secret()` in the tree, located (`tree_vars`, `matrix`: as compiled,
    `--set` values included)."""
    spec = loaded.spec
    file = str(loaded.path)
    declared = {name: list(entry.hosts) for name, entry in spec.secrets.items()}
    problems: list[Problem] = []
    # Tree vars that hold a secret: a fetch that names them sends it.
    var_secrets: dict[str, list[str]] = {}
    for name, value in spec.vars.items():
        line = loaded.line(("vars", name))
        var_secrets[name] = _check_uses(value, declared, [], file, line, None, problems)
    tree_scope = _tree_scope(tree_vars, matrix)
    for tn in loaded.walk():
        node_spec = tn.spec
        sending = node_spec.kind in SENDING_KINDS
        node_hosts = list(getattr(node_spec, "hosts", []) or []) if sending else []
        raw = compiled_nodes[tn.id].kind.raw_fields if tn.id in compiled_nodes else frozenset()
        used: list[str] = []
        for name, value in node_spec.vars.items():
            line = loaded.line((*tn.loc, "vars", name))
            used += _check_uses(value, declared, node_hosts, file, line, tn.id, problems)
        for field_name in ("when", "foreach"):
            value = getattr(node_spec, field_name)
            line = loaded.line((*tn.loc, field_name))
            found = _check_uses(value, declared, [], file, line, tn.id, problems)
            if found:
                problems.append(_misplaced(found[0], field_name, node_spec.kind, file, line, tn.id))
        for field_name, value in node_spec.param_fields().items():
            if field_name in raw:
                continue
            alias = type(node_spec).model_fields[field_name].alias or field_name
            line = loaded.line((*tn.loc, alias))
            found = _check_uses(value, declared, node_hosts, file, line, tn.id, problems)
            if found and not sending:
                problems.append(_misplaced(found[0], alias, node_spec.kind, file, line, tn.id))
            used += found
        if sending and tn.id in compiled_nodes:
            compiled = compiled_nodes[tn.id]
            url = compiled.params.get("url")
            for var in sorted(url.names if url is not None else ()):
                used += var_secrets.get(var, [])
            for var in sorted(set().union(*(c.names for c in compiled.params.values()))):
                used += var_secrets.get(var, [])
            problems += _host_problems(tn, compiled, used, declared, node_hosts, tree_scope, loaded)
    return problems


def _check_uses(
    value: Any,
    declared: dict[str, list[str]],
    node_hosts: list[str],
    file: str,
    line: int | None,
    node: str | None,
    problems: list[Problem],
) -> list[str]:
    """The secrets a value's templates name; problems for dynamic and undeclared names."""
    found: list[str] = []
    for text in _strings(value):
        for call in _calls(text):
            name = _literal_name(call)
            if name is None:
                problems.append(
                    Problem(
                        "secret() takes the environment variable's name as a literal",
                        file,
                        line,
                        node,
                        hint="write secret('API_KEY'): the name must be known before the run,"
                        " to check where the secret may go",
                    )
                )
                continue
            if name not in declared and not node_hosts:
                problems.append(
                    Problem(
                        f"secret '{name}' is not declared",
                        file,
                        line,
                        node,
                        hint=f"add it at the top of the tree with the hosts it may be sent to:"
                        f" secrets: {{{name}: {{hosts: [api.example.com]}}}}",
                    )
                )
            if name not in found:
                found.append(name)
    return found


def _misplaced(name: str, where: str, kind: str, file: str, line: int | None, node: str) -> Problem:
    return Problem(
        f"{where}: secret('{name}') in a {kind} node would put the secret where it is written"
        " or shown, not sent",
        file,
        line,
        node,
        hint="secrets go only into a fetch node's url, params, headers, json or body",
    )


def _tree_scope(tree_vars: list[tuple[str, Any]], matrix: dict[str, list[Any]]) -> dict[str, Any]:
    """The tree vars as the first run renders them (for URLs known before the run); a var
    that cannot be rendered without running is left out (its URLs are checked at send time)."""
    scope: dict[str, Any] = {"seed": 0, "run": {}}
    scope.update({key: values[0] for key, values in matrix.items() if values})
    for name, compiled in tree_vars:
        if compiled.names - set(scope):
            continue
        with contextlib.suppress(Exception):
            scope[name] = compiled.evaluate(scope, random.Random(0), [])
    return scope


def _host_problems(
    tn: TreeNode,
    compiled: Any,
    used: list[str],
    declared: dict[str, list[str]],
    node_hosts: list[str],
    tree_scope: dict[str, Any],
    loaded: LoadedTree,
) -> list[Problem]:
    if not used:
        return []
    url = compiled.params.get("url")
    if url is None or url.names - set(tree_scope):
        return []
    text: Any = None
    with contextlib.suppress(Exception):
        text = url.evaluate(tree_scope, random.Random(0), [])
    if not isinstance(text, str):
        return []
    from genarun.nodes.fetch_request import FetchError, FetchRequest

    try:
        host, port = FetchRequest("GET", text.strip()).host()
    except FetchError:
        return []
    problems = []
    for name in dict.fromkeys(used):
        hosts = [*declared.get(name, []), *node_hosts]
        if hosts and not secret_refs.host_allowed(hosts, host, port):
            problems.append(
                Problem(
                    f"secret '{name}' would be sent to {host}, which is not one of its hosts"
                    f" ({', '.join(hosts)})",
                    str(loaded.path),
                    loaded.line((*tn.loc, "url")),
                    tn.id,
                    hint=f"add {host} to secrets.{name}.hosts (or the node's hosts:) if it is"
                    " meant to receive it; otherwise send the request to one of those hosts",
                )
            )
    return problems
