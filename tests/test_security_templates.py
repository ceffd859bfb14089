"""A tree cannot touch the machine through its templates.

Classes of payloads (many each) run through the real CLI on the dummy models, in a child
process with a memory limit (RLIMIT_AS) and a time limit. For every payload: it ends within a
time bound; it is refused or harmless; a file planted outside the run folder is never read (its
content appears in no output, log, database or message) nor written beside (no new file
appears outside the run's folder); an environment value (OPENAI_API_KEY) appears nowhere. The
bound classes must fail with the sandbox's limit message, not run out of memory or time.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import site
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

BATCH = Path(__file__).parent / "cli_batch.py"
MEMORY_LIMIT = 1024**3  # address space of the child: a payload allocating a GB fails
PAYLOAD_SECONDS = 30  # per payload: the render limit (5 s) plus start-up on a busy machine

# Placeholders replaced in every payload: a file outside the run folder, and its folder.
CANARY = "CANARY_PATH"
OUTSIDE = "OUTSIDE_DIR"


@dataclass(frozen=True)
class Payload:
    source: str  # a template, or a bare expression for `when` and `foreach`
    field: str = "text"  # text, when, foreach, var (a tree var) or set (--set v=...)
    expect: str | None = None  # a phrase the error must contain; None: refused or harmless


REFUSED = "refused by the template sandbox"
LIMIT = "template limit"

# Live objects reached from values in scope: files read, written, code run, secrets read.
ESCAPES = [
    Payload("{{ cover.root.joinpath('CANARY_PATH').read_text() }}", expect=REFUSED),
    Payload("{{ cover.file.parent.joinpath('CANARY_PATH').read_bytes() }}", expect=REFUSED),
    Payload("{{ cover.root.__class__('CANARY_PATH').read_text() }}", expect=REFUSED),
    Payload("{{ cover.open().filename }}", expect=REFUSED),
    Payload("{{ cover.open().save('OUTSIDE_DIR/pwned.png') }}", expect=REFUSED),
    Payload("{{ cover.root.joinpath('OUTSIDE_DIR/pwned').write_text('x') }}", expect=REFUSED),
    Payload("{{ cover.root.joinpath('OUTSIDE_DIR/link').symlink_to('/etc') }}", expect=REFUSED),
    Payload("{{ cover.root.joinpath('OUTSIDE_DIR/dir').mkdir() }}", expect=REFUSED),
    Payload("{{ cover.file.rename('OUTSIDE_DIR/moved.png') }}", expect=REFUSED),
    Payload("{{ cover.file.unlink() }}", expect=REFUSED),
    Payload("{{ cover.root.joinpath('/proc/self/environ').read_text() }}", expect=REFUSED),
    Payload("{{ cover['root'].joinpath('CANARY_PATH').read_text() }}", expect=REFUSED),
    Payload("{{ (cover|attr('root')).joinpath('CANARY_PATH').read_text() }}", expect=REFUSED),
    Payload("{{ '{0.root}'.format(cover) }}", expect=REFUSED),
    Payload("{{ '{0.file.parent}'.format(cover) }}", expect=REFUSED),
    Payload("{{ '{0.root!r}'.format(cover) }}", expect=REFUSED),
    Payload("{{ [cover]|map(attribute='root')|map('string')|join }}"),
    Payload("{{ [cover]|map(attribute='file.parent')|list }}"),
    Payload("{{ [cover]|sort(attribute='root')|first }}"),
    Payload("{{ [cover]|groupby('file.parent')|list }}"),
    Payload("{{ [cover]|selectattr('root')|list }}"),
    Payload("{{ [cover]|sum(attribute='root') }}"),
    Payload("{{ vec.__class__.__init__.__globals__ }}", expect=REFUSED),
    Payload("{{ vec.__dataclass_fields__ }}", expect=REFUSED),
    Payload("{{ vec.__reduce_ex__(2) }}", expect=REFUSED),
    Payload("{{ ''.__class__.__mro__[1].__subclasses__() }}", expect=REFUSED),
    Payload("{{ ()|attr('__class__')|attr('__base__')|attr('__subclasses__') }}", expect=REFUSED),
    Payload("{{ lipsum.__globals__['os'].popen('cat CANARY_PATH').read() }}", expect=REFUSED),
    Payload("{{ lipsum|attr('__globals__') }}", expect=REFUSED),
    Payload("{{ cycler.__init__.__globals__.os.popen('cat CANARY_PATH').read() }}", expect=REFUSED),
    Payload("{{ joiner.__init__.__globals__.os.environ }}", expect=REFUSED),
    Payload("{{ namespace.__init__.__globals__.os.environ }}", expect=REFUSED),
    Payload("{{ self._TemplateReference__context }}", expect=REFUSED),
    Payload("{{ self.__dict__ }}", expect=REFUSED),
    Payload("{{ range.__globals__ }}", expect=REFUSED),
    Payload("{{ dict.mro() }}", expect=REFUSED),
    Payload("{{ dict.__init__ }}", expect=REFUSED),
    Payload("{{ (plan|map('upper')).gi_frame.f_globals }}", expect=REFUSED),
    Payload("{% for x in plan %}{{ loop._LoopContext__iterator }}{% endfor %}", expect=REFUSED),
    Payload("{% for x in plan %}{{ loop.__class__ }}{% endfor %}", expect=REFUSED),
    Payload("{{ run.__class__.__mro__ }}", expect=REFUSED),
    Payload("{{ seed.__class__.__base__.__subclasses__() }}", expect=REFUSED),
    Payload("{{ seed.to_bytes(999999999, 'big') }}", expect=REFUSED),
    Payload("{{ it.encode().decode() }}", expect=REFUSED),
    Payload("{{ it.__class__ }}", expect=REFUSED),
    Payload("{{ m.__class__.__base__.__subclasses__() }}", expect=REFUSED),
    Payload("{{ v.__class__ }}", expect=REFUSED),
    Payload("{{ plan.append(plan) }}", expect=REFUSED),
    Payload("{{ run.update({'id': 'x'}) }}", expect=REFUSED),
    Payload("{{ run.pop('id') }}", expect=REFUSED),
    Payload("{{ '{0.__globals__}'.format(lipsum) }}", expect=REFUSED),
    Payload("{{ '{0.gi_frame}'.format(plan|map('upper')) }}", expect=REFUSED),
    Payload("{{ '{x.__class__}'.format_map({'x': 1}) }}", expect=REFUSED),
    Payload("{{ '%s'|format(cover.root) }}", expect=REFUSED),
    Payload("{{ it.maketrans('a', 'b') }}", expect=REFUSED),
    Payload("cover.root.joinpath('CANARY_PATH').read_text()", field="when", expect=REFUSED),
    Payload("cover.root.joinpath('CANARY_PATH').read_text().splitlines()", field="foreach"),
    Payload("{{ cycler.__init__.__globals__.os.environ }}", field="var", expect=REFUSED),
    Payload("{{ lipsum.__globals__.os.popen('id').read() }}", field="set", expect=REFUSED),
]

# Work without bound: huge integers, texts and lists, endless loops (also at validation).
BOUNDS = [
    Payload("{{ 2**99999999999 }}", expect=LIMIT),
    Payload("2**99999999999 > 1", field="when", expect=LIMIT),
    Payload("range(2**99999999999 % 3)", field="foreach", expect=LIMIT),
    Payload("{{ (index + 7) ** 99999999 }}", expect=LIMIT),
    Payload("{{ 2 ** (2 ** 40) }}", expect=LIMIT),
    Payload("{% set n = index + 10 %}{{ n ** n ** n ** n }}", expect=LIMIT),
    Payload("{{ ('9' * 4000)|int * ('9' * 4000)|int }}", expect=LIMIT),
    Payload("{{ 10**5000 }}", expect=LIMIT),
    Payload("{{ 'a' * 10**9 }}", expect=LIMIT),
    Payload("{{ 'a' * (10**9 + index) }}", expect=LIMIT),
    Payload("(it * (10**9 + index))|length > 0", field="when", expect=LIMIT),
    Payload("[1] * (10**8 + seed)", field="foreach", expect=LIMIT),
    Payload("{{ [1] * 10**8 }}", expect=LIMIT),
    Payload("{{ (range(100000)|list) * (100 + index) }}", expect=LIMIT),
    Payload("{{ '{:>999999999}'.format(it) }}", expect=LIMIT),
    Payload("{{ '{:{}}'.format(it, 999999999 + index) }}", expect=LIMIT),
    Payload("{{ '{:.999999999f}'.format(1.5) }}", expect=LIMIT),
    Payload("{{ '{:,}'.format(10 ** (4000 + index)) }}", expect=LIMIT),
    Payload("{{ '%999999999d' % index }}", expect=LIMIT),
    Payload("{{ '%.999999999f' % 1.5 }}", expect=LIMIT),
    Payload("{{ '%*d' % (999999999, 1) }}", expect=LIMIT),
    Payload("{{ '%999999999d'|format(index) }}", expect=LIMIT),
    Payload("{{ it|center(999999999) }}", expect=LIMIT),
    Payload("{{ it.center(999999999) }}", expect=LIMIT),
    Payload("{{ it.ljust(999999999) }}", expect=LIMIT),
    Payload("{{ it.rjust(999999999) }}", expect=LIMIT),
    Payload("{{ it.zfill(999999999) }}", expect=LIMIT),
    Payload("{{ '\t'.expandtabs(999999999) }}", expect=LIMIT),
    Payload("{{ (it * 100000)|replace('o', 'y' * 100000) }}", expect=LIMIT),
    Payload("{{ (it * 100000).replace('o', 'y' * 100000) }}", expect=LIMIT),
    Payload("{{ ((it ~ '\n') * 100000)|indent(999999) }}", expect=LIMIT),
    Payload("{{ it|indent(999999999) }}", expect=LIMIT),
    Payload("{{ (range(10)|list)|join('x' * 1999999) }}", expect=LIMIT),
    Payload("{{ ('x' * 1999999).join(range(10)|map('string')) }}", expect=LIMIT),
    Payload("{{ lipsum(n=1000000) }}", expect=LIMIT),
    Payload("{{ lipsum(n=100000, min=100000, max=100001) }}", expect=LIMIT),
    Payload("{{ it ~ 'a' * 1999999 ~ 'b' }}", expect=LIMIT),
    Payload(
        "{% set x = 'a' * 1000000 %}{% for i in range(30) %}{% set x = x ~ x %}{% endfor %}",
        expect=LIMIT,
    ),
    Payload(
        "{% set ns = namespace(x='a' * 1000000) %}"
        "{% for i in range(30) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x|length }}",
        expect=LIMIT,
    ),
    Payload(
        "{% set a = [it, it, it, it, it, it, it, it, it, it] %}"
        "{% set b = [a, a, a, a, a, a, a, a, a, a] %}{% set c = [b, b, b, b, b, b, b, b, b, b] %}"
        "{% set d = [c, c, c, c, c, c, c, c, c, c] %}{% set e = [d, d, d, d, d, d, d, d, d, d] %}"
        "{% set f = [e, e, e, e, e, e, e, e, e, e] %}{% set g = [f, f, f, f, f, f, f, f, f, f] %}"
        "{{ g == g|list }}",
        expect=LIMIT,
    ),
    Payload("{{ range(10)|batch(999999999, 0)|list }}", expect=LIMIT),
    Payload("{{ range(10)|slice(999999999)|list }}", expect=LIMIT),
    Payload("{{ 1.5|round(999999999, 'floor') }}", expect=LIMIT),
    Payload("{{ ([[1] * 1000] * 1000)|sum(start=[])|length }}", expect=LIMIT),
    Payload("{{ (range(1000)|list)|tojson(indent=999999999) }}", expect=LIMIT),
    Payload("{{ ('a' * 1000000)|wordwrap(1) }}", expect=LIMIT),
    Payload("{{ (it * 1000)|wordwrap(1, wrapstring='y' * 100000) }}", expect=LIMIT),
    Payload(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        expect=LIMIT,
    ),
    Payload(
        "{% for i in range(100000) %}{% for j in range(100000) if j < 0 %}{% endfor %}{% endfor %}",
        expect=LIMIT,
    ),
    Payload("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", expect=LIMIT),
    Payload("{% for i in range(100000) %}" + "literal text " * 10 + "{% endfor %}", expect=LIMIT),
    Payload(
        "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% else %}xxxxxxxx{% endif %}"
        "{% endmacro %}{{ m(40) }}",
        expect=LIMIT,
    ),
    Payload(
        "{% set x %}{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}{% endset %}{{ x|length }}",
        expect=LIMIT,
    ),
    Payload("{{ 'a' * 10**9 }}", field="var", expect=LIMIT),
    Payload("{{ 'a' * (10**9 + seed) }}", field="var", expect=LIMIT),
    Payload("{{ 'a' * 10**9 }}", field="set", expect=LIMIT),
    Payload("{{ 2**99999999999 }}", field="set", expect=LIMIT),
    Payload(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        field="set",
        expect=LIMIT,
    ),
]

CLASSES = {"escapes": ESCAPES, "bounds": BOUNDS, "bounds-quick": BOUNDS}
# The child's template limits per class (none: genarun's own). At the real limits the loop
# payloads run a million iterations or the 5 s render time each (16-48 s for the class on the
# busy 2-core box), so the default run checks the bound payloads under a 20,000-iteration,
# 1 s budget (the same checks: refused with the limit named, nothing read or written) and
# `bounds` at the real limits is slow.
LIMITS = {"bounds-quick": ["--limit=iterations=20000", "--limit=seconds=1.0"]}


def _tree(payload: Payload) -> dict[str, object]:
    """The scope holds every kind of value: an image, an embedding, a foreach item, tree vars,
    a matrix value, seed and run. The payload goes into one field."""
    attack: dict[str, object] = {
        "id": "attack",
        "kind": "template",
        "foreach": "plan",
        "as": "it",
        "text": "{{ it }} {{ index }}",
    }
    var = "plain"
    if payload.field == "text":
        attack["text"] = payload.source
    elif payload.field in ("when", "foreach"):
        attack[payload.field] = payload.source
    elif payload.field == "var":
        var = payload.source
    return {
        "genarun": 1,
        "name": "attack",
        "seed": 1,
        "vars": {"v": var},
        "matrix": {"m": ["matrix value"]},
        "nodes": [
            {"id": "plan", "kind": "template", "text": '["one", "two"]', "parse": "json"},
            {
                "id": "cover",
                "kind": "image",
                "model": "dummy",
                "prompt": "a cat {{ v }} {{ m }}",
                "width": 8,
                "height": 8,
                "children": [
                    {
                        "id": "vec",
                        "kind": "embed",
                        "model": "dummy-embed",
                        "input": "{{ cover }}",
                        "children": [attack],
                    }
                ],
            },
        ],
    }


def _limit_child(memory: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() and not p.is_symlink() else b""
        for p in sorted(folder.rglob("*"))
    }


def _pth_files() -> set[str]:
    found = set()
    for folder in {*site.getsitepackages(), site.getusersitepackages()}:
        if os.path.isdir(folder):
            found |= {f"{folder}/{n}" for n in os.listdir(folder) if n.endswith(".pth")}
    return found


@pytest.mark.parametrize(
    "payload_class",
    ["escapes", pytest.param("bounds", marks=pytest.mark.slow), "bounds-quick"],
)
def test_payloads_cannot_touch_the_machine(payload_class: str, tmp_path: Path) -> None:
    payloads = CLASSES[payload_class]
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = f"canary-file-{secrets.token_hex(8)}"
    canary = outside / "secret.txt"
    canary.write_text(secret)
    key = f"sk-canary-{secrets.token_hex(8)}"
    work, home = tmp_path / "work", tmp_path / "home"
    work.mkdir()
    home.mkdir()

    jobs = []
    for n, payload in enumerate(payloads):
        source = payload.source.replace(CANARY, str(canary)).replace(OUTSIDE, str(outside))
        folder = work / f"p{n}"
        folder.mkdir()
        tree = folder / "attack.yaml"
        tree.write_text(yaml.safe_dump(_tree(Payload(source, payload.field)), sort_keys=False))
        args = ["run", str(tree), "--db", str(work / "genarun.db")]
        if payload.field == "set":
            args += ["--set", f"v={source}"]
        jobs.append(args)

    before_outside, before_home, before_pth = _files(outside), _files(home), _pth_files()
    env = {
        **os.environ,
        "OPENAI_API_KEY": key,
        "HOME": str(home),
        "GENARUN_HOME": str(home / "genarun"),
        "HF_HUB_OFFLINE": "1",
        # glibc reserves 64 MB of address space per thread arena: keep the limit about data.
        "MALLOC_ARENA_MAX": "2",
    }
    env.pop("GENARUN_DB", None)
    proc = subprocess.run(
        [sys.executable, str(BATCH), *LIMITS.get(payload_class, [])],
        input="".join(json.dumps(args) + "\n" for args in jobs),
        capture_output=True,
        text=True,
        cwd=work,
        env=env,
        timeout=PAYLOAD_SECONDS * len(jobs),
        preexec_fn=lambda: _limit_child(MEMORY_LIMIT),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(results) == len(payloads), proc.stderr[-3000:]

    problems = []
    for payload, result in zip(payloads, results, strict=True):
        said = result["stdout"] + result["stderr"]
        where = f"{payload.field}: {payload.source[:90]!r} -> exit {result['code']}"
        if not isinstance(result["code"], int) or result["code"] not in (0, 1, 2):
            problems.append(f"{where}: {str(result['code'])[:300]}")
        elif "internal error" in said or "MemoryError" in said:
            problems.append(f"{where}: {said.strip()[-300:]}")
        elif result["seconds"] > PAYLOAD_SECONDS:
            problems.append(f"{where}: took {result['seconds']} s")
        elif payload.expect is not None and payload.expect not in said:
            problems.append(f"{where}: expected '{payload.expect}', got {said.strip()[-300:]!r}")
        if secret in said or key in said:
            problems.append(f"{where}: printed the canary")
    assert not problems, "\n".join(problems)

    # Nothing read outside the run folders reached any output, log or the database...
    for name, content in _files(work).items():
        assert secret.encode() not in content, f"the planted file's content is in {name}"
        assert key.encode() not in content, f"the environment's key is in {name}"
    assert secret not in proc.stdout + proc.stderr and key not in proc.stdout + proc.stderr
    # ... and nothing was written outside them.
    assert _files(outside) == before_outside
    assert _files(home) == before_home
    assert _pth_files() == before_pth
    outputs = {p.parts[0] for p in (p.relative_to(work) for p in work.rglob("*")) if p.parts}
    assert outputs <= {f"p{n}" for n in range(len(payloads))} | {"genarun.db"} | {
        "genarun.db-wal",
        "genarun.db-shm",
    }
