"""The address rule of genarun's HTTP client (genarun/net/addresses.py): no URL a tree, a
template or a fetched answer builds reaches the cloud's metadata service or another link-local
address, in any spelling, directly or through a redirect; GENARUN_NETWORK=public keeps a run
off loopback and private networks too. Refusals are final (never retried) and say how to allow
the address."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import Result

from genarun.net.addresses import refusal
from genarun.net.http import HttpClient, HttpPolicy
from genarun.net.http_errors import HttpError
from tests.test_http_client import Recorder, ok

# Every spelling of the metadata service and other link-local hosts that the resolver accepts.
METADATA_URLS = [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://169.254.169.254:80/computeMetadata/v1/",
    "https://169.254.169.254/",
    "http://2852039166/",  # the same address as one decimal number
    "http://0xa9fea9fe/",  # as one hexadecimal number
    "http://0xa9.0xfe.0xa9.0xfe/",  # dotted hexadecimal
    "http://169.254.43518/",  # two parts
    "http://[::ffff:169.254.169.254]/",  # IPv4-mapped IPv6
    "http://[::ffff:a9fe:a9fe]/",
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/latest/meta-data/",  # AWS's IPv6 metadata address
    "http://100.100.100.200/latest/meta-data/",  # Alibaba's
    "http://169.254.0.1/",
    "http://169.254.255.254:8080/",
]
LOCAL_ADDRESSES = ["127.0.0.1", "127.8.9.10", "::1", "10.0.0.1", "172.16.5.4", "192.168.1.1"]
NON_PUBLIC = [*LOCAL_ADDRESSES, "100.64.0.1", "0.0.0.0", "::", "fc00::1", "224.0.0.1", "240.0.0.1"]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111"]


@pytest.fixture
def client() -> Iterator[HttpClient]:
    policy = HttpPolicy(backoff=0.01, total_timeout=60.0, connect_timeout=30.0, max_redirects=3)
    with HttpClient(policy) as running:
        yield running


@pytest.mark.parametrize("url", METADATA_URLS)
def test_metadata_and_link_local_urls_are_refused_at_once(url: str) -> None:
    # A connection attempt to an address that does not answer would take the whole connect
    # timeout (60 s): the bound below tells that from a refusal with room for a busy machine.
    policy = HttpPolicy(backoff=0.01, total_timeout=120.0, connect_timeout=60.0)
    started = time.monotonic()
    with HttpClient(policy) as client, pytest.raises(HttpError) as refused:
        client.request("GET", url)
    assert refused.value.reason == "address" and refused.value.attempts == 1, refused.value
    assert "link-local or cloud metadata address" in str(refused.value)
    assert "GENARUN_NETWORK=any" in str(refused.value)
    # Refused before any connection, not timed out (connecting would wait 60 s: see below).
    assert time.monotonic() - started < 30


def test_a_url_that_is_no_url_is_refused_as_such(client: HttpClient) -> None:
    """Dotted octal, which the resolver would read as 169.254.169.254, is no valid URL host."""
    with pytest.raises(HttpError) as refused:
        client.request("GET", "http://0251.0376.0251.0376/")
    assert refused.value.reason == "url" and "not a valid URL" in str(refused.value)


def test_the_rules_address_by_address() -> None:
    def why(text: str, rule: str) -> str | None:
        return refusal(ipaddress.ip_address(text), rule)

    for text in ("169.254.169.254", "fe80::1", "::ffff:169.254.169.254", "fd00:ec2::254"):
        assert why(text, "default") and why(text, "public") and why(text, "any") is None
    for text in LOCAL_ADDRESSES + PUBLIC:
        assert why(text, "default") is None
    for text in NON_PUBLIC:
        assert why(text, "public") == "not a public address (GENARUN_NETWORK=public)", text
    for text in PUBLIC:
        assert why(text, "public") is None


def test_a_redirect_to_the_metadata_service_is_refused(client: HttpClient) -> None:
    def answer(method: str, path: str, count: int) -> tuple[int, dict[str, str], bytes]:
        return 302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b""

    with Recorder(answer) as server, pytest.raises(HttpError) as refused:
        client.request("GET", server.url + "/innocent")
    assert refused.value.reason == "address" and refused.value.attempts == 1
    assert [r["path"] for r in server.requests] == ["/innocent"]  # asked once, not retried


def test_public_rule_keeps_off_loopback_and_default_reaches_it(
    client: HttpClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule is read as each connection opens (a person sets it for a whole process)."""
    with Recorder(lambda *_: ok()) as server:
        assert client.request("GET", server.url + "/a").json() == {"ok": True}
        for name in ("127.0.0.1", "localhost"):
            url = server.url.replace("127.0.0.1", name) + "/b"
            monkeypatch.setenv("GENARUN_NETWORK", "public")
            with HttpClient(HttpPolicy(backoff=0.01)) as fresh, pytest.raises(HttpError) as no:
                fresh.request("GET", url)
            assert no.value.reason == "address" and "not a public address" in str(no.value)
            monkeypatch.setenv("GENARUN_NETWORK", "any")
            with HttpClient(HttpPolicy(backoff=0.01)) as fresh:
                assert fresh.request("GET", url).json() == {"ok": True}
    assert [r["path"] for r in server.requests] == ["/a", "/b", "/b"]


def test_an_unknown_rule_is_named(client: HttpClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENARUN_NETWORK", "open")
    with pytest.raises(HttpError) as refused:
        client.request("GET", "http://127.0.0.1:9/")
    assert "GENARUN_NETWORK='open' is not a rule: use one of default, public, any" in str(
        refused.value
    )


def test_a_fetch_node_aimed_at_the_metadata_service_fails_alone(
    cli: Callable[..., Result], workdir: Path
) -> None:
    (workdir / "tree.yaml").write_text(
        "genarun: 1\nname: nosy\nnodes:\n"
        "  - id: creds\n    kind: fetch\n"
        "    url: \"http://{{ '169.254.169.254' }}/latest/meta-data/iam/\"\n"
        "  - id: fine\n    kind: template\n    text: still here\n"
    )
    result = cli("run", workdir / "tree.yaml")
    assert result.exit_code == 1, result.output
    assert "refused to connect to 169.254.169.254" in result.output
    assert "1 done" in result.output and "1 failed" in result.output


def test_through_a_proxy_the_target_is_checked_and_names_only_it_knows_go_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The proxy (the person's own, from HTTP_PROXY) connects, so the target is checked before
    the request goes to it; a name that does not resolve here is left to the proxy."""
    with Recorder(lambda *_: ok()) as proxy:
        for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("http_proxy", proxy.url)
        with HttpClient(HttpPolicy(backoff=0.01, max_retries=0)) as client:
            for url in (
                "http://169.254.169.254/latest/",
                "http://[fe80::1]/",
                "http://2852039166/",
            ):
                with pytest.raises(HttpError) as refused:
                    client.request("GET", url)
                assert refused.value.reason == "address", refused.value
            reply = client.request("GET", "http://only-the-proxy-knows.invalid/page")
            assert reply.json() == {"ok": True}
    assert [r["path"] for r in proxy.requests] == ["http://only-the-proxy-knows.invalid/page"]
