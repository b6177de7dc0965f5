"""Mail hosts that serve many unrelated domains: an MX there says nothing about who owns a domain.

Two domains whose MX is `aspmx.l.google.com` have nothing in common but a Google Workspace subscription; a
squatter's `smallfirm.co` and the real `smallfirm.com` can both point there. So a host on this list never counts
as "the same operator" (`classify.py`), even when it is the intended domain's own MX.

Each entry is a host, or a suffix a host lies under (`mail.protection.outlook.com` covers
`smallfirm-com.mail.protection.outlook.com`), with the operator named the way a sender would know it and where
the hosts come from: the operator's own instructions to customers for pointing their domain's MX at it. Hosts
that only serve the operator's own domains are left out on purpose (`gmail-smtp-in.l.google.com` serves Gmail,
not Workspace customers; the `olc.protection.outlook.com` hosts serve Outlook.com's own domains), so that
`googlemail.com` can still be seen as Gmail's sibling. A site with a regional hoster of its own adds it with
`DnsSettings.shared_hosts`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SharedHost:
    """An operator whose MX hosts serve many tenants: the hosts (or suffixes) and where they were taken from."""

    operator: str
    suffixes: tuple[str, ...]
    source: str


def _numbered(template: str, numbers: Iterable[int | str]) -> tuple[str, ...]:
    return tuple(template.format(n) for n in numbers)


SHARED_HOSTS: tuple[SharedHost, ...] = (
    # Mailbox hosting for customers' own domains.
    SharedHost("Google Workspace",
               ("aspmx.l.google.com", *_numbered("alt{}.aspmx.l.google.com", range(1, 5)),
                *_numbered("aspmx{}.googlemail.com", range(2, 6)), "smtp.google.com"),
               "Google Workspace Admin Help, 'Google Workspace MX record values' (the five-host set and the "
               "single smtp.google.com set offered since 2023)"),
    SharedHost("Microsoft 365", ("mail.protection.outlook.com", "mx.microsoft"),
               "Microsoft Learn, 'External DNS records for Microsoft 365' (<tenant>.mail.protection.outlook.com) "
               "and 'Inbound SMTP DANE with DNSSEC' (<tenant>.<id>.mx.microsoft)"),
    SharedHost("Zoho Mail",
               tuple(f"{host}.zoho.{tld}" for tld in ("com", "eu", "in", "com.au", "jp", "com.cn", "sa", "ca")
                     for host in ("mx", "mx2", "mx3")),
               "Zoho Mail Help, 'Configure MX records' (one set per data centre region)"),
    SharedHost("GoDaddy", ("secureserver.net",),
               "GoDaddy Help, MX records for Workspace Email (mailstore1.secureserver.net, smtp.secureserver.net)"),
    SharedHost("Namecheap", ("registrar-servers.com", "privateemail.com"),
               "Namecheap Knowledgebase: Email Forwarding (eforward1-5.registrar-servers.com) and Private Email "
               "(mx1/mx2.privateemail.com)"),
    SharedHost("OVHcloud", ("ovh.net",), "OVHcloud Help Center, 'Adding an MX record' (mx0-3.mail.ovh.net)"),
    SharedHost("IONOS", ("ionos.com", "ionos.de", "ionos.co.uk", "ionos.fr", "ionos.es", "1and1.com",
                         "kundenserver.de"),
               "IONOS Help, 'MX records for IONOS mail' (mx00/mx01.ionos.<country>; older 1and1/kundenserver)"),
    SharedHost("STRATO", ("rzone.de",), "STRATO FAQ, DNS settings for STRATO mail (smtpin.rzone.de)"),
    SharedHost("Rackspace Email", ("emailsrvr.com",),
               "Rackspace Support, 'Set up DNS records' (mx1/mx2.emailsrvr.com)"),
    SharedHost("Fastmail", ("messagingengine.com",),
               "Fastmail Help, 'Set up your domain' (in1-smtp/in2-smtp.messagingengine.com)"),
    SharedHost("Proton Mail", ("protonmail.ch",), "Proton Support, 'Custom domain DNS' (mail/mailsec.protonmail.ch)"),
    SharedHost("iCloud Mail", ("mail.icloud.com",),
               "Apple Support, 'Custom email domain DNS' (mx01/mx02.mail.icloud.com)"),
    SharedHost("Yahoo Business", ("mx-biz.mail.am0.yahoodns.net",), "Yahoo Business Email help, MX set-up"),
    SharedHost("Amazon WorkMail / SES", ("amazonaws.com",),
               "AWS documentation, WorkMail and SES receiving (inbound-smtp.<region>.amazonaws.com)"),
    SharedHost("Yandex 360", ("mx.yandex.net",), "Yandex 360 for business help, MX record (mx.yandex.net)"),
    SharedHost("VK WorkMail", ("emx.mail.ru",), "VK WorkMail (Mail.ru for business) help, MX record (emx.mail.ru)"),
    SharedHost("Tucows / Hover", ("hostedemail.com",),
               "Hover Help, email DNS records (mx.hover.com.cust.hostedemail.com)"),
    SharedHost("Network Solutions", ("netsolmail.net",), "Network Solutions support, MX for hosted email"),
    SharedHost("Hostinger", ("hostinger.com",),
               "Hostinger Help, MX records for Hostinger email (mx1/mx2.hostinger.com)"),
    SharedHost("Titan Email", ("titan.email",), "Titan help, DNS records (mx1/mx2.titan.email)"),
    SharedHost("Gandi", ("mail.gandi.net",), "Gandi documentation, mail DNS records (spool/fb.mail.gandi.net)"),
    SharedHost("mailbox.org", ("mailbox.org",), "mailbox.org knowledge base, own domain (mxext1-3.mailbox.org)"),
    SharedHost("Migadu", ("migadu.com",), "Migadu documentation, DNS configuration (aspmx1/aspmx2.migadu.com)"),
    # Forwarding services: anyone can point a domain at them.
    SharedHost("Cloudflare Email Routing", ("mx.cloudflare.net",),
               "Cloudflare Docs, Email Routing (route1-3.mx.cloudflare.net)"),
    SharedHost("ImprovMX", ("improvmx.com",), "ImprovMX documentation (mx1/mx2.improvmx.com)"),
    SharedHost("Forward Email", ("forwardemail.net",), "Forward Email FAQ (mx1/mx2.forwardemail.net)"),
    # Filtering gateways in front of many organisations' mailboxes.
    SharedHost("Proofpoint", ("pphosted.com", "ppe-hosted.com"),
               "Proofpoint documentation: hosted customers (mx0a/mx0b-<id>.pphosted.com), Proofpoint Essentials "
               "(mx1-us1.ppe-hosted.com)"),
    SharedHost("Mimecast", ("mimecast.com", "mimecast.co.za", "mimecast-offshore.com"),
               "Mimecast Knowledge Base, 'MX records by region' (<region>-smtp-inbound-1.mimecast.com)"),
    SharedHost("Barracuda", ("ess.barracudanetworks.com",),
               "Barracuda Campus, Email Gateway Defense MX records (d<id>.a.ess.barracudanetworks.com)"),
    SharedHost("Cisco Secure Email", ("iphmx.com",),
               "Cisco Secure Email Cloud Gateway documentation (mx1.<id>.iphmx.com)"),
    SharedHost("Broadcom Email Security.cloud", ("messagelabs.com",),
               "Broadcom (Symantec) Email Security.cloud, MX records (cluster<n>.<region>.messagelabs.com)"),
    SharedHost("Trend Micro Email Security", ("tmes.trendmicro.com", "tmes.trendmicro.eu"),
               "Trend Micro Email Security online help, MX records (<id>.in.tmes.trendmicro.com)"),
    SharedHost("Sophos Email", ("hydra.sophos.com",),
               "Sophos Central help, MX records (mx-01-<region>.prod.hydra.sophos.com)"),
    SharedHost("Hornetsecurity", ("hornetsecurity.com",),
               "Hornetsecurity support, MX records (mx-gate<n>.hornetsecurity.com)"),
)


class SharedHosts:
    """Which operator, if any, serves many tenants from an MX host: `SharedHosts().operator("alt1.aspmx.l.google.com")`
    is "Google Workspace". A host matches an entry it equals or lies under; a look-up walks the host's labels."""

    def __init__(self, entries: Iterable[SharedHost] = SHARED_HOSTS, extra: Iterable[str] = ()) -> None:
        self._by_suffix: dict[str, str] = {}
        for entry in entries:
            for suffix in entry.suffixes:
                self._by_suffix[suffix.lower().strip(".")] = entry.operator
        for suffix in extra:
            self._by_suffix.setdefault(suffix.lower().strip("."), "a shared mail host")

    def operator(self, host: str) -> str | None:
        """The operator that serves `host` to many tenants, or None."""
        name = host.lower().rstrip(".")
        while name:
            found = self._by_suffix.get(name)
            if found is not None:
                return found
            _, _, name = name.partition(".")
        return None

    def __contains__(self, host: object) -> bool:
        return isinstance(host, str) and self.operator(host) is not None
