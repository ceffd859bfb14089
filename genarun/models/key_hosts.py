"""Where a model's API key may be sent (the `openai` provider's `api_key_env`).

A tree names the endpoint (`options.base_url`) and the variable holding the key; before, the
key went to whatever endpoint that was, so `base_url: https://llm-proxy.example/v1` sent the
person's `OPENAI_API_KEY` there without the tree saying so, as did a model spec taken from an
output. Now the key is attached only to a request for

- the hosted API genarun knows (`api.openai.com`), or the host of `$OPENAI_BASE_URL`, which the
  person running sets;
- this machine, named by a loopback address or `localhost` (a local server: vLLM, llama.cpp);
- a host the tree's `secrets:` lists for that variable, as for `fetch`
  (`secrets: {GROQ_API_KEY: {hosts: [api.groq.com]}}`).

Any other request goes without the key (a local server needs none; a server that does answers
401, and the error says how to list its host).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import urllib.parse
from typing import Any

from genarun.models.base import ModelSpec

KNOWN_HOSTS = frozenset({"api.openai.com"})
DEFAULT_KEY_ENV = "OPENAI_API_KEY"


def with_key_hosts(spec: ModelSpec, tree: Any) -> ModelSpec:
    """`spec` with the hosts the tree's `secrets:` lists for its API key's variable."""
    if spec.provider != "openai":
        return spec
    env = spec.option_dict.get("api_key_env") or DEFAULT_KEY_ENV
    entry = (getattr(tree, "secrets", None) or {}).get(env) if isinstance(env, str) else None
    if entry is None:
        return spec
    return dataclasses.replace(spec, key_hosts=tuple(entry.hosts))


def _is_this_machine(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def key_may_go_to(url: str, key_hosts: tuple[str, ...]) -> bool:
    """Whether a request to `url` may carry the model's API key."""
    from genarun.tree.secrets import host_allowed

    try:
        parts = urllib.parse.urlsplit(url)
        host, port = (parts.hostname or "").rstrip(".").lower(), parts.port
    except ValueError:
        return False
    if not host:
        return False
    if host in KNOWN_HOSTS or _is_this_machine(host):
        return True
    from_env = os.environ.get("OPENAI_BASE_URL")
    if from_env:
        try:
            env_parts = urllib.parse.urlsplit(from_env)
            if (env_parts.hostname or "").rstrip(".").lower() == host and env_parts.port == port:
                return True
        except ValueError:
            pass
    try:
        return host_allowed(key_hosts, host, port)
    except ValueError:
        return False


def withheld_hint(env: str, url: str) -> str:
    """Why no key was sent to `url`, and how to send it."""
    host = urllib.parse.urlsplit(url).hostname or url
    return (
        f" (no API key was sent: the key in {env} goes only to api.openai.com, the host of"
        f" $OPENAI_BASE_URL, this machine, and hosts the tree lists for it; to send it to"
        f" {host}, add `secrets: {{{env}: {{hosts: [{host}]}}}}` to the tree)"
    )
