"""Policy as data: the TOML config, its defaults, force rules, and errors that name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from rcptguard.guard import Guard
from rcptguard.model import Action
from rcptguard.policy import ConfigError, load_policy


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_run_with_a_single_protected_domain() -> None:
    """The built-in policy holds a slip of a domain given only with --protect."""
    guard = Guard(load_policy().with_domains(protect=("example.com",)))
    assert guard.check("a@example.co").action is Action.HOLD
    assert guard.check("a@example.com").action is Action.PASS


def test_config_sets_domains_thresholds_and_weights(tmp_path: Path) -> None:
    """Values from the file override the defaults key by key; untouched keys keep their default."""
    path = write(tmp_path, 'protect = ["example.com"]\nknown = ["gmail.com"]\n'
                           "[thresholds]\nhold = 12\n[weights]\nTLD_SLIP = 9.5\n")
    policy = load_policy(path)
    assert policy.protect == ("example.com",)
    assert policy.thresholds[Action.HOLD] == 12.0
    assert policy.thresholds[Action.WARN] == 4.0
    assert policy.weight("TLD_SLIP") == 9.5
    assert policy.weight("OMISSION") == 6.0


def test_known_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    """known_files are found next to the config file, with optional counts and comments."""
    (tmp_path / "known.txt").write_text("# partners\nraytheon.com 40\nboeing.com\n", encoding="utf-8")
    path = write(tmp_path, 'known_files = ["known.txt"]\n')
    guard = Guard(load_policy(path))
    assert guard.check("a@raytheon.com").action is Action.PASS
    verdict = guard.check("a@raytheon.co")
    assert verdict.action is Action.HOLD
    assert verdict.signal("KNOWN_TARGET") is not None
    assert verdict.signal("KNOWN_TARGET").evidence["count"] == "40"


def test_force_rule_rejects_ml_unless_known(tmp_path: Path) -> None:
    """The Pentagon's rule: every .ml recipient is rejected unless it is a known correspondent."""
    path = write(tmp_path, 'known = ["orangemali.ml"]\n[[force]]\nsuffixes = ["ml"]\naction = "reject"\n'
                           'message = "Mali is blocked."\n')
    guard = Guard(load_policy(path).with_domains(protect=("mil",)))
    rejected = guard.check("a@army.ml")
    assert rejected.action is Action.REJECT
    assert rejected.reason.startswith("Mali is blocked.")
    assert rejected.intended == "army.mil"
    assert guard.check("a@somewhere.ml").action is Action.REJECT
    assert guard.check("a@orangemali.ml").action is Action.PASS


@pytest.mark.parametrize(("text", "line", "key"), [
    ("[thresholds]\nwarn = 4\nhold = 'high'\n", 3, "thresholds.hold"),
    ('protect = ["ok.com"]\nprotectt = ["x.com"]\n', 2, "protectt"),
    ("[weights]\nTLD_SLIP = 7\nNO_SUCH = 1\n", 3, "weights.NO_SUCH"),
    ('protect = ["ok.com", "bad..com"]\n', 1, "protect"),
    ("[thresholds]\nwarn = 9\nhold = 8\n", 1, "thresholds"),
    ('\n\n[[force]]\nsuffixes = ["ml"]\naction = "explode"\n', 5, "force.action"),
    ("[priors]\nprotected = true\n", 2, "priors.protected"),
])
def test_config_errors_name_file_line_and_key(tmp_path: Path, text: str, line: int, key: str) -> None:
    """Each mistake in a config file is reported with the file, the line and the key."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_policy(path)
    assert caught.value.key == key
    assert caught.value.line == line
    assert str(caught.value).startswith(f"{path}:{line}: {key}: ")


def test_toml_syntax_error_has_a_line(tmp_path: Path) -> None:
    """Broken TOML is reported with its line."""
    path = write(tmp_path, 'protect = ["a.com"]\n[thresholds\n')
    with pytest.raises(ConfigError, match=r"policy\.toml:2: not valid TOML"):
        load_policy(path)


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    """A config path that does not exist says so."""
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_policy(tmp_path / "nope.toml")


def test_bad_line_in_known_file_names_the_line(tmp_path: Path) -> None:
    """A known-domains file with a bad domain fails with its path and line number."""
    (tmp_path / "known.txt").write_text("good.com\n\nbad domain here\n", encoding="utf-8")
    path = write(tmp_path, 'known_files = ["known.txt"]\n')
    with pytest.raises(ConfigError, match=r"known\.txt:3"):
        Guard(load_policy(path))


def test_force_rule_without_unless_known_also_catches_known_domains(tmp_path: Path) -> None:
    """With unless_known = false, a force rule acts on known domains too."""
    path = write(tmp_path, 'known = ["shop.ml"]\n[[force]]\nsuffixes = ["ml"]\nunless_known = false\n'
                           'action = "hold"\n')
    verdict = Guard(load_policy(path)).check("a@shop.ml")
    assert verdict.action is Action.HOLD
    assert verdict.signal("FORCE_RULE") is not None


def test_missing_suffix_list_file_is_a_config_error(tmp_path: Path) -> None:
    """A psl_file that does not exist is a clear config error, not a traceback."""
    path = write(tmp_path, 'psl_file = "nope.dat"\n')
    with pytest.raises(ConfigError, match="psl_file: cannot read the suffix list"):
        Guard(load_policy(path))


def test_known_file_with_a_bad_count_names_the_line(tmp_path: Path) -> None:
    """A count that is not a number is reported with the line and the expected format."""
    (tmp_path / "known.txt").write_text("good.com 3\nother.com many\n", encoding="utf-8")
    path = write(tmp_path, 'known_files = ["known.txt"]\n')
    with pytest.raises(ConfigError, match=r"known\.txt:2: expected 'domain' or 'domain count'"):
        Guard(load_policy(path))


def test_unknown_key_in_a_gateway_section_names_it(tmp_path: Path) -> None:
    """A misspelt key in [web] (which would silently turn the admin pages off) is a config error."""
    path = write(tmp_path, '[web]\nadmin_user = "ops"\nadmin_pasword = "x"\n')
    with pytest.raises(ConfigError) as caught:
        load_policy(path)
    assert caught.value.key == "web.admin_pasword"
    assert caught.value.line == 3


@pytest.mark.parametrize(("text", "line", "key"), [
    ('[no_such_tld]\naction = "explode"\n', 2, "no_such_tld.action"),
    ("[no_such_tld]\naction = 3\n", 2, "no_such_tld.action"),
    ('\n[no_such_tld]\nprivate = ["a.b"]\n', 3, "no_such_tld.private"),
    ("[no_such_tld]\nprivat = []\n", 2, "no_such_tld.privat"),
    ("no_such_tld = 1\n", 1, "no_such_tld"),
])
def test_no_such_tld_errors_name_file_line_and_key(tmp_path: Path, text: str, line: int, key: str) -> None:
    """Mistakes in [no_such_tld] are reported with the file, the line and the key."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_policy(path)
    assert (caught.value.key, caught.value.line) == (key, line)


def test_no_such_tld_action_and_private_labels_are_configurable(tmp_path: Path) -> None:
    """[no_such_tld] sets the action for a suffix that does not exist and the labels that are private."""
    path = write(tmp_path, '[no_such_tld]\naction = "reject"\nprivate = ["hq"]\n')
    guard = Guard(load_policy(path))
    assert guard.check("a@smallfirm.con").action is Action.REJECT
    assert guard.check("a@printer.hq").action is Action.PASS
    assert load_policy().no_such_tld is Action.HOLD
