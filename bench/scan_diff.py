"""Differential check of the sensitivity scanner: this tree's findings against another revision's, message by message.

The messages are the ones the tests and benches build, and many more made from them: every body of
tests/unit/test_content.py (sensitive and ordinary), the bodies of the scan tests, the relay's test messages,
bench_scan.py's corpus, the 10 KB message of smtp-source that bench_relay.py sends, and a seeded mix of the
sensitive snippets in long filler, in upper, lower and mixed case, next to characters whose lower case is longer
(İ) or not ASCII, sent plain, base64, quoted-printable, as HTML, and with PDF, DOCX and XLSX attachments.

The messages are built once, here; the other revision's `src` is exported with `git archive`, and each revision
reads them in a child process of its own (importing only `rcptguard.content`). The findings must be equal:
`Sensitivity.to_json()`, its signals, severities, evidence with counts, and the parts not read.

    python bench/scan_diff.py --against main [--mixes 6000] [--timed 5]

With `--timed N`, each revision's `scan_message` is also timed in a child of its own (CPU time, the best of three
passes), in turn, N times each: on the 10 KB message of bench_relay.py, and on bench_scan.py's 20 KB messages.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).parents[1]
T0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
FILLER = ["Please find the figures for the quarter below, and tell me what you think of them. ",
          "The meeting moved to Thursday at 10:30 in room 4-112; call 555-0123 if you are late. ",
          "Order 2026-0042 ships on 14 Mar 2026, see the note of 3/4/26. ", "Reference: AB12 CD34. ",
          "Ça coûte 12 €, n'est-ce pas ? ", "İstanbul office, Straße 5, Tromsø. ", "(see attached) ",
          "Secret Santa is on Friday; keep it confidential! ", "-- \nSent from my phone\n", "\n\n", "\n",
          "(C) 2026 Example Corp. ", "<<draft>> ", "key points: none. ", "The patient list is empty. "]


def _relay_bench_message() -> bytes:
    """What smtp-source -l 10240 sends in bench_relay.py: numbered lines of X."""
    head = (b"Received: from vm ([127.0.0.1])\r\n\tby vm (Postfix) with SMTP id 72723238;\r\n"
            b"\tWed,  2 Dec 2026 12:24:54 +0000 (UTC)\r\nFrom: <me@example-corp.com>\r\n"
            b"To: <someone@example-corp.net>\r\nDate: Wed,  2 Dec 2026 12:24:54 +0000 (UTC)\r\n"
            b"Message-Id: <2858.0003.0000@vm>\r\n\r\n")
    lines = [f"{n % 10}".encode() + b"X" * 79 for n in range(1, 129)]
    return head + b"\r\n".join(lines) + b"\r\n"


def _snippets() -> list[str]:
    from tests.unit import test_content

    fires = test_content.test_each_detector_fires.pytestmark[0].args[1]  # type: ignore[attr-defined]
    ordinary = test_content.test_ordinary_text_raises_nothing.pytestmark[0].args[1]  # type: ignore[attr-defined]
    from tests.integration.test_scan_report import BODIES

    return [body for body, *_ in fires] + list(ordinary) + list(BODIES) + [
        "Crew passport number P1234567\nSSN 536-22-8726\n", "password: Tr0ub4dor&3\n", "CUI\n",
        "UNCLASSIFIED//FOR OFFICIAL USE ONLY\n", "Personnummer: 811218-9876\n", "PESEL 44051401359\n",
        "Steuer-ID 36 574 261 809\n", "SIN 046 454 286\n", "Aadhaar 2345 6789 0124\n", "CPR 211062-5629\n",
        "fødselsnummer 15108695088\n", "NIR 2 55 08 14 168 025 38\n", "RSSMRA85T10A562S\n", "131052-308T\n",
        "IBAN GB82 WEST 1234 5698 7654 32\n", "xoxb-1234567890-abcdefghij\n", "AIza" + "b" * 35 + "\n",
        "sk_live_" + "a" * 24 + "\n", "sk-proj-" + "A1_b" * 9 + "\n",
        "eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.c2lnbmF0dXJlMTIz\n",
        "api_key = 'abcdefghijklmnopqrstuv'\n", "client-secret: ZYXWVUTSRQPONMLK1234\n",
        "Diagnosis: E11.9 confirmed\n", "ICD-10 J45\n", "medical record and blood test and MRI\n",
        "Record locator ABC123, flight LH 400 on 2026-05-01, seat 3A\n", "OFFICIAL-SENSITIVE\n",
        "PROTECTED A\n", "Protected C\n", "NATO RESTRICTED\n", "(TS//SI) plan\n", "(C) note\n",
        "TOP SECRET//SCI\n", "CONFIDENTIAL\n", "Strictly Confidential\n", "internal use only\n",
        "Vertraulich und confidentiel\n", "mot de passe = abc12345\n", "contraseña: pa55w0rd\n",
        "passeport 12AB34567\n", "Passausweis C01X00T47\n", "4012-8888-8888-1881\n", "3782 822463 10005\n",
        "6011 1111 1111 1117\n", "5555 5555 5555 4444\n", "SSN 078051120\n", "social security no. 536 22 8726\n",
        "BSN 111222333 en burgerservicenummer 123456782\n", "-----BEGIN RSA PRIVATE KEY-----\n",
        "AKIAIOSFODNN7EXAMPLE\n", "ghp_" + "Z9y8" * 10 + "\n", "github_pat_" + "a_B1" * 11 + "\n",
    ]


def _cases(text: str, rng: random.Random) -> str:
    return rng.choice([text, text, text.upper(), text.lower(), text.title(), text.swapcase()])


def _mixes(count: int, seed: int = 7) -> Iterator[bytes]:
    from tests.support.archives import DOCX, MRZ, PDF, XLSX, Sent, docx_bytes, pdf_bytes, xlsx_bytes

    rng = random.Random(seed)
    snippets = [*_snippets(), MRZ, "Traveller:\n" + MRZ]
    attachment_kinds = [("crew-list.pdf", PDF), ("notes.docx", DOCX), ("budget.xlsx", XLSX),
                        ("server.pem", "application/x-pem-file"), ("id_rsa", "application/octet-stream"),
                        ("Payroll 2026.txt", "text/plain"), ("page.html", "text/html"),
                        ("photo.jpg", "image/jpeg")]
    for number in range(count):
        pieces = [rng.choice(FILLER) * rng.randrange(1, 40) for _ in range(rng.randrange(1, 6))]
        for _ in range(rng.randrange(0, 4)):
            pieces.insert(rng.randrange(len(pieces) + 1), _cases(rng.choice(snippets), rng))
        body = "".join(pieces)
        transfer = rng.choice([None, None, None, "base64", "quoted-printable"])
        html = None
        if rng.random() < 0.15:
            html = f"<html><head><style>p{{}}</style></head><body><p>{body.replace(chr(10), '<br>')}</p></body></html>"
        attachments: list[tuple[str, str, bytes]] = []
        if rng.random() < 0.03:
            name, mime = rng.choice(attachment_kinds)
            inner = [rng.choice(snippets).strip() for _ in range(2)]
            content = (pdf_bytes(inner) if mime == PDF else docx_bytes(inner) if mime == DOCX
                       else xlsx_bytes([[line] for line in inner]) if mime == XLSX
                       else "\n".join(inner).encode())
            attachments.append((name, mime, content))
        sent = Sent("a@example.com", ("b@army.ml",), T0, body=body, transfer=transfer, html=html,
                    attachments=attachments, message_id=f"mix{number}@test")
        raw = sent.build()
        yield raw.replace(b"\n", b"\r\n") if number % 2 else raw


def corpus(mixes: int) -> Iterator[bytes]:
    from bench.bench_scan import messages
    from tests.support.archives import Sent
    from tests.unit.test_relay_content import LUNCH, SENSITIVE

    yield _relay_bench_message()
    yield SENSITIVE
    yield LUNCH
    yield bytes(range(256)) * 400
    yield (b"From: a@example.com\nTo: b@army.ml\nMIME-Version: 1.0\nContent-Type: text/plain; charset=x-no-such\n\n"
           b"password: s3cr\xe9t-value\n")
    yield (b"From: a@example.com\nTo: b@army.ml\nMIME-Version: 1.0\n"
           b'Content-Type: multipart/mixed; boundary="XX"\n\n--XX\nContent-Type: text/plain\n\nSSN 536-22-8726\n'
           b"--XY\nContent-Type: application/pdf\nContent-Transfer-Encoding: base64\n\n!!!not base64###\n")
    for body in _snippets():
        for transfer in (None, "base64", "quoted-printable"):
            yield Sent("a@example.com", ("b@army.ml",), T0, body=body, transfer=transfer).build()
    yield from messages(3000)
    yield from _mixes(mixes)


def write_messages(path: Path, raws: Iterable[bytes]) -> None:
    with path.open("wb") as file:
        for raw in raws:
            file.write(len(raw).to_bytes(4, "big") + raw)


def read_messages(path: Path) -> Iterator[bytes]:
    data, at = path.read_bytes(), 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        yield data[at + 4 : at + 4 + size]
        at += 4 + size


def dump(messages: Path, out: Path) -> None:
    """The child: this tree's findings for each message, one JSON line each."""
    from rcptguard.content import scan_message

    with out.open("w") as file:
        for raw in read_messages(messages):
            file.write(json.dumps(scan_message(raw).to_json(), sort_keys=True) + "\n")


def timing(messages: Path, rounds: int) -> None:
    """The child: the CPU seconds of one scan, per message, of the first message (the relay bench's) and of the
    others (bench_scan's), the best of `rounds` passes."""
    from rcptguard.content import scan_message

    relay, *mail = read_messages(messages)
    for raw in mail[:200]:
        scan_message(raw)
    best = [float("inf"), float("inf")]
    for _ in range(rounds):
        for n, sample in enumerate(([relay] * 2000, mail)):
            start = time.process_time()
            for raw in sample:
                scan_message(raw)
            best[n] = min(best[n], (time.process_time() - start) / len(sample))
    print(json.dumps(best))


def compare_times(work: Path, old: Path, rounds: int, against: str) -> None:
    """The two revisions timed in turn, `rounds` times each; the median of each one's best times."""
    from bench.bench_scan import messages

    write_messages(work / "timed", [_relay_bench_message(), *messages(2000)])
    times: dict[str, list[list[float]]] = {"old": [], "new": []}
    for _ in range(rounds):
        for name, src in (("old", old), ("new", ROOT / "src")):
            out = subprocess.run([sys.executable, __file__, "--time", "3", "--messages", str(work / "timed"),
                                  "--src", str(src)], check=True, capture_output=True, text=True).stdout
            times[name].append(json.loads(out))
    for n, what in enumerate(("the relay bench's 10 KB message", "bench_scan's 20 KB messages")):
        before, after = (statistics.median(t[n] for t in times[k]) * 1000 for k in ("old", "new"))
        print(f"scan_message CPU per message, {what}: {against} {before:.3f} ms, this tree {after:.3f} ms "
              f"({after / before:.2f}×, {(before - after) * 1000:.0f} µs less)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", default="main", help="The revision whose findings are the reference.")
    parser.add_argument("--mixes", type=int, default=6000, help="Generated messages besides the fixed ones.")
    parser.add_argument("--timed", type=int, default=0, metavar="ROUNDS",
                        help="Also time both revisions' scans, in turn, ROUNDS times each.")
    # the children: read the messages, import rcptguard from --src, write findings to --dump or time the scans
    parser.add_argument("--messages", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--dump", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--time", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path[:0] = [str(args.src or ROOT / "src"), str(ROOT)]
    if args.messages:
        if args.time:
            timing(args.messages, args.time)
        else:
            dump(args.messages, args.dump)
        return
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.against, "src"], check=True,
                                 capture_output=True).stdout
        (work / "src.tar").write_bytes(archive)
        with tarfile.open(work / "src.tar") as tar:
            tar.extractall(work / "tree", filter="data")
        write_messages(work / "messages", corpus(args.mixes))
        children = [subprocess.Popen([sys.executable, __file__, "--messages", str(work / "messages"),
                                      "--dump", str(work / name), "--src", str(src)])
                    for name, src in (("old", work / "tree" / "src"), ("new", ROOT / "src"))]
        if any(child.wait() for child in children):
            sys.exit("a child failed")
        old = (work / "old").read_text().splitlines()
        new = (work / "new").read_text().splitlines()
        if args.timed:
            compare_times(work, work / "tree" / "src", args.timed, args.against)
    differ = [n for n, (a, b) in enumerate(zip(old, new, strict=True)) if a != b]
    flagged = sum(1 for line in new if json.loads(line)["signals"])
    print(f"{len(new):,} messages ({flagged:,} with signals): {len(differ)} differ from {args.against}")
    for n in differ[:10]:
        print(f"  message {n}:\n    {args.against}: {old[n]}\n    this tree: {new[n]}")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
