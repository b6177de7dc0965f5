"""The shipped list of real mail providers, its checks on load, and the script that refreshes it from the ISPDB."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rcptguard import providers as prov
from rcptguard.domains import is_public_suffix
from rcptguard.model import Action
from tests.conftest import make_guard

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "refresh_providers.py"
BIG_SIX = ("gmail.com", "outlook.com", "hotmail.com", "yahoo.com", "icloud.com", "aol.com")


def test_shipped_data_is_wide_and_well_formed() -> None:
    """The shipped list loads, holds over a thousand domains, and lists no public suffix."""
    listed = prov.providers()
    assert len(listed) > 1000
    assert len(set(listed.values())) > 200
    assert not [d for d in listed if is_public_suffix(d)]


def test_every_group_says_where_it_comes_from() -> None:
    """Each domain's source is hand-written or an ISPDB file at a commit."""
    sources = {prov.source_of(d) for d in prov.providers()}
    assert "manual" in sources
    ispdb = {s for s in sources if s and s.startswith("ISPDB ") and s.endswith(".xml")}
    assert sources - ispdb == {"manual", "manual: corporate domain"}
    assert prov.source_of("bigpond.net") == "ISPDB c6ad79659b5f/ispdb/bigpond.com.xml"


def test_a_subdomain_is_judged_like_its_provider_domain() -> None:
    """mail.verizon.com has verizon.com's owner, source and siblings; the corporate domain is verizon.net's sibling."""
    assert prov.owner_of("mail.verizon.com") == prov.owner_of("verizon.net") == "Verizon"
    assert prov.source_of("mail.verizon.com") == "manual: corporate domain"
    assert prov.siblings("mail.verizon.com") == ("verizon.net",)
    assert "cox.net" in prov.siblings("cox.com")
    assert prov.owner_of("Mail.Verizon.COM.") == "Verizon"


def test_the_walk_stops_at_the_registrable_domain() -> None:
    """A provider that is itself a subdomain covers what lies under it, not its parent or an unlisted domain."""
    assert prov.owner_of("x.bay.wind.ne.jp") == prov.owner_of("bay.wind.ne.jp") is not None
    assert prov.owner_of("wind.ne.jp") is None
    assert prov.owner_of("example.com") is None
    assert prov.siblings("example.com") == ()
    assert prov.owner_of("not a domain") is None
    assert prov.owner_of("com") is None


def test_isp_corporate_domains_are_not_held() -> None:
    """ISPs' own domains and their subdomains are not held as slips of the customer-mail domains."""
    guard = make_guard((), BIG_SIX)
    for domain in ("verizon.com", "mail.verizon.com", "charter.com", "cox.com", "telstra.com.au", "bigpond.net"):
        assert guard.check(f"x@{domain}").action < Action.HOLD, domain


GOOD = """
[[provider]]
owner = "A"
source = "manual"
domains = ["a.com", "a.net"]
"""


@pytest.mark.parametrize(("extra", "message"), [
    ('[[provider]]\nowner = "B"\nsource = "manual"\ndomains = ["a.net"]\n', "a.net is already listed for 'A'"),
    ('[[provider]]\nowner = "B"\nsource = "manual"\ndomains = ["B.com"]\n', "'B.com' is not an ASCII lower-case"),
    ('[[provider]]\nowner = "B"\nsource = "manual"\ndomains = ["bé.com"]\n', "is not an ASCII lower-case"),
    ('[[provider]]\nowner = "B"\nsource = "manual"\ndomains = ["com"]\n', "'com' is not an ASCII lower-case"),
    ('[[provider]]\nowner = "B"\ndomains = ["b.com"]\n', "`source` must say"),
    ('[[provider]]\nsource = "manual"\ndomains = ["b.com"]\n', "`owner` must be"),
    ('[[provider]]\nowner = "B"\nsource = "manual"\ndomains = []\n', "`domains` must be"),
    ("[[provider]\n", "providers.toml: "),
])
def test_broken_data_is_refused_on_load(extra: str, message: str) -> None:
    """A domain listed twice, not ASCII lower case, or a group without owner, source or domains is refused."""
    assert prov.load(GOOD).by_owner == {"A": ("a.com", "a.net")}
    with pytest.raises(prov.ProviderDataError, match=message.replace("(", r"\(").replace("[", r"\[")):
        prov.load(GOOD + extra)


def _refresh(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    fixture = Path(__file__).resolve().parents[1] / "data" / "ispdb_fixture"
    return subprocess.run([sys.executable, str(SCRIPT), str(fixture), "--commit", "0123456789abcdef" * 2 + "01234567",
                           "--toml", str(tmp_path / "providers.toml"), *args],
                          capture_output=True, text=True, check=False)


def test_refresh_builds_groups_from_ispdb_files(tmp_path: Path) -> None:
    """Each fake ISPDB file becomes a group with its owner and source; hand-written groups win and are kept."""
    fixture = Path(__file__).resolve().parents[1] / "data" / "ispdb_fixture"
    shutil.copy(fixture / "providers.toml", tmp_path / "providers.toml")
    done = _refresh(tmp_path)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "providers.toml").read_text("utf-8")
    assert text.startswith((fixture / "providers.toml").read_text("utf-8"))
    data = prov.load(text).by_domain
    assert {d: (e.owner, e.source) for d, e in data.items() if e.source != "manual"} == {
        "alpha-mail.com": ("Alpha Mail", "ISPDB 0123456789ab/ispdb/alpha-mail.com.xml"),
        "alpha-mail.de": ("Alpha Mail", "ISPDB 0123456789ab/ispdb/alpha-mail.com.xml"),
        "shared-host.net": ("Alpha Mail", "ISPDB 0123456789ab/ispdb/alpha-mail.com.xml"),
        "gamma.org": ("Gamma Group", "ISPDB 0123456789ab/ispdb/gamma.org.xml"),
        "gamma-mail.org": ("Gamma Group", "ISPDB 0123456789ab/ispdb/gamma.org.xml"),
        "customer-school.edu": ("Customer School", "ISPDB 0123456789ab/ispdb/gamma.org.xml"),
    }
    assert data["beta-corp.com"].owner == "Delta"  # a hand-written group keeps its domain
    for note in ("alpha-mail.notatld (suffix not in the Public Suffix List)", "co.uk (a public suffix itself)",
                 "beta-corp.com (kept in hand-written group Delta)", "shared-host.net (also in alpha-mail.com.xml)",
                 "gamma.org (also in gamma.org.xml)", "# beta.net.xml (Beta Corp): nothing new",
                 "# also listed above: beta.fr, beta.net"):
        assert note in text


def test_refresh_is_deterministic(tmp_path: Path) -> None:
    """A second run changes nothing, and --check says so; an edited generated part is reported."""
    fixture = Path(__file__).resolve().parents[1] / "data" / "ispdb_fixture"
    shutil.copy(fixture / "providers.toml", tmp_path / "providers.toml")
    assert _refresh(tmp_path).returncode == 0
    first = (tmp_path / "providers.toml").read_text("utf-8")
    assert _refresh(tmp_path).returncode == 0
    assert (tmp_path / "providers.toml").read_text("utf-8") == first
    assert _refresh(tmp_path, "--check").returncode == 0
    (tmp_path / "providers.toml").write_text(first.replace('"gamma-mail.org"', '"gamma-mail.net"'), "utf-8")
    assert _refresh(tmp_path, "--check").returncode == 1
