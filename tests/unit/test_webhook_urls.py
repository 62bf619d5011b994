"""Webhook URL safety (``webhooks/urls.py``): only http(s) to public destinations unless private ones are allowed.

No network here: ``check_destination`` resolves only ``localhost`` and IP literals, and a fake resolver stands in
for DNS names.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from execsvc.core.errors import ExecsvcError
from execsvc.webhooks.urls import InvalidWebhookUrl, check_destination, check_url

PUBLIC = [
    "http://example.com",
    "https://example.com/hooks/orders?x=1",
    "HTTPS://Example.COM:8443/path",
    "http://93.184.216.34/",
    "https://93.184.216.34:443/hook",
    "http://[2606:4700::1111]/",
    "https://[2606:4700::1111]:8443/hook",
    "http://[::ffff:93.184.216.34]/",
    "http://xn--bcher-kva.example/",
    "http://bücher.example/",
]

NON_PUBLIC = [
    ("http://10.0.0.1/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://100.64.0.1/", "not a globally routable"),
    ("http://127.0.0.1/", "loopback"),
    ("http://127.0.0.1.:8080/", "loopback"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[::1]/", "loopback"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fe80::1%25eth0]/", "link-local"),
    ("http://[fc00::1]/", "private"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://[64:ff9b::a00:1]/", "private"),
    ("http://[2002:7f00:1::]/", "loopback"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "private"),
    ("http://localhost/", "loopback name"),
    ("http://LOCALHOST:8080/", "loopback name"),
    ("http://localhost./", "loopback name"),
    ("http://a.localhost/", "loopback name"),
    ("http://127.1/", "loopback"),
    ("http://0x7f.0.0.1/", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://017700000001/", "loopback"),
    ("http://127\u30020\u30020\u30021/", "loopback"),
]

MALFORMED = [
    ("ftp://example.com/", "http or https"),
    ("file:///etc/passwd", "http or https"),
    ("example.com/hook", "no scheme"),
    ("http:///path", "no host"),
    ("http://", "no host"),
    ("https://:443/", "no host"),
    ("http://user:pass@example.com/", "user name or password"),
    ("http://user@example.com/", "user name or password"),
    ("http://example.com\\@127.0.0.1/", "backslashes"),
    ("http://exa mple.com/", "whitespace"),
    ("http://example.com/\n", None),
    ("http://exa\tmple.com/", "whitespace"),
    ("http://example.com:0/", "between 1 and 65535"),
    ("http://example.com:65536/", "invalid port"),
    ("http://example.com:http/", "invalid port"),
    ("http://[::1/", "malformed"),
    ("http://example.com/" + "a" * 2000, "longer than 2000"),
    ("http://" + "\u00e9" * 64 + ".example/", "not a valid domain name"),
]


@pytest.mark.parametrize("url", PUBLIC)
@pytest.mark.parametrize("allow_private", [False, True])
def test_public_urls_are_accepted(url: str, allow_private: bool) -> None:
    assert check_url(url, allow_private) == url


def test_only_surrounding_whitespace_is_stripped() -> None:
    assert check_url("  \thttps://Example.com/A?b=C \n", allow_private=False) == "https://Example.com/A?b=C"


@pytest.mark.parametrize(("url", "reason"), NON_PUBLIC)
def test_non_public_hosts_are_refused(url: str, reason: str) -> None:
    with pytest.raises(InvalidWebhookUrl, match=reason) as caught:
        check_url(url, allow_private=False)
    assert "only public destinations" in str(caught.value)


@pytest.mark.parametrize(("url", "reason"), NON_PUBLIC)
def test_non_public_hosts_are_accepted_when_private_is_allowed(url: str, reason: str) -> None:
    assert check_url(url, allow_private=True) == url


@pytest.mark.parametrize(("url", "message"), MALFORMED)
@pytest.mark.parametrize("allow_private", [False, True])
def test_malformed_urls_are_refused_even_when_private_is_allowed(
    url: str, message: str | None, allow_private: bool
) -> None:
    if message is None:
        assert check_url(url, allow_private) == url.strip()
        return
    with pytest.raises(InvalidWebhookUrl, match=message):
        check_url(url, allow_private)


def test_the_error_is_a_domain_error_with_its_code() -> None:
    with pytest.raises(ExecsvcError) as caught:
        check_url("ftp://example.com", allow_private=False)
    assert isinstance(caught.value, InvalidWebhookUrl)
    assert caught.value.code == "invalid_webhook_url"


# -- check_destination -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://localhost:8080/hook", "https://127.0.0.1/", "http://[::1]:9000/"])
async def test_destinations_resolving_to_loopback_are_refused(url: str) -> None:
    with pytest.raises(InvalidWebhookUrl, match="loopback"):
        await check_destination(url, allow_private=False)


@pytest.mark.parametrize("url", ["http://localhost:8080/hook", "https://127.0.0.1/", "http://10.1.2.3/"])
async def test_destinations_resolving_to_private_addresses_are_allowed_when_asked(url: str) -> None:
    await check_destination(url, allow_private=True)


@pytest.mark.parametrize("url", ["http://93.184.216.34/", "https://[2606:4700::1111]:8443/"])
async def test_public_ip_destinations_are_allowed(url: str) -> None:
    await check_destination(url, allow_private=False)


async def test_malformed_destinations_are_refused() -> None:
    with pytest.raises(InvalidWebhookUrl, match="http or https"):
        await check_destination("gopher://localhost/", allow_private=True)


FakeInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[Any, ...]]


def fake_resolver(
    monkeypatch: pytest.MonkeyPatch, answer: list[str] | OSError, seen: list[tuple[str, int]] | None = None
) -> None:
    """Make the running loop's ``getaddrinfo`` answer ``answer`` for every name (or raise it)."""

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[FakeInfo]:
        if seen is not None:
            seen.append((host, port))
        if isinstance(answer, OSError):
            raise answer
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in answer
        ]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("http://hooks.example.com/x", 80),
        ("https://hooks.example.com/x", 443),
        ("HTTPS://hooks.example.com:8443", 8443),
    ],
)
async def test_a_public_name_is_allowed_and_resolved_on_the_right_port(
    monkeypatch: pytest.MonkeyPatch, url: str, port: int
) -> None:
    seen: list[tuple[str, int]] = []
    fake_resolver(monkeypatch, ["93.184.216.34", "2606:4700::1111"], seen)
    await check_destination(url, allow_private=False)
    assert seen == [("hooks.example.com", port)]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (["10.0.0.7"], "private"),
        (["93.184.216.34", "169.254.169.254"], "link-local"),
        (["2606:4700::1111", "::ffff:127.0.0.1"], "loopback"),
        (["fe80::1%eth0"], "link-local"),
    ],
)
async def test_a_name_is_refused_if_any_address_is_not_public(
    monkeypatch: pytest.MonkeyPatch, answer: list[str], reason: str
) -> None:
    fake_resolver(monkeypatch, answer)
    with pytest.raises(InvalidWebhookUrl, match=f"resolves to .*{reason}"):
        await check_destination("https://rebind.example.com/", allow_private=False)
    await check_destination("https://rebind.example.com/", allow_private=True)


@pytest.mark.parametrize("allow_private", [False, True])
async def test_a_name_that_does_not_resolve_is_refused(monkeypatch: pytest.MonkeyPatch, allow_private: bool) -> None:
    fake_resolver(monkeypatch, socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    with pytest.raises(InvalidWebhookUrl, match="does not resolve"):
        await check_destination("https://nowhere.example.com/", allow_private=allow_private)


@pytest.mark.parametrize("allow_private", [False, True])
async def test_a_name_that_resolves_to_nothing_is_refused(monkeypatch: pytest.MonkeyPatch, allow_private: bool) -> None:
    fake_resolver(monkeypatch, [])
    with pytest.raises(InvalidWebhookUrl, match="no address"):
        await check_destination("https://empty.example.com/", allow_private=allow_private)
