"""The Postfix side of docs/hosted-mail.md with a private Postfix: the page's main.cf lines (read from the page) on
top of the relay's documented lines, a client at 127.0.0.2 standing for the provider's servers. It relays only
over TLS, only for the organisation's senders, only for the provider's addresses; what it relays goes through the
guard: the good recipient out, the mistyped one held."""

from __future__ import annotations

import re
import smtplib
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import MakePostfix
from tests.integration.postfix import PostfixInstance, find_tool
from tests.integration.test_relay_postfix import RelayProcess, documented, held, relay_process
from tests.support.processes import free_port
from tests.support.sink import RecordingSink

pytestmark = pytest.mark.integration

PAGE = Path(__file__).parents[2] / "docs" / "hosted-mail.md"
PROVIDER = "127.0.0.2"  # the provider's servers, for the test
STRANGER = "127.0.0.3"  # any other client


def page_files() -> dict[str, str]:
    """The page's Postfix files, by the path their first line names: main.cf lines, own_domains, and each
    provider's hosted_clients.cidr (the last one given)."""
    files: dict[str, str] = {}
    for block in re.findall(r"^```text\n(.*?)^```$", PAGE.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL):
        first, _, rest = block.partition("\n")
        found = re.match(r"# (/etc/postfix/\S+):", first)
        if found:
            files[found[1]] = rest
    return files


def main_cf(text: str, config_dir: Path) -> dict[str, str]:
    params = {}
    for line in text.splitlines():
        name, _, value = line.partition("=")
        params[name.strip()] = value.strip().replace("/etc/postfix/", f"{config_dir}/").replace(
            "/etc/ssl/guard/", f"{config_dir}/")
    return params


@pytest.fixture
def guarded(postfix: MakePostfix, tmp_path: Path) -> Iterator[tuple[PostfixInstance, RelayProcess]]:
    """Postfix as the provider's smart host: the relay's lines, then the page's, with a self-signed certificate
    and the provider's ranges reduced to PROVIDER (the class the page names kept)."""
    relay_port, reinject = free_port(), free_port()
    main, master = documented(relay_port, reinject)
    instance = postfix(main_cf={**main, "mynetworks": "127.0.0.1/32"}, master_cf_extra=master)
    files = page_files()
    config = instance.config_dir
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    "/CN=mx-guard.example.org", "-keyout", str(config / "privkey.pem"), "-out",
                    str(config / "fullchain.pem")], check=True, capture_output=True)
    (config / "privkey.pem").chmod(0o600)
    classes = {line.split()[1] for line in files["/etc/postfix/hosted_clients.cidr"].splitlines() if line.strip()}
    assert len(classes) == 1, classes  # every range maps to the one restriction class
    (config / "hosted_clients.cidr").write_text(f"{PROVIDER}/32 {classes.pop()}\n", encoding="utf-8")
    (config / "own_domains").write_text(files["/etc/postfix/own_domains"], encoding="utf-8")
    subprocess.run([find_tool("postmap"), "-c", str(config), str(config / "own_domains")], check=True,
                   capture_output=True)
    instance.set_main(main_cf(files["/etc/postfix/main.cf"], config))
    with relay_process(tmp_path, relay_port, reinject) as relay:
        yield instance, relay


def session(instance: PostfixInstance, client: str, sender: str, *, tls: bool = True) -> dict[str, tuple[int, bytes]]:
    """One message from `client` (an address on loopback) to a good and a mistyped recipient; the refusals."""
    message = f"From: {sender}\r\nTo: crew@navy.mil, bob@gmial.com\r\nSubject: crew list\r\n\r\nPassports.\r\n"
    with smtplib.SMTP("127.0.0.1", instance.smtpd_port, timeout=30, source_address=(client, 0)) as smtp:
        smtp.ehlo("outbound.protection.example")
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # the test's certificate is self-signed
            smtp.starttls(context=context)
            smtp.ehlo("outbound.protection.example")
        try:
            return smtp.sendmail(sender, ["crew@navy.mil", "bob@gmial.com"], message.encode())
        except smtplib.SMTPRecipientsRefused as exc:
            return dict(exc.recipients)


REFUSED = [
    (PROVIDER, "alice@example.org", False, (450, "Session encryption is required")),
    (PROVIDER, "mallory@elsewhere.example", True, (554, "Access denied")),
    (STRANGER, "alice@example.org", True, (554, "Relay access denied")),
]


def test_only_the_providers_servers_relay_and_through_the_guard(guarded: tuple[PostfixInstance, RelayProcess],
                                                                sink: RecordingSink) -> None:
    """Without TLS (450: the provider keeps the mail and tries again), with a sender outside the organisation's
    domains or from an address outside the provider's ranges (554), every recipient is refused and nothing
    reaches the relay or the next hop. Over TLS from the provider's address with an example.org sender,
    crew@navy.mil reaches the next hop (the internet, here) and bob@gmial.com is held."""
    instance, relay = guarded
    for client, sender, tls, (code, text) in REFUSED:
        refused = session(instance, client, sender, tls=tls)
        assert set(refused) == {"crew@navy.mil", "bob@gmial.com"}, (client, sender, tls)
        assert {reply for reply, _ in refused.values()} == {code}, refused
        assert all(text.encode() in said for _, said in refused.values()), refused
    assert instance.queue() == []
    assert held(relay.db) == []
    assert sink.messages == []

    assert session(instance, PROVIDER, "alice@example.org") == {}
    delivered = [m for m in sink.wait_for(2) if m.mail_from == "alice@example.org"]
    assert [m.rcpt_tos for m in delivered] == [("crew@navy.mil",)]
    assert b"using TLS" in delivered[0].data
    instance.wait_queue_empty()
    assert [entry["recipient"] for entry in held(relay.db)] == ["bob@gmial.com"]
