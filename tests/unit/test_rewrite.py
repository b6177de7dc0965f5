"""The corrected address in To and Cc of a released message: in place, and never under a DKIM signature."""

from __future__ import annotations

import subprocess
from pathlib import Path

import dkim

from rcptguard.rewrite import correct_headers

BODY = b"\r\nReply to j.doe@gmial.com if you like.\r\n"


def test_the_address_is_replaced_in_to_and_cc_only() -> None:
    """To and a folded Cc name the corrected address; every other byte (From, Subject, the body) is unchanged."""
    message = (b'From: me@example-corp.com\r\nTo: "J. Doe" <J.Doe@Gmial.com>, other@example.org\r\n'
               b"Cc: first@example.org,\r\n\tj.doe@gmial.com\r\nSubject: about j.doe@gmial.com\r\n" + BODY)
    rewritten, why_not = correct_headers(message, "j.doe@gmial.com", "j.doe@gmail.com")
    assert why_not is None
    assert rewritten == (b'From: me@example-corp.com\r\nTo: "J. Doe" <j.doe@gmail.com>, other@example.org\r\n'
                         b"Cc: first@example.org,\r\n\tj.doe@gmail.com\r\nSubject: about j.doe@gmial.com\r\n" + BODY)


def test_only_the_whole_address_is_replaced() -> None:
    """A longer address that contains the typed one is left alone."""
    message = b"To: xj.doe@gmial.com, j.doe@gmial.com.evil.example\r\n" + BODY
    assert correct_headers(message, "j.doe@gmial.com", "j.doe@gmail.com") == (message, "absent")


def test_a_bcc_recipient_changes_nothing() -> None:
    """An address in no To or Cc (a Bcc recipient) leaves the message as it is."""
    message = b"To: other@example.org\r\n" + BODY
    assert correct_headers(message, "j.doe@gmial.com", "j.doe@gmail.com") == (message, "absent")


def sign(message: bytes, headers: list[bytes], tmp_path: Path) -> tuple[bytes, bytes]:
    """The message signed by example-corp.com over `headers`, and the DNS TXT record that verifies it."""
    key = tmp_path / "key.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True,
                            capture_output=True).stdout
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    signature = dkim.sign(message, b"sel", b"example-corp.com", key.read_bytes(), include_headers=headers)
    return signature + message, record


def test_under_a_dkim_signature_of_to_nothing_changes(tmp_path: Path) -> None:
    """A signature over To: the message goes as it was (it still verifies) and the caller learns why."""
    message = b"From: me@example-corp.com\r\nTo: j.doe@gmial.com\r\nSubject: hi\r\n" + BODY
    signed, record = sign(message, [b"from", b"to", b"subject"], tmp_path)
    rewritten, why_not = correct_headers(signed, "j.doe@gmial.com", "j.doe@gmail.com")
    assert (rewritten, why_not) == (signed, "signed")
    assert dkim.verify(rewritten, dnsfunc=lambda *_a, **_k: record)


def test_a_signature_that_leaves_to_out_still_verifies_after_the_change(tmp_path: Path) -> None:
    """A signature over From and Subject only: To is corrected and the signature still verifies."""
    message = b"From: me@example-corp.com\r\nTo: j.doe@gmial.com\r\nSubject: hi\r\n" + BODY
    signed, record = sign(message, [b"from", b"subject"], tmp_path)
    rewritten, why_not = correct_headers(signed, "j.doe@gmial.com", "j.doe@gmail.com")
    assert why_not is None
    assert b"To: j.doe@gmail.com\r\n" in rewritten
    assert dkim.verify(rewritten, dnsfunc=lambda *_a, **_k: record)
