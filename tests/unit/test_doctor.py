"""The checks of `rcptguard doctor` that need no server: Postfix's lines read as data, the page's address, the next
hop's extensions, the secrets' modes, a SQLite store, and the two outputs of one list of findings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rcptguard.config import Config, load_config
from rcptguard.doctor import (
    Finding,
    Level,
    PostfixConf,
    Service,
    check_base_url,
    check_config,
    check_secrets,
    check_store,
    exit_status,
    hop_findings,
    parse_master,
    parse_params,
    policy_entries,
    postfix_findings,
    postfix_seconds,
    render_json,
    render_text,
    url_findings,
)
from rcptguard.store import Store
from tests.support.admin import ADMIN_HASH

LISTEN = ("127.0.0.1", 10025)
POLICY = "inet:127.0.0.1:10040"

# What postconf -x says of main.cf with the lines of docs/postfix/*.cf (the defaults it adds included).
MAIN = {
    "content_filter": "scan:[127.0.0.1]:10025",
    "smtpd_relay_restrictions": "permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination",
    "smtpd_recipient_restrictions": "check_policy_service inet:127.0.0.1:10040",
    "smtpd_end_of_data_restrictions": "check_policy_service inet:127.0.0.1:10040",
    "smtpd_policy_service_default_action": "451 4.3.5 Recipient check unavailable, try again later",
    "smtpd_policy_service_max_idle": "300s",
    "smtp_data_done_timeout": "600s",
    "milter_default_action": "tempfail",
    "smtpd_milters": "",
}
SCAN = Service("scan", "unix", "smtp", {"smtp_send_xforward_command": "yes", "smtp_generic_maps": ""})
REINJECT = Service("127.0.0.1:10026", "inet", "smtpd", {"content_filter": "",
                                                         "smtpd_authorized_xforward_hosts": "127.0.0.0/8"})


def config(tmp_path: Path, text: str = "") -> Config:
    path = tmp_path / "rcptguard.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path)


@pytest.fixture
def hold_config(tmp_path: Path) -> Config:
    return config(tmp_path, '[policyd]\nhold_mode = "hold"\n')


def found(conf: PostfixConf, cfg: Config) -> list[str]:
    """The messages of the problems and warnings postfix_findings gives."""
    return [f.message for f in postfix_findings(conf, cfg, LISTEN, POLICY) if f.level is not Level.OK]


def test_the_documented_postfix_lines_are_fine(hold_config: Config) -> None:
    """main.cf and master.cf as docs/postfix/*.cf print them give no problem and no warning."""
    assert found(PostfixConf(MAIN, (SCAN, REINJECT)), hold_config) == []


@pytest.mark.parametrize(("change", "services", "words"), [
    ({"content_filter": "scan:[127.0.0.1]:10024"}, (SCAN, REINJECT), "does not send mail to the relay"),
    ({"content_filter": "amavis:[127.0.0.1]:10025"}, (SCAN, REINJECT), "transport 'amavis' is not an smtp service"),
    ({"smtpd_relay_restrictions": "",
      "smtpd_recipient_restrictions": f"check_policy_service {POLICY}, reject_unauth_destination"},
     (SCAN, REINJECT), "before reject_unauth_destination"),
    ({"smtpd_relay_restrictions": f"permit_mynetworks, check_policy_service {POLICY}, reject_unauth_destination"},
     (SCAN, REINJECT), "before reject_unauth_destination"),
    ({"smtpd_recipient_restrictions": f"permit_sasl_authenticated, check_policy_service {POLICY}"},
     (SCAN, REINJECT), "after permit_sasl_authenticated"),
    ({"smtpd_policy_service_default_action": "DUNNO"}, (SCAN, REINJECT), "default action is 'DUNNO'"),
    ({"smtpd_policy_service_default_action": "550 5.7.1 no"}, (SCAN, REINJECT), "default action is '550"),
    ({"smtpd_recipient_restrictions": f"check_policy_service {{ {POLICY}, default_action=DUNNO }}"},
     (SCAN, REINJECT), "default action is 'DUNNO'"),
    ({"smtpd_end_of_data_restrictions": ""}, (SCAN, REINJECT), "senders of held mail are never told"),
    ({"smtpd_milters": "inet:127.0.0.1:10050", "milter_default_action": "accept"}, (SCAN, REINJECT),
     "accepted unchecked"),
    ({"smtp_data_done_timeout": "9m"}, (SCAN, REINJECT), "not longer than the relay's reply_within"),
    ({}, (SCAN,), "no smtpd service in master.cf on the relay's next hop"),
    ({}, (SCAN, Service("10026", "inet", "smtpd", {"smtpd_authorized_xforward_hosts": "127.0.0.0/8"})),
     "round and round"),
    ({"content_filter": "", "smtpd_recipient_restrictions": "", "smtpd_end_of_data_restrictions": ""},
     (SCAN, REINJECT), "neither the relay"),
])
def test_each_departure_from_the_docs_is_a_problem(hold_config: Config, change: dict[str, str],
                                                   services: tuple[Service, ...], words: str) -> None:
    """Each setting the docs prescribe, changed, gives a problem that says so."""
    findings = postfix_findings(PostfixConf({**MAIN, **change}, services), hold_config, LISTEN, POLICY)
    problems = [f.message for f in findings if f.level is Level.PROBLEM]
    assert any(words in message for message in problems), problems


@pytest.mark.parametrize("action", ["DEFER_IF_PERMIT", "defer", "450 4.7.1 later", "451"])
def test_temporary_default_actions_fail_closed(hold_config: Config, action: str) -> None:
    """DEFER_IF_PERMIT, DEFER and any 4xx keep the mail when the service is down: no finding."""
    conf = PostfixConf({**MAIN, "smtpd_policy_service_default_action": action}, (SCAN, REINJECT))
    assert found(conf, hold_config) == []


def test_a_policy_service_of_another_address_is_not_ours(hold_config: Config) -> None:
    """A check_policy_service for another service (postgrey, SPF) before reject_unauth_destination is not judged."""
    conf = PostfixConf({**MAIN, "smtpd_recipient_restrictions": "check_policy_service inet:127.0.0.1:10023, "
                        f"reject_unauth_destination, check_policy_service {POLICY}"}, (SCAN, REINJECT))
    assert found(conf, hold_config) == []


def test_reject_mode_needs_no_end_of_data_check(tmp_path: Path) -> None:
    """With hold_mode = "reject" (the default) no end-of-data check is asked for."""
    conf = PostfixConf({**MAIN, "smtpd_end_of_data_restrictions": ""}, (SCAN, REINJECT))
    assert found(conf, config(tmp_path)) == []


def test_missing_xforward_is_a_warning(hold_config: Config) -> None:
    """A reinjection service without smtpd_authorized_xforward_hosts, a scan without XFORWARD: warnings only."""
    conf = PostfixConf(MAIN, (Service("scan", "unix", "smtp"), Service("127.0.0.1:10026", "inet", "smtpd",
                                                                         {"content_filter": ""})))
    findings = postfix_findings(conf, hold_config, LISTEN, POLICY)
    assert exit_status(findings) == 0
    assert len([f for f in findings if f.level is Level.WARNING]) == 2


def test_an_idle_limit_longer_than_the_service_is_a_warning(hold_config: Config) -> None:
    """Postfix keeping idle policy connections longer than the service's idle_timeout (330 s) is warned."""
    conf = PostfixConf({**MAIN, "smtpd_policy_service_max_idle": "10m"}, (SCAN, REINJECT))
    assert [m for m in found(conf, hold_config) if "idle" in m]


def test_policy_entries_read_braced_attributes() -> None:
    """`check_policy_service { endpoint, name = value }` is one entry with its attributes and what comes before."""
    conf = PostfixConf({"r": "permit_mynetworks,check_policy_service { unix:private/policy, default_action = "
                              "DUNNO, timeout=10s }, reject"})
    (entry,) = policy_entries(conf, "r")
    assert (entry.endpoint, dict(entry.attributes), entry.before) == (
        "unix:private/policy", {"default_action": "DUNNO", "timeout": "10s"}, ("permit_mynetworks",))


@pytest.mark.parametrize(("value", "seconds"), [("600s", 600), ("10m", 600), ("1h", 3600), ("600", 600),
                                                ("1d", 86400), ("soon", None)])
def test_postfix_times(value: str, seconds: float | None) -> None:
    """Postfix times with and without a unit, in seconds; anything else is None."""
    assert postfix_seconds(value) == seconds


def test_postconf_output_is_parsed() -> None:
    """postconf -M lines and -P overrides become services with their parameters (an empty value kept)."""
    services = parse_master(
        "scan       unix  -       -       n       -       10      smtp -o smtp_send_xforward_command=yes\n"
        "127.0.0.1:10026 inet n   -       n       -       10      smtpd -o content_filter=\n",
        "scan/unix/smtp_send_xforward_command = yes\n127.0.0.1:10026/inet/content_filter =\n")
    assert services == (Service("scan", "unix", "smtp", {"smtp_send_xforward_command": "yes"}),
                        Service("127.0.0.1:10026", "inet", "smtpd", {"content_filter": ""}))
    assert parse_params("a = 1\nb =\n") == {"a": "1", "b": ""}


def test_hop_extensions() -> None:
    """The extensions the relay uses are named; DSN and XFORWARD missing are a warning each."""
    full = hop_findings("h:25", {"dsn": "", "xforward": "NAME ADDR", "smtputf8": "", "8bitmime": ""})
    offers = "h:25 answers EHLO; offers DSN, XFORWARD, SMTPUTF8, 8BITMIME"
    assert [(f.level, f.message) for f in full] == [(Level.OK, offers)]
    bare = hop_findings("h:25", {"8bitmime": ""})
    assert [f.level for f in bare] == [Level.OK, Level.WARNING, Level.WARNING]
    assert "offers 8BITMIME" in bare[0].message


@pytest.mark.parametrize(("url", "configured", "level"), [
    ("https://mail.example.com/guard", True, Level.OK),
    ("http://127.0.0.1:8025", True, Level.OK),
    ("http://[::1]:8025", True, Level.OK),
    ("http://localhost:8025", True, Level.OK),
    ("http://mail.example.com", True, Level.WARNING),
    ("http://127.0.0.1:8025", False, Level.WARNING),
])
def test_page_address(url: str, configured: bool, level: Level) -> None:
    """https, or http on loopback, is fine; plain http elsewhere, or no base_url set, is a warning."""
    assert [f.level for f in url_findings(url, configured)] == [level]


def test_https_page_without_a_trusted_proxy(tmp_path: Path) -> None:
    """An https base_url with no trusted_proxies is a warning (the page would believe no proxy); with the proxy's
    address in trusted_proxies it is not."""
    no_proxy = config(tmp_path, '[web]\nbase_url = "https://127.0.0.1:9"\n')
    (found,) = [f for f in check_base_url(no_proxy, 0.5) if "trusted_proxies" in f.message]
    assert found.level is Level.WARNING
    assert "trusted_proxies" in found.fix
    trusted = config(tmp_path, '[web]\nbase_url = "https://127.0.0.1:9"\ntrusted_proxies = ["127.0.0.1"]\n')
    assert not [f for f in check_base_url(trusted, 0.5) if "trusted_proxies" in f.message]


def test_config_error_is_a_problem_with_file_line_key(tmp_path: Path) -> None:
    """A ConfigError is one problem that names the file, the line and the key; no config comes back."""
    path = tmp_path / "bad.toml"
    path.write_text('[relay]\nworkers = 1\nidle_timeout = "long"\n', encoding="utf-8")
    findings, loaded = check_config(path)
    assert loaded is None
    assert [(f.level, f.message.split(": ")[0:2]) for f in findings] == [
        (Level.PROBLEM, [f"{path}:3", "relay.idle_timeout"])]


def test_secret_modes(tmp_path: Path) -> None:
    """A key file readable by its group or others is a problem; 0600 is fine; a short key is a problem."""
    secret = tmp_path / "web.secret"
    secret.write_text("a" * 64, encoding="ascii")
    cfg = config(tmp_path, '[web]\nsecret_file = "web.secret"\n')
    secret.chmod(0o600)
    assert exit_status(check_secrets(cfg)) == 0
    secret.chmod(0o640)
    assert "readable by its group" in check_secrets(cfg)[0].message
    secret.chmod(0o600)
    secret.write_text("short", encoding="ascii")
    assert "fewer than 16 characters" in check_secrets(cfg)[0].message


def test_missing_secret_file(tmp_path: Path) -> None:
    """A configured key file that is missing is a warning when rcptguard web can make it, a problem when not."""
    assert [f.level for f in check_secrets(config(tmp_path, '[web]\nsecret_file = "web.secret"\n'))] == [
        Level.WARNING]
    assert [f.level for f in check_secrets(config(tmp_path, '[web]\nsecret_file = "nowhere/web.secret"\n'))] == [
        Level.PROBLEM]


def test_inline_password_hash_in_a_world_readable_config(tmp_path: Path) -> None:
    """A config with admin_password_hash in it is a problem when others can read it, fine at 0640."""
    cfg = config(tmp_path, f'[web]\nadmin_user = "a"\nadmin_password_hash = "{ADMIN_HASH}"\n'
                 'secret = "0123456789abcdef"\n')
    assert cfg.source is not None
    cfg.source.chmod(0o644)
    (problem,) = [f for f in check_secrets(cfg) if f.level is Level.PROBLEM]
    assert "admin_password_hash, secret" in problem.message
    cfg.source.chmod(0o640)
    assert exit_status(check_secrets(cfg)) == 0


def test_plain_text_admin_password(tmp_path: Path) -> None:
    """A plain-text admin_password is a problem however the file is protected, with the command that makes a
    hash as its fix."""
    cfg = config(tmp_path, '[web]\nadmin_user = "a"\nadmin_password = "pw-pw-pw-pw"\nsecret = "0123456789abcdef"\n')
    assert cfg.source is not None
    cfg.source.chmod(0o600)
    (problem,) = [f for f in check_secrets(cfg) if f.level is Level.PROBLEM]
    assert "admin_password is a password in plain text" in problem.message
    assert "rcptguard web hash-password" in problem.fix


def test_store_checks(tmp_path: Path) -> None:
    """A migrated SQLite store is fine; one at an old revision is a problem; a missing one is reported, not made."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert [f.level for f in check_store(url)] == [Level.PROBLEM]
    assert not (tmp_path / "store.db").exists()
    store = Store.open(url, migrate=False)
    store.migrate("0003")
    store.close()
    assert "migrated to revision 0003" in check_store(url)[0].message
    Store.open(url).close()
    assert [f.level for f in check_store(url)] == [Level.OK]


def test_outputs_come_from_one_list() -> None:
    """Text and JSON say the same findings; a problem makes the status 1, warnings alone 0."""
    findings = [Finding("store", Level.OK, "fine"), Finding("page", Level.WARNING, "http", "use https"),
                Finding("postfix", Level.PROBLEM, "wrong port", "set it")]
    text = render_text(findings)
    assert "PROBLEM  postfix   wrong port" in text
    assert "fix: set it" in text
    assert text.endswith("1 problem, 1 warning")
    report = json.loads(render_json(findings))
    assert report["status"] == 1
    assert [f["level"] for f in report["findings"]] == ["ok", "warning", "problem"]
    assert exit_status(findings[:2]) == 0


# main.cf and master.cf with the lines of docs/postfix/milter.*.cf, and nothing of the other doors.
MILTER_MAIN = {**MAIN, "content_filter": "", "smtpd_recipient_restrictions": "", "smtpd_end_of_data_restrictions": "",
               "smtpd_milters": "unix:rcptguard/milter.sock", "non_smtpd_milters": "$smtpd_milters",
               "milter_protocol": "6", "queue_directory": "/var/spool/postfix"}
MILTER_REINJECT = Service("127.0.0.1:10026", "inet", "smtpd", {
    "smtpd_milters": "", "non_smtpd_milters": "",
    "receive_override_options": "no_unknown_recipient_checks,no_header_body_checks,no_milters,no_address_mappings"})


def test_the_documented_milter_lines_are_fine(tmp_path: Path) -> None:
    """The milter's socket in the queue folder, as main.cf names it (relative) and as [milter] listen says it."""
    assert found(PostfixConf(MILTER_MAIN, (MILTER_REINJECT,)), config(tmp_path)) == []
    inet = config(tmp_path, '[milter]\nlisten = "inet:8891@127.0.0.1"\n')
    conf = PostfixConf({**MILTER_MAIN, "smtpd_milters": "{ inet:localhost:8891, default_action = tempfail }"},
                       (MILTER_REINJECT,))
    assert found(conf, inet) == []


@pytest.mark.parametrize(("change", "services", "words"), [
    ({"milter_protocol": "2"}, (MILTER_REINJECT,), "milter_protocol = 2"),
    ({"non_smtpd_milters": ""}, (MILTER_REINJECT,), "not in non_smtpd_milters"),
    ({}, (Service("127.0.0.1:10026", "inet", "smtpd", {"content_filter": ""}),), "judged again and held again"),
    ({}, (), "released mail has nowhere to go"),
    ({"smtpd_milters": "unix:opendkim/opendkim.sock"}, (MILTER_REINJECT,), "nor the milter (smtpd_milters)"),
    ({"milter_default_action": "accept"}, (MILTER_REINJECT,), "accepted unchecked"),
])
def test_each_departure_from_the_milter_lines_is_found(tmp_path: Path, change: dict[str, str],
                                                       services: tuple[Service, ...], words: str) -> None:
    messages = found(PostfixConf({**MILTER_MAIN, **change}, services), config(tmp_path))
    assert any(words in message for message in messages), messages
