"""A third synthetic organisation's mail (acme-corp.com), one message a line, with injected leaks: an evaluation
set of `rcptguard eval-messages` modelled on assumptions of its own (bench/README.md). Standard library only,
deterministic for a seed.

    python bench/synth_acme.py --seed 1 --out acme.jsonl     # then:
    rcptguard eval-messages acme.jsonl --train-until 2026-05-01 --protect acme-corp.com

Further options (defaults shown): --days 180 --people 120 --per-day 250 --start 2026-01-01 --cut 2026-05-01,
and --notes.

Output: one JSON object per line, sorted by date (stable within one timestamp):
    {"date": "2026-01-05T09:13:27+00:00", "sender": "...@acme-corp.com",
     "recipients": [...], "leak": "<addr>" | null,
     "kind": "domain-slip" | "wrong-person" | "personal" | null}
With --notes an extra "note" field gives the leak sub-kind (e.g. the typo
operation, "namesake" vs "autocomplete", replace/join and address style).

Modelling choices (deliberately varied; all numbers are knobs in this file)
---------------------------------------------------------------------------
Organisation
  * Own domain acme-corp.com.  --people employees in 11 departments of
    uneven size (engineering largest, legal smallest).  Addresses are mostly
    first.last, ~22% legacy "flast"; collisions get a middle initial
    (first.m.last) or a digit.  Names come from 7 regional pools (anglo,
    germanic, romance, slavic, south-asian, east-asian, mena/africa; ~240
    distinct first and ~300 distinct last names) with Zipf-like popularity,
    so namesakes happen naturally (common first names recur) but rarely in
    full.  The workforce is international (40% anglo names).
  * Sending activity per person is log-normal (a few very busy senders).
    ~5% of staff are hired during the period, ~5% leave (they stop sending
    and stop receiving).  Everyone takes 1-3 vacation blocks.
  * Weekday/weekend/holiday volume (weekends ~10%, Easter/May bank holidays
    low), working-hours time-of-day profile with a lunch dip and a thin
    evening tail, a slight upward trend over the period.
  * Internal distribution lists (all-staff@, engineering@, sales-team@ ...)
    and internal service aliases (it-helpdesk@, travel@, payroll@ ...).
  * Automated senders: noreply@acme-corp.com notifications to staff,
    news@acme-corp.com weekly to all-staff@, billing@acme-corp.com monthly
    invoice runs to customers' accounts-payable role addresses.  No leaks
    are injected into automated mail.
  * Per-user SaaS addresses: most sales people Bcc a personal CRM drop-box
    address (…@inbound.salesorbit.io) on external mail; many employees send
    receipts to receipts@expenseflow.app; a few staff legitimately mail
    their OWN private free-mail address now and then (established habit,
    clean - a hard negative for the "personal" leak kind).

External world
  * ~2.5 partner organisations per employee (300 for the default), Zipf
    traffic (weight rank^-1.1).  Kinds: customers, suppliers, partners/
    consultancies, law & accounting firms, government, military,
    universities, freelancers/sole traders (on free-mail), and 3 affiliates
    whose domains look like our own (acme-corp.de, acme-corp.co.uk,
    acmecorp-services.com).
  * Domains are synthesised per country with local vocabulary and TLDs:
    .com .net .io .co.uk .com.au .ca .ie .de .at .ch .nl .be .se .dk .no .fi
    .fr .it .es .pt .com.br .pl .cz .in .co.in .co.jp .jp .com.cn .co.kr
    .com.sg .ae .com.tr .co.za .com.ng .co.ke; some corporate sub-domains
    (mail.x.com, eu.x.com); government as xyz.gov, mail.xyz.gov,
    xyz.ca.gov, xyz.gov.uk, xyz.bund.de, xyz.gouv.fr, xyz.gov.au,
    xyz.europa.eu, xyz.gov.in; military as one large shared mail.mil
    (first.m.last.civ/.mil/.ctr), xyz.army.mil, xyz.navy.mil, xyz.nato.int,
    xyz.mindef.nl; universities as xyz.edu, cs.xyz.edu, city.ac.uk,
    uni-city.de, tu-city.de, ...
  * Each organisation has one address style (first.last, f.last, firstl,
    first_last, first (small orgs), flast, last.first, firstlast, f_last,
    lastf, mil) and a number of contacts growing with its traffic (1 to ~45),
    with a Zipf split inside the organisation (a main contact), plus role
    addresses (info@, invoices@/ap@/accounts.payable@, support@, orders@,
    contracts@).  A few contacts at small firms use free-mail
    (gmail.com, yahoo.com, outlook.com, hotmail.com, icloud.com, proton.me,
    gmx.de, web.de, t-online.de, aol.com, orange.fr, libero.it, ...).
  * Churn: ~22% of organisations first appear during the period (some only
    after the cut), ~15% of contacts join their organisation late, ~6%
    leave; a third of leavers re-appear at another organisation (same name,
    new domain) and half are replaced by a successor.
  * Each organisation is "owned" by 1-9 employees in relevant departments
    (sales->customers, procurement->suppliers, legal->law firms/gov, ...);
    employees mostly mail their own portfolio, occasionally a new org.

Conversations
  * New messages: external (1-4 contacts of one org, often CC'ing 1-2
    colleagues, sometimes a 2nd org), internal (1..9 colleagues, biased to
    own department, or a list), project groups (fixed reply-all groups of
    colleagues + partner contacts, re-used by new threads over weeks).
  * Threads: each new message opens a thread with a random reply budget;
    internal participants continue it over the following days (reply-all
    72%, reply to one 16%, reply-all + loop someone in 12%).  ~43% of human
    messages are replies.  Only outbound/internal mail of acme-corp.com is
    logged, so every sender is an acme-corp.com address.

Leaks (label = the single wrong address, which is always a recipient)
  * Rate: ~0.1% of human messages before the cut, ~1.7% after it
    (about 1.6-1.7% of all messages after the cut).  Kinds are drawn
    uniformly; a drawn kind that does not fit the message waits for the next
    message it fits, so the three shares stay roughly equal.
  * domain-slip (only on newly composed mail, where addresses are typed):
    an external recipient's domain is mistyped - omission, transposition,
    doubled letter, adjacent QWERTY key, dropped dot/hyphen, or TLD slip
    (.com->.co/.cm/.om/.con, .mil->.ml, .nl->.ml, .gov->.gv, .de->.dr,
    .co.uk->.co.uj ...).  ~10% of slips hit a colleague's acme-corp.com
    address instead.  The slipped domain never exists in the world.
  * wrong-person (new mail only): an external person is replaced by another
    currently active person of the SAME organisation/domain: a namesake
    (same first name) when one exists, else/otherwise the alphabetically
    adjacent entry in the autocomplete list for the first 1-3 typed letters
    (sender's address book = everyone they have mailed so far, plus that
    organisation's directory).  The wrong person is often someone the
    sender has written to before.
  * personal: a colleague on the message (60%) or the sender themself gets
    a never-before-seen free-mail address spelled from their name
    (first.last, firstlast, first.last+digits, flast, last.first, firstl,
    first_last); it replaces the work address or is added next to it.
  * A leaked address is not carried into the thread's later replies.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import random
import sys
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from itertools import accumulate
from pathlib import Path
from typing import Generic, TypedDict, TypeVar

T = TypeVar("T")

OWN = "acme-corp.com"

# --------------------------------------------------------------------------
# Name pools (ASCII, roughly ordered by commonness inside each region)
# --------------------------------------------------------------------------
NAMES = {  # region: (first names, last names)
    "anglo": (
        ("james", "john", "robert", "michael", "william", "david", "richard", "joseph", "thomas", "charles",
         "christopher", "daniel", "matthew", "anthony", "mark", "paul", "steven", "andrew", "kevin", "brian",
         "george", "edward", "ryan", "jacob", "gary", "nicholas", "eric", "jonathan", "stephen", "peter", "mary",
         "patricia", "jennifer", "linda", "elizabeth", "barbara", "susan", "jessica", "sarah", "karen", "lisa",
         "nancy", "emily", "michelle", "laura", "amanda", "melissa", "rebecca", "rachel", "emma", "olivia",
         "sophie", "hannah", "chloe", "claire", "fiona", "grace", "lucy", "megan", "kate", "helen", "alice"),
        ("smith", "johnson", "williams", "brown", "jones", "miller", "davis", "wilson", "anderson", "taylor",
         "thomas", "moore", "martin", "jackson", "thompson", "white", "harris", "clark", "lewis", "robinson",
         "walker", "young", "allen", "king", "wright", "scott", "hill", "green", "adams", "baker", "nelson",
         "carter", "mitchell", "roberts", "turner", "phillips", "campbell", "parker", "evans", "edwards",
         "collins", "stewart", "morris", "murphy", "cook", "rogers", "morgan", "cooper", "peterson", "reed",
         "bailey", "bell", "kelly", "howard", "ward", "cox", "richardson", "wood", "watson", "brooks", "bennett",
         "gray", "hughes", "price", "sanders", "myers", "long", "ross", "foster", "obrien", "mcdonald", "walsh",
         "byrne", "ryan", "fletcher", "holmes", "palmer", "hayes", "gibson", "fraser"),
    ),
    "germanic": (
        ("thomas", "michael", "andreas", "stefan", "christian", "markus", "martin", "peter", "klaus", "juergen",
         "frank", "matthias", "tobias", "florian", "lukas", "jonas", "felix", "maximilian", "sebastian", "jan",
         "dirk", "sven", "lars", "erik", "henrik", "nils", "anna", "katharina", "julia", "sabine", "petra",
         "claudia", "monika", "andrea", "stefanie", "nicole", "sandra", "birgit", "laura", "lena", "lea",
         "sophie", "ingrid", "astrid", "annika", "maria", "johanna", "ruud", "pieter", "daan", "bram", "lotte",
         "sanne", "femke", "wouter", "joost", "karin"),
        ("mueller", "schmidt", "schneider", "fischer", "weber", "meyer", "wagner", "becker", "schulz", "hoffmann",
         "schaefer", "koch", "bauer", "richter", "klein", "wolf", "schroeder", "neumann", "schwarz", "zimmermann",
         "braun", "krueger", "hofmann", "hartmann", "lange", "schmitt", "werner", "krause", "meier", "lehmann",
         "huber", "gruber", "steiner", "moser", "vandijk", "devries", "jansen", "bakker", "visser", "smit",
         "meijer", "deboer", "mulder", "degroot", "bos", "vos", "peters", "hendriks", "vanleeuwen", "dekker",
         "brouwer", "dewit", "dijkstra", "andersson", "johansson", "karlsson", "nilsson", "eriksson", "larsson",
         "olsen", "hansen", "jensen", "nielsen", "pedersen", "lindqvist", "berg", "virtanen", "korhonen"),
    ),
    "romance": (
        ("jean", "pierre", "michel", "philippe", "alain", "nicolas", "francois", "laurent", "julien", "antoine",
         "marie", "nathalie", "isabelle", "sylvie", "camille", "chloe", "manon", "giuseppe", "giovanni", "marco",
         "luca", "andrea", "francesco", "alessandro", "matteo", "lorenzo", "giulia", "francesca", "chiara",
         "sara", "valentina", "jose", "antonio", "manuel", "francisco", "javier", "carlos", "miguel", "alejandro",
         "pablo", "carmen", "lucia", "elena", "laura", "ana", "isabel", "joao", "pedro", "rafael", "beatriz",
         "mariana", "gabriel", "ines", "paola", "sergio"),
        ("martin", "bernard", "dubois", "thomas", "robert", "richard", "petit", "durand", "leroy", "moreau",
         "simon", "laurent", "lefebvre", "michel", "garcia", "david", "bertrand", "roux", "vincent", "fournier",
         "morel", "girard", "andre", "mercier", "rossi", "russo", "ferrari", "esposito", "bianchi", "romano",
         "colombo", "ricci", "marino", "greco", "bruno", "gallo", "conti", "deluca", "costa", "fontana", "lopez",
         "gonzalez", "rodriguez", "fernandez", "sanchez", "perez", "martinez", "gomez", "ruiz", "hernandez",
         "diaz", "moreno", "alvarez", "munoz", "romero", "navarro", "torres", "silva", "santos", "ferreira",
         "pereira", "oliveira", "rodrigues", "almeida"),
    ),
    "slavic": (
        ("piotr", "krzysztof", "tomasz", "pawel", "marcin", "michal", "jakub", "anna", "katarzyna", "malgorzata",
         "agnieszka", "ewa", "jan", "petr", "martin", "pavel", "lucie", "tereza", "ivan", "dmitri", "olga",
         "natalia", "marek", "zuzana"),
        ("nowak", "kowalski", "wisniewski", "wojcik", "kowalczyk", "kaminski", "lewandowski", "zielinski",
         "szymanski", "wozniak", "dabrowski", "novak", "svoboda", "novotny", "dvorak", "cerny", "prochazka",
         "kucera", "horvat", "kovac", "petrov", "ivanov", "pokorny"),
    ),
    "southasian": (
        ("rahul", "amit", "rajesh", "sanjay", "vikram", "arjun", "rohan", "anil", "suresh", "priya", "anjali",
         "pooja", "neha", "sneha", "divya", "kavya", "deepak", "arun", "ravi", "sunita", "aditya", "nikhil"),
        ("sharma", "patel", "singh", "kumar", "gupta", "mehta", "shah", "reddy", "rao", "iyer", "nair", "joshi",
         "desai", "verma", "agarwal", "chopra", "malhotra", "kapoor", "banerjee", "chatterjee", "mukherjee",
         "das", "bose", "pillai", "menon"),
    ),
    "eastasian": (
        ("wei", "jun", "li", "ming", "hao", "yan", "xin", "lei", "hiroshi", "takashi", "kenji", "yuki", "haruto",
         "sakura", "yui", "aiko", "minjun", "jiwoo", "seoyeon", "jihoon", "mei", "lin"),
        ("wang", "li", "zhang", "liu", "chen", "yang", "huang", "zhao", "wu", "zhou", "xu", "sun", "ma", "zhu",
         "lin", "sato", "suzuki", "takahashi", "tanaka", "watanabe", "ito", "yamamoto", "nakamura", "kobayashi",
         "kim", "lee", "park", "choi", "jung", "kang"),
    ),
    "mena": (
        ("mohammed", "ahmed", "ali", "omar", "hassan", "youssef", "khalid", "fatima", "aisha", "leila", "yasmin",
         "mariam", "mehmet", "mustafa", "emre", "elif", "zeynep", "chinedu", "oluwaseun", "adebayo", "ngozi",
         "kwame", "thabo", "amara"),
        ("hassan", "ali", "ahmed", "khan", "hussein", "ibrahim", "mahmoud", "abdullah", "haddad", "nasser",
         "saleh", "yilmaz", "kaya", "demir", "sahin", "celik", "okafor", "adeyemi", "okonkwo", "mensah", "nkosi",
         "dlamini", "mwangi"),
    ),
}
INTERNAL_REGIONS = {"anglo": 40, "germanic": 20, "romance": 15, "southasian": 10,
                    "eastasian": 6, "slavic": 5, "mena": 4}

# --------------------------------------------------------------------------
# Departments: name, share of headcount, external share of new mail,
# relevant org kinds, list address
# --------------------------------------------------------------------------
Dept = tuple[str, float, float, tuple[str, ...], str]
DEPTS: tuple[Dept, ...] = (
    ("engineering", 0.22, 0.12, ("supplier", "partner", "university", "customer"), "engineering"),
    ("sales", 0.14, 0.60, ("customer", "gov", "mil", "partner"), "sales-team"),
    ("support", 0.10, 0.45, ("customer",), "support-team"),
    ("finance", 0.08, 0.30, ("supplier", "customer", "law", "gov", "affiliate"), "finance"),
    ("procurement", 0.05, 0.55, ("supplier", "partner"), "procurement"),
    ("legal", 0.04, 0.50, ("law", "gov", "customer", "supplier"), "legal"),
    ("marketing", 0.08, 0.35, ("partner", "customer", "freelance"), "marketing"),
    ("operations", 0.12, 0.35, ("supplier", "partner", "affiliate", "mil", "gov"), "ops"),
    ("hr", 0.05, 0.20, ("freelance", "partner", "university"), "hr"),
    ("it", 0.06, 0.20, ("supplier",), "it-team"),
    ("executive", 0.06, 0.40, ("customer", "gov", "mil", "affiliate", "law", "partner"), "leadership"),
)
INTERNAL_SERVICE = ("it-helpdesk", "travel", "payroll", "facilities", "security")
CRM_DOMAIN = "inbound.salesorbit.io"
RECEIPTS = "receipts@expenseflow.app"

ORG_KINDS = {"customer": 34, "supplier": 20, "partner": 12, "law": 5, "gov": 7,
             "mil": 4, "university": 5, "freelance": 10}
ORG_STYLES = {"first.last": 40, "f.last": 10, "firstl": 8, "first_last": 6, "first": 6,
              "flast": 14, "last.first": 4, "firstlast": 6, "f_last": 3, "lastf": 3}
AFFILIATE_DOMAINS = ("acme-corp.de", "acme-corp.co.uk", "acmecorp-services.com")

FREEMAIL_BY_REGION = {
    "anglo": {"gmail.com": 50, "yahoo.com": 12, "outlook.com": 10, "hotmail.com": 8,
              "icloud.com": 8, "aol.com": 4, "proton.me": 3, "yahoo.co.uk": 3,
              "btinternet.com": 2},
    "germanic": {"gmx.de": 25, "web.de": 20, "gmail.com": 30, "t-online.de": 10,
                 "outlook.com": 5, "proton.me": 5, "hotmail.com": 5},
    "romance": {"gmail.com": 45, "orange.fr": 10, "libero.it": 10, "yahoo.fr": 5,
                "hotmail.com": 15, "outlook.com": 10, "icloud.com": 5},
    "other": {"gmail.com": 60, "yahoo.com": 15, "outlook.com": 10, "hotmail.com": 10,
              "proton.me": 5},
}
PERSONAL_LEAK_PROVIDERS = {"gmail.com": 36, "outlook.com": 12, "hotmail.com": 10,
                           "yahoo.com": 10, "icloud.com": 10, "proton.me": 6,
                           "gmx.de": 6, "aol.com": 4, "web.de": 3}
ALL_FREEMAIL = sorted({d for t in FREEMAIL_BY_REGION.values() for d in t}
                      | set(PERSONAL_LEAK_PROVIDERS) | {"protonmail.com", "live.com", "me.com", "mail.com"})

# --------------------------------------------------------------------------
# Domain vocabularies per country
# --------------------------------------------------------------------------
Country = tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...], int]
ANG_A = ("north", "blue", "silver", "apex", "vertex", "nova", "orbit", "cedar", "harbor", "summit", "terra",
         "bright", "iron", "oak", "river", "stone", "pine", "delta", "sigma", "crest", "lumen", "helio", "aero",
         "geo", "medi", "bio", "agri", "data", "cloud", "ever", "true", "clear", "prime", "alpine", "coast",
         "red", "green", "falcon", "eagle", "lion", "atlas", "titan", "zen", "quantum", "pixel", "vector",
         "fusion", "core", "peak", "bridge", "wave", "spark", "arc", "keystone", "granite", "maple", "willow",
         "meridian", "polar", "solar", "lunar", "crystal", "golden", "swift", "bold", "united", "global",
         "pacific", "atlantic", "highland", "evergreen", "redwood", "blackstone", "whitfield", "ashford",
         "kingsley", "hamilton", "sterling", "carrington")
ANG_B = ("tech", "logistics", "systems", "solutions", "partners", "group", "consulting", "labs", "analytics",
         "capital", "energy", "foods", "pharma", "health", "bank", "insurance", "media", "works", "industries",
         "motors", "freight", "supply", "trade", "design", "software", "networks", "security", "dynamics",
         "robotics", "materials", "chemicals", "marine", "aviation", "defense", "engineering", "holdings",
         "ventures", "retail", "components", "devices", "electronics", "medical", "telecom", "digital", "cyber",
         "advisory")
COUNTRIES: dict[str, Country] = {
    # key: (name region, company tlds, prefix words, suffix words, weight)
    "us": ("anglo", ("com",) * 8 + ("net", "io", "us", "co"), ANG_A, ANG_B, 30),
    "uk": ("anglo", ("co.uk",) * 3 + ("com",), ANG_A, ANG_B, 12),
    "au": ("anglo", ("com.au",), ANG_A, ANG_B, 3),
    "ca": ("anglo", ("ca", "com"), ANG_A, ANG_B, 3),
    "ie": ("anglo", ("ie",), ANG_A, ANG_B, 2),
    "de": ("germanic", ("de",),
           ("nord", "sued", "rhein", "alpen", "elb", "main", "berg", "wald", "stahl", "licht", "kraft", "fels",
            "stern", "blau", "weiss", *ANG_A[:20]),
           ("technik", "logistik", "gruppe", "werke", "bau", "systeme", "consult", "handel", "maschinenbau",
            "elektro", "energie", "software", "anlagenbau", "verpackung", "metall"), 12),
    "at": ("germanic", ("at",),
           ("alpen", "donau", "tirol", "berg", "stein", "wien"),
           ("technik", "gruppe", "bau", "handel", "systeme"), 2),
    "ch": ("germanic", ("ch",),
           ("alpen", "helvet", "zurich", "berg", "see", "rhein"),
           ("technik", "group", "systems", "ag", "consult"), 3),
    "nl": ("germanic", ("nl",),
           ("noord", "zuid", "holland", "delta", "polder", "duin", "maas", "rijn", "oranje", "vlak", *ANG_A[:10]),
           ("groep", "techniek", "advies", "bouw", "logistiek", "installaties", "systemen", "holding", "bv"), 7),
    "be": ("germanic", ("be",),
           ("flandre", "brabant", "schelde", "ardenne"),
           ("groep", "systems", "logistics", "consult"), 2),
    "se": ("germanic", ("se",),
           ("nord", "fjord", "vik", "skog", "sten", "sol", "berg", "havs", "norr"),
           ("gruppen", "teknik", "system", "logistik", "konsult", "energi", "data"), 2),
    "dk": ("germanic", ("dk",),
           ("nord", "fjord", "vik", "skov", "sten", "sol"),
           ("gruppen", "teknik", "system", "data"), 1),
    "no": ("germanic", ("no",),
           ("nord", "fjord", "vik", "skog", "havs"),
           ("gruppen", "teknikk", "system", "energi"), 1),
    "fi": ("germanic", ("fi",), ("nord", "jarvi", "metsa", "kivi", "sol"), ("group", "tekniikka", "systems"), 1),
    "fr": ("romance", ("fr",),
           ("alpes", "azur", "lumiere", "soleil", "riviera", "atlantique", "rhone", "loire", "mont", "etoile"),
           ("conseil", "groupe", "industrie", "technologies", "logistique", "systemes", "services", "energie"), 6),
    "it": ("romance", ("it",),
           ("sole", "monte", "mare", "alpi", "stella", "luce", "verde", "arno", "vesuvio"),
           ("italia", "sistemi", "servizi", "tecnologie", "logistica", "impianti", "group", "srl"), 5),
    "es": ("romance", ("es",),
           ("sol", "mar", "sierra", "iberia", "costa", "luz", "rio", "monte", "norte", "sur"),
           ("soluciones", "sistemas", "grupo", "logistica", "ingenieria", "servicios", "tecnologia"), 5),
    "pt": ("romance", ("pt",),
           ("atlantico", "tejo", "douro", "luz", "mar"),
           ("solucoes", "sistemas", "grupo", "tecnologia", "servicos"), 1),
    "br": ("romance", ("com.br",),
           ("amazonia", "sol", "rio", "verde", "mar", "sul"),
           ("solucoes", "sistemas", "grupo", "tecnologia", "servicos"), 2),
    "pl": ("slavic", ("pl",),
           ("wisla", "tatry", "orzel", "baltyk", "mazur", "bursztyn"),
           ("polska", "systemy", "technologie", "logistyka", "grupa", "serwis"), 3),
    "cz": ("slavic", ("cz",), ("vltava", "praha", "morava", "tatra"), ("systems", "technik", "group", "servis"), 2),
    "in": ("southasian", ("in", "co.in", "com"),
           ("indus", "ganga", "surya", "lotus", "shakti", "nirmal", "vayu", "agni", "kaveri", "himalaya", "ashoka",
            "sagar"),
           ("tech", "infotech", "systems", "solutions", "software", "consultancy", "industries", "exports",
            "global", "services"), 5),
    "jp": ("eastasian", ("co.jp", "co.jp", "jp"),
           ("sakura", "fuji", "nippon", "hikari", "kaze", "yama", "tokai", "kansai"),
           ("kogyo", "shoji", "denki", "seiki", "systems", "tech"), 3),
    "cn": ("eastasian", ("com.cn", "cn"),
           ("huaxin", "longda", "tianhe", "jinlong", "hengtai", "zhongke", "xinhua"),
           ("tech", "group", "electronics", "trading", "industry"), 3),
    "kr": ("eastasian", ("co.kr",),
           ("hanbit", "daehan", "seoul", "mirae", "hana"),
           ("tech", "systems", "electronics", "industries"), 2),
    "sg": ("eastasian", ("com.sg",),
           ("lion", "merlion", "harbour", "straits", "orchid"),
           ("holdings", "tech", "logistics", "marine"), 2),
    "ae": ("mena", ("ae",),
           ("gulf", "falcon", "desert", "oasis", "emirates", "pearl"),
           ("trading", "group", "holding", "contracting", "logistics"), 2),
    "tr": ("mena", ("com.tr",),
           ("anadolu", "bosfor", "ege", "toros", "kartal"),
           ("teknoloji", "lojistik", "grup", "sanayi", "yazilim"), 2),
    "za": ("mena", ("co.za",),
           ("ubuntu", "savanna", "baobab", "zambezi", "cape"),
           ("holdings", "group", "solutions", "logistics", "engineering"), 1),
    "ng": ("mena", ("com.ng",), ("niger", "lagos", "delta", "eko"), ("holdings", "group", "solutions", "logistics"), 1),
    "ke": ("mena", ("co.ke",),
           ("kilimanjaro", "savanna", "rift", "simba"),
           ("holdings", "group", "solutions", "logistics"), 1),
}
COUNTRY_WEIGHTS = {k: v[4] for k, v in COUNTRIES.items()}
CITIES = {
    "us": ("boston", "austin", "denver", "phoenix", "seattle", "madison", "raleigh", "tucson", "omaha", "dayton"),
    "uk": ("leeds", "bristol", "york", "bath", "kent", "exeter", "durham"),
    "de": ("bonn", "mainz", "jena", "kiel", "ulm", "trier", "passau"),
    "nl": ("leiden", "delft", "utrecht", "twente", "tilburg"),
    "jp": ("osaka", "kyoto", "nagoya", "sendai"),
    "in": ("delhi", "pune", "chennai", "mandi"),
}
MULTI_SUFFIX = ("co.uk", "com.au", "co.jp", "com.br", "co.in", "com.cn", "co.kr", "com.sg",
                "com.tr", "co.za", "com.ng", "co.ke", "gov.uk", "gov.au", "gov.in", "ac.uk",
                "ac.jp", "ac.in", "gouv.fr", "nic.in")

QWERTY = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _adjacent_keys() -> dict[str, str]:
    """Each letter's neighbours on a QWERTY keyboard."""
    adj = {}
    for r, row in enumerate(QWERTY):
        for c, ch in enumerate(row):
            near = [row[j] for j in (c - 1, c + 1) if 0 <= j < len(row)]
            if r > 0:  # row above is shifted left by about half a key
                near += [QWERTY[r - 1][j] for j in (c, c + 1) if 0 <= j < len(QWERTY[r - 1])]
            if r < 2:
                near += [QWERTY[r + 1][j] for j in (c - 1, c) if 0 <= j < len(QWERTY[r + 1])]
            adj[ch] = "".join(near)
    return adj


ADJ = _adjacent_keys()

TLD_SLIPS = {
    "com": ["co", "cm", "om", "con", "comm", "cmo", "vom", "xom", "cim"],
    "de": ["d", "dee", "ed", "dr", "se", "fe"],
    "nl": ["ml", "bl", "n", "nll", "nk"],
    "mil": ["ml", "mill", "mli", "il", "mik"],
    "gov": ["gv", "gob", "go", "gpv", "ogv", "giv"],
    "org": ["ogr", "or", "orgg", "prg", "irg"],
    "net": ["ent", "nt", "ner", "bet", "met"],
    "io": ["oi", "i", "ioo", "ip"],
    "edu": ["ed", "eud", "edi", "rdu"],
    "co.uk": ["co.k", "c.uk", "co.uj", "co.ul", "co.uk.uk", "cou.k"],
    "com.au": ["co.au", "com.u", "cm.au", "com.aus"],
    "gov.uk": ["gv.uk", "gov.k", "gob.uk", "go.uk"],
    "fr": ["fe", "fd", "r", "frr"],
    "it": ["ir", "iy", "t"],
    "ch": ["cj", "xh", "c"],
    "int": ["in", "itn", "inr"],
    "eu": ["ue", "e", "ru"],
}
LEAK_KINDS = ("domain-slip", "wrong-person", "personal")
HOUR_WEIGHTS = (0.2, 0.1, 0.1, 0.1, 0.2, 0.5, 1.5, 4, 8, 10, 10, 9, 6, 8, 9, 9, 8, 6, 3, 2, 1.5, 1.2, 0.8, 0.4)

Row = tuple[str, str, list[str], str | None, str | None, str | None]  # date, sender, recipients, leak, kind, note


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
class Picker(Generic[T]):
    """Weighted choice with precomputed cumulative weights."""

    __slots__ = ("cum", "items", "total")

    def __init__(self, items: Iterable[T], weights: Iterable[float]) -> None:
        self.items = list(items)
        self.cum = list(accumulate(weights))
        self.total = self.cum[-1] if self.cum else 0.0

    def pick(self, rng: random.Random) -> T:
        return self.items[bisect_right(self.cum, rng.random() * self.total)
                          if self.total > 0 else 0]


def wpick(rng: random.Random, d: Mapping[str, float]) -> str:
    """Weighted pick from a dict {item: weight}."""
    keys = list(d)
    return rng.choices(keys, weights=[d[k] for k in keys])[0]


def poisson(rng: random.Random, lam: float) -> int:
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p < limit:
            return k
        k += 1


def sample_weighted(rng: random.Random, items: Iterable[T], weights: Iterable[float], k: int) -> list[T]:
    """k distinct items, weighted, without replacement."""
    pool, pool_weights = list(items), list(weights)
    out: list[T] = []
    while pool and len(out) < k:
        i = rng.choices(range(len(pool)), weights=pool_weights)[0]
        out.append(pool.pop(i))
        pool_weights.pop(i)
    return out


def split_domain(domain: str) -> tuple[list[str], str, str]:
    """-> (subdomain labels, registrable label, public suffix)."""
    for suf in sorted(MULTI_SUFFIX, key=len, reverse=True):
        if domain.endswith("." + suf):
            head = domain[: -len(suf) - 1].split(".")
            return head[:-1], head[-1], suf
    parts = domain.split(".")
    return parts[:-2], parts[-2], parts[-1]


def valid_domain(d: str) -> bool:
    if ".." in d or d.startswith(".") or d.endswith("."):
        return False
    for lab in d.split("."):
        if not lab or lab[0] == "-" or lab[-1] == "-":
            return False
        if any(ch not in "abcdefghijklmnopqrstuvwxyz0123456789-" for ch in lab):
            return False
    return "." in d


def char_typo(rng: random.Random, s: str, op: str | None = None) -> tuple[str | None, str]:
    """Apply one keyboard typo to string s; returns (new, op) or (None, op)."""
    op = op or rng.choices(["omit", "transpose", "double", "adjacent"],
                           weights=[26, 24, 22, 28])[0]
    n = len(s)
    if n < 2:
        return None, op
    # humans rarely get the very first character wrong
    lo = 1 if rng.random() < 0.8 else 0
    if op == "omit":
        if n < 3:
            return None, op
        i = rng.randrange(lo, n)
        return s[:i] + s[i + 1:], op
    if op == "transpose":
        cand = [i for i in range(lo, n - 1) if s[i] != s[i + 1]]
        if not cand:
            return None, op
        i = rng.choice(cand)
        return s[:i] + s[i + 1] + s[i] + s[i + 2:], op
    if op == "double":
        cand = [i for i in range(lo, n) if s[i].isalpha()]
        if not cand:
            return None, op
        i = rng.choice(cand)
        return s[:i] + s[i] + s[i:], op
    cand = [i for i in range(lo, n) if s[i] in ADJ]
    if not cand:
        return None, op
    i = rng.choice(cand)
    return s[:i] + rng.choice(ADJ[s[i]]) + s[i + 1:], op


def typo_domain(rng: random.Random, domain: str, world_domains: set[str]) -> tuple[str | None, str | None]:
    subs, label, suf = split_domain(domain)
    for _ in range(40):
        r = rng.random()
        if r < 0.32:
            op = "tld"
            if suf in TLD_SLIPS and rng.random() < 0.8:
                new_suf = rng.choice(TLD_SLIPS[suf])
            else:
                last = suf.split(".")[-1]
                t, _o = char_typo(rng, last)
                if not t:
                    continue
                new_suf = ".".join([*suf.split(".")[:-1], t])
            new = ".".join([*subs, label, new_suf])
        elif r < 0.38 and ("-" in label or subs):
            op = "join"  # dropped hyphen or dot
            if "-" in label and (not subs or rng.random() < 0.6):
                i = rng.choice([i for i, ch in enumerate(label) if ch == "-"])
                new = ".".join([*subs, label[:i] + label[i + 1:], suf])
            else:
                new = ".".join([*subs[:-1], subs[-1] + label, suf])
        # else a typo in the registrable label (mostly) or a sub-domain label
        elif subs and rng.random() < 0.25:
            j = rng.randrange(len(subs))
            t, op = char_typo(rng, subs[j])
            if not t:
                continue
            new = ".".join([*subs[:j], t, *subs[j + 1:], label, suf])
        else:
            t, op = char_typo(rng, label)
            if not t:
                continue
            new = ".".join([*subs, t, suf])
        if new != domain and valid_domain(new) and new not in world_domains:
            return new, op
    return None, None


def make_local(rng: random.Random, style: str, first: str, last: str) -> str:
    if style == "first.last":
        return f"{first}.{last}"
    if style == "f.last":
        return f"{first[0]}.{last}"
    if style == "firstl":
        return f"{first}{last[0]}"
    if style == "first_last":
        return f"{first}_{last}"
    if style == "first":
        return first
    if style == "flast":
        return f"{first[0]}{last}"
    if style == "last.first":
        return f"{last}.{first}"
    if style == "firstlast":
        return first + last
    if style == "f_last":
        return f"{first[0]}_{last}"
    if style == "lastf":
        return last + first[0]
    if style == "mil":
        sfx = rng.choices(["civ", "mil", "ctr"], weights=[50, 35, 15])[0]
        return f"{first}.{rng.choice('abcdefghjklmnprstw')}.{last}.{sfx}"
    raise ValueError(style)


def unique_local(rng: random.Random, style: str, first: str, last: str, domain: str,
                 taken: Mapping[str, object]) -> str:
    base = make_local(rng, style, first, last)
    if f"{base}@{domain}" not in taken:
        return base
    if style in ("first.last", "last.first", "first_last"):
        for _ in range(5):
            m = rng.choice("abcdefghjklmnprstw")
            cand = {"first.last": f"{first}.{m}.{last}", "last.first": f"{last}.{first}.{m}",
                    "first_last": f"{first}_{m}_{last}"}[style]
            if f"{cand}@{domain}" not in taken:
                return cand
    if style == "first":
        cand = f"{first}{last[0]}"
        if f"{cand}@{domain}" not in taken:
            return cand
    if style == "mil":
        for _ in range(10):
            cand = make_local(rng, style, first, last)
            if f"{cand}@{domain}" not in taken:
                return cand
    for k in range(2, 99):
        cand = f"{base}{k}"
        if f"{cand}@{domain}" not in taken:
            return cand
    raise RuntimeError("address space exhausted")


def freemail_local(rng: random.Random, first: str, last: str, style: str | None = None) -> tuple[str, str]:
    style = style or rng.choices(
        ["first.last", "firstlast", "first.last+digits", "flast", "last.first",
         "firstl", "first_last"], weights=[22, 14, 24, 12, 8, 10, 10])[0]
    digits = str(rng.choice([rng.randint(60, 99), rng.randint(1, 30), rng.randint(100, 9999)]))
    if style == "first.last+digits":
        return f"{first}.{last}{digits}", style
    if style == "flast":
        loc = f"{first[0]}{last}"
    elif style == "firstl":
        loc = f"{first}{last[0]}"
    else:
        loc = make_local(rng, style, first, last)
    if rng.random() < 0.35:  # free-mail names are usually taken - add digits
        loc += digits
    return loc, style


def stamp(date: dt.date, secs: int) -> str:
    """ISO 8601 time of `secs` seconds into the day `date`, in UTC."""
    return f"{date.isoformat()}T{secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}+00:00"


# --------------------------------------------------------------------------
# entities
# --------------------------------------------------------------------------
class Group(TypedDict):
    """A project group: colleagues (and partner contacts) written to together for a while."""

    members: list[Emp]
    ext: list[Contact]
    start: int
    end: int
    weight: float


class Thread(TypedDict):
    """A conversation that its internal participants continue."""

    parts: list[str]
    orig: str
    last_sender: str
    last: int
    budget: int
    ext: bool


class Emp:
    def __init__(self, addr: str, first: str, last: str, region: str, dept: str) -> None:
        self.addr, self.first, self.last, self.region, self.dept = addr, first, last, region, dept
        self.start, self.end = -10 ** 6, 10 ** 6
        self.vacations: list[tuple[int, int]] = []
        self.weight = 1.0
        self.ext_share = 0.2
        self.colleagues: tuple[list[Emp], list[float]] = ([], [])
        self.portfolio: list[tuple[Org, float]] = []
        self.crm: str | None = None
        self.personal: str | None = None  # legit own private address (habit)
        self.uses_receipts = False
        self.groups: list[Group] = []
        self.threads: list[Thread] = []
        self.book: dict[str, int] = {}  # addr -> count, in order of first use

    def employed(self, day: int) -> bool:
        return self.start <= day < self.end

    def at_work(self, day: int) -> bool:
        if not self.employed(day):
            return False
        return all(not a <= day < b for a, b in self.vacations)


class Contact:
    """An external person, or a role address (info@, ap@ ...) with no name."""

    __slots__ = ("addr", "end", "first", "last", "org", "role", "start", "weight")

    def __init__(self, addr: str, first: str, last: str, org: Org, start: int, end: int, weight: float,
                 role: bool = False) -> None:
        self.addr, self.first, self.last, self.org = addr, first, last, org
        self.start, self.end, self.weight, self.role = start, end, weight, role

    def active(self, day: int) -> bool:
        return self.start <= day < self.end


class Org:
    def __init__(self, idx: int, kind: str, country: str | None, region: str | None, domain: str | None,
                 style: str) -> None:
        self.idx, self.kind, self.country, self.region = idx, kind, country, region
        self.domain, self.style = domain, style
        self.weight = 1.0
        self.start = -10 ** 6
        self.contacts: list[Contact] = []
        self.owners: list[Emp] = []

    def active_people(self, day: int) -> list[Contact]:
        return [c for c in self.contacts if not c.role and c.active(day)]


# --------------------------------------------------------------------------
# generator
# --------------------------------------------------------------------------
class World:
    emps: list[Emp]
    by_dept: dict[str, list[Emp]]
    emp_by_addr: dict[str, Emp]
    lists: list[str]
    services: list[str]
    orgs: list[Org]
    org_picker: Picker[Org]
    groups: list[Group]

    def __init__(self, seed: int, days: int, people: int, per_day: int, start: dt.date, cut: dt.date) -> None:
        self.rng = random.Random(seed)
        self.days, self.people, self.per_day = days, people, per_day
        self.start_date, self.cut_day = start, (cut - start).days
        self.taken: dict[str, Emp | Contact | str] = {}  # addr -> entity (Emp / Contact / str kind)
        self.domains = {OWN}
        self.domains.update(ALL_FREEMAIL)
        self.domains.update({CRM_DOMAIN, "expenseflow.app"})
        self.name_pickers: dict[str, tuple[Picker[str], Picker[str]]] = {}
        for reg, (firsts, lasts) in NAMES.items():
            self.name_pickers[reg] = (Picker(firsts, [1 / (i + 1) ** 0.75 for i in range(len(firsts))]),
                                      Picker(lasts, [1 / (i + 1) ** 0.6 for i in range(len(lasts))]))
        self.build_people()
        self.build_orgs()
        self.assign_portfolios()
        self.build_groups()
        self.threads: list[Thread] = []

    # ---- names -----------------------------------------------------------
    def name(self, region: str) -> tuple[str, str]:
        fp, lp = self.name_pickers[region]
        return fp.pick(self.rng), lp.pick(self.rng)

    def region_for(self, home: str | None) -> str:
        if home is None or self.rng.random() < 0.25:
            return wpick(self.rng, INTERNAL_REGIONS)
        return home

    # ---- employees -------------------------------------------------------
    def build_people(self) -> None:
        self.hire_staff()
        self.plan_staff_calendar()
        self.pick_colleague_circles()
        self.add_internal_addresses()
        self.emp_by_addr = {e.addr: e for e in self.emps}

    def dept_counts(self) -> list[int]:
        n = self.people
        shares = [d[1] for d in DEPTS]
        counts = [max(1 if n >= len(DEPTS) else 0, int(n * s)) for s in shares]
        i = 0
        while sum(counts) < n:
            counts[i % len(DEPTS)] += 1
            i += 1
        while sum(counts) > n:
            j = counts.index(max(counts))
            counts[j] -= 1
        return counts

    def hire_staff(self) -> None:
        rng = self.rng
        self.emps, self.by_dept = [], {}
        for (dname, _s, ext, _k, _l), c in zip(DEPTS, self.dept_counts(), strict=True):
            for _ in range(c):
                reg = wpick(rng, INTERNAL_REGIONS)
                first, last = self.name(reg)
                style = "flast" if rng.random() < 0.22 else "first.last"
                loc = unique_local(rng, style, first, last, OWN, self.taken)
                e = Emp(f"{loc}@{OWN}", first, last, reg, dname)
                self.taken[e.addr] = e
                e.weight = rng.lognormvariate(0, 0.75) * (1.25 if dname in ("sales", "executive") else 1.0)
                e.ext_share = min(0.9, max(0.02, ext * rng.lognormvariate(0, 0.35)))
                self.emps.append(e)
                self.by_dept.setdefault(dname, []).append(e)

    def plan_staff_calendar(self) -> None:
        """Hires and leavers during the period, and everyone's vacations."""
        rng, n = self.rng, self.people
        order = list(self.emps)
        rng.shuffle(order)
        n_hire = max(1, round(n * 0.05))
        n_leave = max(1, round(n * 0.05))
        for e in order[:n_hire]:
            e.start = rng.randint(10, self.days - 20)
        for e in order[n_hire:n_hire + n_leave]:
            e.end = rng.randint(20, self.days - 5)
        for e in self.emps:
            for _ in range(rng.choice([1, 1, 2, 2, 3])):
                a = rng.randint(0, self.days - 1)
                e.vacations.append((a, a + rng.randint(3, 12)))

    def pick_colleague_circles(self) -> None:
        """Colleagues: the whole department and a few cross-department contacts."""
        rng = self.rng
        for e in self.emps:
            cand: list[Emp] = []
            w: list[float] = []
            for o in self.by_dept[e.dept]:
                if o is not e:
                    cand.append(o)
                    w.append(rng.lognormvariate(0, 0.9) * 3)
            others = [o for o in self.emps if o.dept != e.dept]
            for o in rng.sample(others, min(len(others), rng.randint(4, 9))):
                cand.append(o)
                w.append(rng.lognormvariate(0, 0.9) * (2 if o.dept == "executive" else 1))
            e.colleagues = (cand, w)

    def add_internal_addresses(self) -> None:
        """Lists, service aliases, CRM drop-boxes, and the few own private addresses mailed by habit."""
        rng, n = self.rng, self.people
        self.lists = [f"{d[4]}@{OWN}" for d in DEPTS] + [f"all-staff@{OWN}", f"managers@{OWN}"]
        self.services = [f"{s}@{OWN}" for s in INTERNAL_SERVICE]
        for a in self.lists + self.services:
            self.taken[a] = "list"
        for e in self.emps:
            if (e.dept == "sales" and rng.random() < 0.75) or (e.dept == "executive" and rng.random() < 0.3):
                e.crm = f"{e.addr.split('@')[0].replace('.', '-')}-{rng.randint(10000, 99999)}@{CRM_DOMAIN}"
                self.taken[e.crm] = "service"
            e.uses_receipts = rng.random() < 0.35
        self.taken[RECEIPTS] = "service"
        habit = rng.sample(self.emps, max(1, round(n * 0.03)))
        for e in habit:
            reg_fm = FREEMAIL_BY_REGION.get(e.region, FREEMAIL_BY_REGION["other"])
            for _ in range(20):
                loc, _st = freemail_local(rng, e.first, e.last)
                a = f"{loc}@{wpick(rng, reg_fm)}"
                if a not in self.taken:
                    break
            e.personal = a
            self.taken[a] = "own-personal"

    # ---- organisations ---------------------------------------------------
    def acronym(self) -> str:
        rng = self.rng
        while True:
            k = rng.choice([3, 3, 4, 4, 5])
            s = "".join(rng.choice("abcdefghiklmnoprstuvw") for _ in range(k))
            if any(v in s for v in "aeiou") or rng.random() < 0.5:
                return s

    def company_domain(self, country: str) -> tuple[str, str]:
        rng = self.rng
        reg, tlds, pre, suf, _w = COUNTRIES[country]
        style = rng.random()
        a = rng.choice(pre)
        b = rng.choice(suf)
        if style < 0.45:
            lab = a + b
        elif style < 0.8:
            lab = f"{a}-{b}"
        elif style < 0.9:
            lab = a + rng.choice(pre)
        else:
            lab = self.name(reg)[1] + ("-" if rng.random() < 0.5 else "") + b
        tld = rng.choice(tlds)
        if country != "us" and rng.random() < 0.08:
            tld = "com"
        d = f"{lab}.{tld}"
        r = rng.random()
        if r < 0.04:
            d = "mail." + d
        elif r < 0.07:
            d = rng.choice(["eu", "corp", "de", "uk", "us", "global"]) + "." + d
        return d, reg

    def law_domain(self, country: str) -> tuple[str, str]:
        rng = self.rng
        reg = COUNTRIES[country][0]
        l1, l2 = self.name(reg)[1], self.name(reg)[1]
        tld = {"uk": "co.uk", "de": "de", "nl": "nl", "fr": "fr"}.get(country, "com")
        lab = rng.choice([f"{l1}{l2}", f"{l1}-{l2}", f"{l1}law", f"{l1}-legal", f"{l1}llp",
                          f"{l1}-partners", f"{l1}{l2}-cpa"])
        return f"{lab}.{tld}", reg

    def gov_domain(self) -> tuple[str, str | None, str]:
        rng = self.rng
        c = rng.choices(["us", "uk", "de", "nl", "fr", "au", "eu", "in"], weights=[40, 15, 10, 8, 6, 6, 10, 5])[0]
        a = self.acronym()
        d = {"us": lambda: rng.choice([f"{a}.gov", f"{a}.gov", f"mail.{a}.gov",
                                       f"{a}.{rng.choice(['ca', 'tx', 'ny', 'va', 'md'])}.gov"]),
             "uk": lambda: f"{a}.gov.uk",
             "de": lambda: rng.choice([f"{a}.bund.de", f"{a}.bayern.de", f"{a}.nrw.de"]),
             "nl": lambda: rng.choice([f"min{a}.nl", f"{a}.rijksoverheid.nl"]),
             "fr": lambda: f"{a}.gouv.fr",
             "au": lambda: f"{a}.gov.au",
             "eu": lambda: f"{a}.europa.eu",
             "in": lambda: rng.choice([f"{a}.gov.in", f"{a}.nic.in"])}[c]()
        reg = {"us": "anglo", "uk": "anglo", "au": "anglo", "de": "germanic", "nl": "germanic",
               "fr": "romance", "in": "southasian", "eu": None}[c]
        return d, reg, c

    def mil_domain(self, have_mailmil: bool) -> tuple[str, str | None, str]:
        rng = self.rng
        if not have_mailmil:
            return "mail.mil", "anglo", "us"
        a = self.acronym()
        c = rng.choices(["us", "nato", "nl", "uk"], weights=[70, 12, 8, 10])[0]
        d = {"us": lambda: rng.choice([f"{a}.army.mil", f"{a}.navy.mil", f"{a}.mil", f"{a}.af.mil"]),
             "nato": lambda: f"{a}.nato.int",
             "nl": lambda: f"{a}.mindef.nl",
             "uk": lambda: f"{a}.mod.gov.uk"}[c]()
        return d, {"us": "anglo", "uk": "anglo", "nl": "germanic", "nato": None}[c], c

    def uni_domain(self) -> tuple[str, str, str]:
        rng = self.rng
        c = rng.choices(["us", "uk", "de", "nl", "jp", "in"], weights=[40, 20, 15, 10, 8, 7])[0]
        city, a = rng.choice(CITIES[c]), self.acronym()
        d = {"us": lambda: rng.choice([f"{a}.edu", f"{city}.edu", f"cs.{a}.edu", f"mail.{city}.edu"]),
             "uk": lambda: rng.choice([f"{city}.ac.uk", f"{a}.ac.uk"]),
             "de": lambda: rng.choice([f"uni-{city}.de", f"tu-{city}.de", f"inf.uni-{city}.de"]),
             "nl": lambda: rng.choice([f"tu{city}.nl", f"{a}.nl"]),
             "jp": lambda: f"{city}-u.ac.jp",
             "in": lambda: f"iit{city}.ac.in"}[c]()
        return d, {"us": "anglo", "uk": "anglo", "de": "germanic", "nl": "germanic",
                   "jp": "eastasian", "in": "southasian"}[c], c

    def new_contact(self, org: Org, start: int, end: int, weight: float,
                    name: tuple[str, str] | None = None) -> Contact:
        rng = self.rng
        first, last = name or self.name(self.region_for(org.region))
        if org.domain is None or (org.kind not in ("gov", "mil", "university", "affiliate")
                                  and len(org.contacts) < 4 and rng.random() < 0.03):
            fm = FREEMAIL_BY_REGION.get(org.region or "other", FREEMAIL_BY_REGION["other"])
            for _ in range(50):
                loc, _s = freemail_local(rng, first, last)
                a = f"{loc}@{wpick(rng, fm)}"
                if a not in self.taken:
                    break
        else:
            loc = unique_local(rng, org.style, first, last, org.domain, self.taken)
            a = f"{loc}@{org.domain}"
        c = Contact(a, first, last, org, start, end, weight)
        self.taken[a] = c
        org.contacts.append(c)
        return c

    def build_orgs(self) -> None:
        rng = self.rng
        kinds, ranks = self.org_kinds_and_ranks()
        self.orgs = []
        have_mailmil = False
        aff_domains = list(AFFILIATE_DOMAINS)
        for i, (kind, rank) in enumerate(zip(kinds, ranks, strict=True)):
            dom, region, country = self.org_domain(kind, have_mailmil, aff_domains)
            weight_rank = rank
            if dom == "mail.mil":
                have_mailmil = True
                weight_rank = min(rank, rng.randint(1, 6))
            if dom:
                self.domains.add(dom)
            o = Org(i, kind, country, region, dom, self.org_style(kind, dom))
            o.weight = weight_rank ** -1.1 * {"freelance": 0.35, "affiliate": 3.0, "mil": 1.3}.get(kind, 1.0)
            if kind == "affiliate":
                o.weight = max(o.weight, 0.05)
            if rng.random() < 0.22 and kind != "affiliate":
                o.start = rng.randint(5, self.days - 5)
            self.orgs.append(o)
        wmax = max(o.weight for o in self.orgs)
        for o in self.orgs:
            self.staff_org(o, wmax)
        self.churn_contacts()
        self.org_picker = Picker(self.orgs, [o.weight for o in self.orgs])

    def org_kinds_and_ranks(self) -> tuple[list[str], list[int]]:
        """The organisations' kinds (three affiliates last) and their traffic ranks, shuffled."""
        rng = self.rng
        n = max(40, round(self.people * 2.5))
        kinds: list[str] = []
        for k, w in ORG_KINDS.items():
            kinds += [k] * max(1, round(n * w / sum(ORG_KINDS.values())))
        rng.shuffle(kinds)
        kinds = kinds[:n - 3] + ["affiliate"] * 3
        ranks = list(range(1, len(kinds) + 1))
        rng.shuffle(ranks)
        return kinds, ranks

    def org_domain(self, kind: str, have_mailmil: bool,
                   aff_domains: list[str]) -> tuple[str | None, str | None, str | None]:
        """-> (domain, name region, country) of a new organisation; a domain already in the world is drawn again."""
        for _ in range(100):
            dom, region, country = self.draw_org_domain(kind, have_mailmil, aff_domains)
            if dom is None or dom not in self.domains:
                break
        return dom, region, country

    def draw_org_domain(self, kind: str, have_mailmil: bool,
                        aff_domains: list[str]) -> tuple[str | None, str | None, str | None]:
        rng = self.rng
        if kind in ("customer", "supplier", "partner"):
            country = wpick(rng, COUNTRY_WEIGHTS)
            dom, region = self.company_domain(country)
            return dom, region, country
        if kind == "law":
            country = rng.choice(["us", "us", "uk", "uk", "de", "nl", "fr"])
            dom, region = self.law_domain(country)
            return dom, region, country
        if kind == "gov":
            return self.gov_domain()
        if kind == "mil":
            return self.mil_domain(have_mailmil)
        if kind == "university":
            return self.uni_domain()
        if kind == "affiliate":
            dom = aff_domains.pop(0)
            region, country = ("germanic", "de") if dom.endswith(".de") else ("anglo", "uk")
            return dom, region, country
        return None, wpick(rng, INTERNAL_REGIONS), None  # freelance

    def org_style(self, kind: str, dom: str | None) -> str:
        """The organisation's address style."""
        if kind in ("gov", "university"):
            return self.rng.choice(["first.last", "first.last", "f.last", "flast", "firstlast"])
        if kind == "mil":
            return "mil" if dom == "mail.mil" else "first.last"
        if kind == "affiliate":
            return "first.last"
        return wpick(self.rng, ORG_STYLES)

    def staff_org(self, o: Org, wmax: float) -> None:
        """The organisation's people (more with more traffic, Zipf-weighted) and role addresses."""
        rng = self.rng
        if o.kind == "freelance":
            k = 1
        else:
            rel = (o.weight / wmax) ** 0.5
            k = 1 + poisson(rng, 1.3 + 28 * rel)
            if o.domain == "mail.mil":
                k = max(k, 30)
            if o.style == "first":
                k = min(k, 5)
            k = min(k, 45)
        for j in range(k):
            start = o.start if rng.random() < 0.85 else rng.randint(max(0, o.start), self.days - 1)
            self.new_contact(o, start, 10 ** 6, 1 / (j + 1) ** 1.2 * rng.uniform(0.6, 1.4))
        if o.domain and o.kind != "freelance":
            self.add_role_addresses(o, o.domain)

    def add_role_addresses(self, o: Org, domain: str) -> None:
        rng = self.rng
        roles = {"info": 0.45,
                 rng.choice(["invoices", "ap", "accounts.payable"]): 0.35 + 0.4 * (o.kind == "customer"),
                 "support": 0.3 * (o.kind == "supplier") + 0.05,
                 "orders": 0.2 * (o.kind == "supplier"),
                 "contracts": 0.15}
        for r, p in roles.items():
            if rng.random() < p:
                a = f"{r}@{domain}"
                if a in self.taken:
                    continue
                c = Contact(a, "", "", o, o.start, 10 ** 6, 0.08, role=True)
                self.taken[a] = c
                o.contacts.append(c)

    def churn_contacts(self) -> None:
        """Leavers, movers (same name at another organisation) and successors."""
        rng = self.rng
        persons = [c for o in self.orgs for c in o.contacts if not c.role]
        big = [o for o in self.orgs if o.kind not in ("freelance", "affiliate")]
        bigp = Picker(big, [o.weight for o in big])
        for c in persons:
            if rng.random() < 0.06:
                c.end = rng.randint(max(c.start, 0) + 10, self.days + 30)
                if c.end >= self.days:
                    continue
                r = rng.random()
                if r < 0.35:
                    o2 = bigp.pick(rng)
                    if o2 is not c.org:
                        self.new_contact(o2, c.end + rng.randint(0, 20), 10 ** 6,
                                         rng.uniform(0.2, 1.0), name=(c.first, c.last))
                if rng.random() < 0.5 and c.org.kind != "freelance":
                    self.new_contact(c.org, c.end + rng.randint(0, 15), 10 ** 6, c.weight)

    def assign_portfolios(self) -> None:
        rng = self.rng
        wmax = max(o.weight for o in self.orgs)
        for o in self.orgs:
            depts = [d[0] for d in DEPTS if o.kind in d[3]]
            cand = [e for d in depts for e in self.by_dept.get(d, [])]
            if not cand:
                cand = self.emps
            k = 1 + round(8 * (o.weight / wmax) ** 0.5 * rng.random()) + (rng.random() < 0.3)
            o.owners = sample_weighted(rng, cand, [e.ext_share * e.weight for e in cand], k)
            for e in o.owners:
                e.portfolio.append((o, o.weight * rng.lognormvariate(0, 0.6)))
        for e in self.emps:
            if not e.portfolio:
                kinds = next(d[3] for d in DEPTS if d[0] == e.dept)
                cand_orgs = [o for o in self.orgs if o.kind in kinds]
                for o in sample_weighted(rng, cand_orgs, [o.weight for o in cand_orgs], 2):
                    e.portfolio.append((o, o.weight))
                    o.owners.append(e)

    def build_groups(self) -> None:
        rng = self.rng
        self.groups = []
        for _ in range(round(self.people * 0.6)):
            owner = rng.choice(self.emps)
            orgs = [o for o, _w in owner.portfolio if o.kind != "freelance"]
            if not orgs:
                continue
            o = rng.choices(orgs, weights=[w for oo, w in owner.portfolio if oo.kind != "freelance"])[0]
            cand, cw = owner.colleagues
            members = [owner, *sample_weighted(rng, cand, cw, rng.choice([0, 1, 1, 2, 3]))]
            ppl = [c for c in o.contacts if not c.role]
            ext = sample_weighted(rng, ppl, [c.weight for c in ppl], rng.randint(2, 5))
            if rng.random() < 0.25:
                o2 = self.org_picker.pick(rng)
                p2 = [c for c in o2.contacts if not c.role]
                ext += sample_weighted(rng, p2, [c.weight for c in p2], rng.randint(1, 2))
            self.add_group(members, ext)
        for _ in range(round(self.people * 0.4)):
            owner = rng.choice(self.emps)
            cand, cw = owner.colleagues
            members = [owner, *sample_weighted(rng, cand, cw, rng.randint(2, 7))]
            self.add_group(members, [])

    def add_group(self, members: list[Emp], ext: list[Contact]) -> None:
        rng = self.rng
        if rng.random() < 0.6:
            a, b = -10 ** 6, 10 ** 6
        else:
            a = rng.randint(0, self.days - 10)
            b = a + rng.randint(20, 90)
        g: Group = {"members": members, "ext": ext, "start": a, "end": b,
                    "weight": rng.lognormvariate(0, 0.6)}
        self.groups.append(g)
        for m in members:
            m.groups.append(g)

    # ---- message helpers -------------------------------------------------
    def rcpt_active(self, addr: str, day: int) -> bool:
        ent = self.taken.get(addr)
        if isinstance(ent, Emp):
            return ent.employed(day)
        if isinstance(ent, Contact):
            return ent.active(day)
        return True

    def is_active_person(self, addr: str, day: int) -> bool:
        """Whether `addr` is an external person (not a role address) active on `day`."""
        ent = self.taken.get(addr)
        return isinstance(ent, Contact) and not ent.role and ent.active(day)

    def pick_colleagues(self, e: Emp, day: int, k: int) -> list[Emp]:
        cand, w = e.colleagues
        ok = [(c, x) for c, x in zip(cand, w, strict=True) if c.employed(day)]
        if not ok:
            return []
        return sample_weighted(self.rng, [c for c, _ in ok], [x for _, x in ok], k)

    def pick_org(self, e: Emp, day: int) -> Org | None:
        rng = self.rng
        if rng.random() < 0.05 or not e.portfolio:
            kinds = next(d[3] for d in DEPTS if d[0] == e.dept)
            for _ in range(20):
                o = self.org_picker.pick(rng)
                if o.kind in kinds and o.start <= day:
                    return o
        act = [(o, w) for o, w in e.portfolio if o.start <= day]
        if not act:
            return None
        return rng.choices([o for o, _ in act], weights=[w for _, w in act])[0]

    def new_thread(self, sender: Emp, recips: list[str], day: int, budget_mean: float, ext: bool) -> Thread:
        rng = self.rng
        budget = 0 if rng.random() < 0.45 else 1 + int(rng.expovariate(1 / budget_mean))
        parts = [sender.addr] + [r for r in recips if r not in self.taken or
                                  self.taken[r] not in ("service", "own-personal")]
        t: Thread = {"parts": parts, "orig": sender.addr, "last_sender": sender.addr,
                     "last": day, "budget": budget, "ext": ext}
        if budget > 0:
            for a in parts:
                e = self.emp_by_addr.get(a)
                if e is not None:
                    e.threads.append(t)
        return t

    def pick_thread(self, e: Emp, day: int) -> Thread | None:
        live = [t for t in e.threads if t["budget"] > 0 and day - t["last"] <= 14]
        e.threads = live
        if not live:
            return None
        w = [(2.0 if t["last_sender"] != e.addr else 0.4) / (1 + day - t["last"]) ** 1.5 for t in live]
        return self.rng.choices(live, weights=w)[0]

    def reply(self, e: Emp, t: Thread, day: int) -> list[str] | None:
        rng = self.rng
        parts = [p for p in t["parts"] if p != e.addr and self.rcpt_active(p, day)]
        if not parts:
            t["budget"] = 0
            return None
        r = rng.random()
        if r < 0.72:
            rec = parts
            ls = t["last_sender"]
            if ls in rec:
                rec = [ls] + [p for p in rec if p != ls]
        elif r < 0.88:
            tgt = t["last_sender"] if t["last_sender"] in parts else (t["orig"] if t["orig"] in parts else parts[0])
            rec = [tgt]
        else:
            rec = list(parts)
            add = self.loop_in(e, t, parts, day)
            if add:
                rec.append(add)
                t["parts"].append(add)
                ae = self.emp_by_addr.get(add)
                if ae is not None:
                    ae.threads.append(t)
        t["last_sender"], t["last"] = e.addr, day
        t["budget"] -= 1
        return rec

    def loop_in(self, e: Emp, t: Thread, parts: list[str], day: int) -> str | None:
        """Someone new to loop into a reply-all: a contact of the first external organisation, or a colleague."""
        rng = self.rng
        add = None
        exts = [c for c in (self.taken.get(p) for p in parts) if isinstance(c, Contact)]
        if exts and rng.random() < 0.5:
            o = exts[0].org
            pool = [c for c in o.active_people(day) if c.addr not in t["parts"]]
            if pool:
                add = rng.choices(pool, weights=[c.weight for c in pool])[0].addr
        if add is None:
            cs = [c for c in self.pick_colleagues(e, day, 3) if c.addr not in t["parts"]]
            if cs:
                add = cs[0].addr
        return add

    def compose(self, e: Emp, day: int) -> tuple[list[str], bool, float]:
        """New message by a human sender -> (recips, thread-ext flag, mean reply budget)."""
        rng = self.rng
        if rng.random() < e.ext_share:
            external = self.compose_external(e, day)
            if external is not None:
                return external
        # internal
        x = rng.random()
        if e.uses_receipts and x < 0.025:
            return [RECEIPTS], False, 0
        if x < 0.045:
            return [rng.choice(self.services)], False, 0.8
        if x < 0.08:
            own = next(d[4] for d in DEPTS if d[0] == e.dept)
            lst = rng.choice([f"{own}@{OWN}"] * 3 + self.lists[:-2])
            if e.dept in ("executive", "hr") and rng.random() < 0.3:
                lst = rng.choice([f"all-staff@{OWN}", f"managers@{OWN}"])
            return [lst], False, 0.6
        grp = [g for g in e.groups if not g["ext"] and g["start"] <= day < g["end"]]
        if grp and x < 0.22:
            g = rng.choices(grp, weights=[gg["weight"] for gg in grp])[0]
            rec = [m.addr for m in g["members"] if m is not e and m.employed(day)]
            if rec:
                return rec, False, 2.0
        k = rng.choices([1, 2, 3, 4, 5, 6, 8], weights=[56, 20, 9, 6, 4, 3, 2])[0]
        rec = [c.addr for c in self.pick_colleagues(e, day, k)]
        return rec, False, 1.0

    def compose_external(self, e: Emp, day: int) -> tuple[list[str], bool, float] | None:
        """New mail to a project group with partners, or to contacts of one organisation; None if there is none."""
        rng = self.rng
        grp = [g for g in e.groups if g["ext"] and g["start"] <= day < g["end"]]
        if grp and rng.random() < 0.3:
            g = rng.choices(grp, weights=[gg["weight"] for gg in grp])[0]
            rec = [m.addr for m in g["members"] if m is not e and m.employed(day)]
            rec += [c.addr for c in g["ext"] if c.active(day)]
            if any(isinstance(self.taken.get(a), Contact) for a in rec):
                return rec, True, 2.5
        o = self.pick_org(e, day)
        if o is None:
            return None
        act = [c for c in o.contacts if c.active(day)]
        if not act:
            return None
        k = rng.choices([1, 2, 3, 4], weights=[65, 22, 9, 4])[0]
        rec = [c.addr for c in sample_weighted(rng, act, [c.weight for c in act], k)]
        x = rng.random()
        if x < 0.30:
            rec += [c.addr for c in self.pick_colleagues(e, day, 1)]
        elif x < 0.38:
            rec += [c.addr for c in self.pick_colleagues(e, day, 2)]
        if rng.random() < 0.06:
            o2 = self.pick_org(e, day)
            if o2 is not None and o2 is not o:
                a2 = [c for c in o2.contacts if c.active(day) and not c.role]
                if a2:
                    rec.append(rng.choices(a2, weights=[c.weight for c in a2])[0].addr)
        return rec, True, 1.4

    # ---- leaks ---------------------------------------------------------------
    def leak_domain_slip(self, rec: list[str], is_new: bool) -> tuple[list[str], str, str] | None:
        rng = self.rng
        if not is_new:
            return None
        # ~10% of slips hit a colleague's own-domain address, the rest an
        # external one; the message must offer the chosen target type
        if rng.random() < 0.10:
            pool = [a for a in rec if a in self.emp_by_addr]
        else:
            pool = [a for a in rec if isinstance(self.taken.get(a), Contact)]
        if not pool:
            return None
        a = rng.choice(pool)
        loc, dom = a.split("@")
        new, op = typo_domain(rng, dom, self.domains)
        if new is None:
            return None
        leak = f"{loc}@{new}"
        if leak in self.taken or leak in rec:
            return None
        return [leak if r == a else r for r in rec], leak, f"{op}:{dom}->{new}"

    def leak_wrong_person(self, e: Emp, rec: list[str], is_new: bool, day: int) -> tuple[list[str], str, str] | None:
        rng = self.rng
        if not is_new:
            return None
        onmsg = set(rec)
        options = []
        for a in rec:
            c = self.taken.get(a)
            if not isinstance(c, Contact) or c.role or c.org.domain is None or not a.endswith("@" + c.org.domain):
                continue
            dom = c.org.domain
            people = [p for p in c.org.active_people(day) if p.addr.endswith("@" + dom)]
            names = [p for p in people if p.first == c.first and p.addr not in onmsg]
            # autocomplete list: sender's book + org directory, prefix-typed
            entries = {p.addr for p in people}
            entries.update(b for b in e.book if b.endswith("@" + dom))
            entries.add(a)
            auto = self.autocomplete_neighbour(a, sorted(entries), onmsg, day)
            if names or auto:
                options.append((a, names, auto))
        if not options:
            return None
        a, names, auto = rng.choice(options)
        if auto is None or (names and rng.random() < 0.5):
            y = rng.choice(names).addr
            note = "namesake"
        else:
            y, k = auto
            note = f"autocomplete:{k}"
        if y in e.book:
            note += ":known"
        return [y if r == a else r for r in rec], y, note

    def autocomplete_neighbour(self, a: str, ent: list[str], onmsg: set[str], day: int) -> tuple[str, int] | None:
        """The entry next to `a` in the sorted list `ent` offered after typing its first letters, and how many."""
        rng = self.rng
        k0 = rng.choices([1, 2, 3, 4], weights=[20, 35, 30, 15])[0]
        for k in range(k0, 0, -1):  # typed k letters; fewer if no neighbour
            offered = [x for x in ent if x.startswith(a[:k])]
            i = offered.index(a)
            nb = [offered[j] for j in (i - 1, i + 1) if 0 <= j < len(offered)]
            nb = [x for x in nb if x not in onmsg and self.is_active_person(x, day)]
            if nb:
                return rng.choice(nb), k
        return None

    def leak_personal(self, e: Emp, rec: list[str]) -> tuple[list[str], str, str] | None:
        rng = self.rng
        cols = [self.emp_by_addr[a] for a in rec if a in self.emp_by_addr]
        if cols and rng.random() < 0.6:
            c, who = rng.choice(cols), "colleague"
        else:
            c, who = e, "self"
        prov = dict(PERSONAL_LEAK_PROVIDERS)
        if c.region == "germanic":
            prov["gmx.de"] += 12
            prov["web.de"] += 10
        for _ in range(30):
            loc, style = freemail_local(rng, c.first, c.last)
            leak = f"{loc}@{wpick(rng, prov)}"
            if leak not in self.taken and leak not in rec:
                break
        else:
            return None
        if who == "colleague" and rng.random() < 0.6:
            new = [leak if r == c.addr else r for r in rec]
            mode = "replace"
        else:
            new = list(rec)
            new.insert(rng.randint(0, len(new)), leak)
            mode = "join"
        return new, leak, f"{who}:{mode}:{style}"

    def inject_leak(self, e: Emp, rec: list[str], is_new: bool, day: int,
                    pending: list[str]) -> tuple[list[str], str | None, str | None, str | None]:
        """The first pending leak kind that fits the message -> (recipients, leak, kind, note)."""
        if pending and rec != [RECEIPTS]:
            for i, k in enumerate(pending):
                if k == "domain-slip":
                    res = self.leak_domain_slip(rec, is_new)
                elif k == "wrong-person":
                    res = self.leak_wrong_person(e, rec, is_new, day)
                else:
                    res = self.leak_personal(e, rec)
                if res:
                    pending.pop(i)
                    # the wrong address is not remembered in the sender's book
                    new, leak, note = res
                    return new, leak, k, note
        return rec, None, None, None

    # ---- main loop -----------------------------------------------------------
    def holidays(self) -> set[dt.date]:
        y0 = self.start_date.year
        hs = set()
        for y in (y0, y0 + 1):
            a, b, c = y % 19, y // 100, y % 100
            d, e_ = b // 4, b % 4
            f = (b + 8) // 25
            g = (b - f + 1) // 3
            h = (19 * a + b - d - g + 15) % 30
            i, k = c // 4, c % 4
            l_ = (32 + 2 * e_ + 2 * i - h - k) % 7
            m = (a + 11 * h + 22 * l_) // 451
            month = (h + l_ - 7 * m + 114) // 31
            day = (h + l_ - 7 * m + 114) % 31 + 1
            easter = dt.date(y, month, day)
            hs.update({dt.date(y, 1, 1), easter - dt.timedelta(2), easter + dt.timedelta(1),
                       dt.date(y, 12, 25), dt.date(y, 12, 26)})
            may1 = dt.date(y, 5, 1)
            first_mon = may1 + dt.timedelta((7 - may1.weekday()) % 7)
            may31 = dt.date(y, 5, 31)
            last_mon = may31 - dt.timedelta(may31.weekday())
            aug31 = dt.date(y, 8, 31)
            hs.update({first_mon, last_mon, aug31 - dt.timedelta(aug31.weekday())})
        return hs

    def run(self) -> list[Row]:
        rng = self.rng
        out: list[Row] = []
        hol = self.holidays()
        hour_pick = Picker(range(24), HOUR_WEIGHTS)
        pending: list[str] = []
        billing = [c for o in self.orgs if o.kind in ("customer", "affiliate") for c in o.contacts
                   if c.role and c.addr.split("@")[0] in ("invoices", "ap", "accounts.payable")]
        billing_days: set[dt.date] = set()
        for day in range(self.days):
            date = self.start_date + dt.timedelta(day)
            wd = date.weekday()
            if date.day <= 7 and wd < 5 and date not in hol and not any(
                    self.start_date + dt.timedelta(x) in billing_days for x in range(max(0, day - 6), day)):
                billing_days.add(date)
            n = self.volume(day, date, hol)
            secs = sorted(hour_pick.pick(rng) * 3600 + rng.randrange(3600) for _ in range(n))
            workers = [e for e in self.emps if e.at_work(day)]
            if wd >= 5 or date in hol:
                wpk = Picker(workers, [e.weight * (3 if e.dept in ("executive", "sales", "support") else 1)
                                       for e in workers])
            else:
                wpk = Picker(workers, [e.weight for e in workers])
            p_leak = 0.017 if day >= self.cut_day else 0.0012
            for s in secs:
                row = self.message(day, date, s, workers, wpk, p_leak, pending)
                if row is not None:
                    out.append(row)
            # weekly newsletter, monthly billing run
            if wd == 2 and date not in hol:
                out.append((date.isoformat() + "T07:30:00+00:00", f"news@{OWN}",
                            [f"all-staff@{OWN}"], None, None, None))
            if date in billing_days:
                for c in billing:
                    if c.active(day) and c.org.start <= day and rng.random() < 0.9:
                        s = 5 * 3600 + rng.randrange(3 * 3600)
                        out.append((stamp(date, s), f"billing@{OWN}", [c.addr], None, None, None))
        out.sort(key=lambda r: r[0])
        return out

    def volume(self, day: int, date: dt.date, hol: set[dt.date]) -> int:
        """The number of messages of the day: by weekday and holiday, with a slight upward trend."""
        wd = date.weekday()
        if date in hol:
            f = 0.08
        elif wd == 5:
            f = 0.12
        elif wd == 6:
            f = 0.09
        else:
            f = {0: 1.3, 1: 1.33, 2: 1.3, 3: 1.28, 4: 1.12}[wd]
        f *= 0.95 + 0.1 * day / max(1, self.days)
        mean = self.per_day * f
        return max(0, round(self.rng.gauss(mean, math.sqrt(mean) * 1.3)))

    def message(self, day: int, date: dt.date, s: int, workers: list[Emp], wpk: Picker[Emp], p_leak: float,
                pending: list[str]) -> Row | None:
        """The message sent `s` seconds into the day, if any: a notification, or a human's new mail or reply."""
        rng = self.rng
        ts = stamp(date, s)
        x = rng.random()
        if x < 0.035 and date.weekday() < 5:
            e = rng.choice(workers) if workers else None
            if e:
                return ts, f"noreply@{OWN}", [e.addr], None, None, None
            return None
        if not workers:
            return None
        e = wpk.pick(rng)
        # habitual mail to own private address (legit)
        if e.personal and rng.random() < 0.02:
            return ts, e.addr, [e.personal], None, None, None
        found = self.recipients(e, day)
        if found is None:
            return None
        rec, is_new, ext = found
        if e.crm and ext and any(isinstance(self.taken.get(a), Contact) for a in rec) and rng.random() < 0.8:
            rec = [*rec, e.crm]
        for a in rec:
            e.book[a] = e.book.get(a, 0) + 1
        if rng.random() < p_leak:
            pending.append(rng.choice(LEAK_KINDS))
        rec, leak, kind, note = self.inject_leak(e, rec, is_new, day, pending)
        return ts, e.addr, rec, leak, kind, note

    def recipients(self, e: Emp, day: int) -> tuple[list[str], bool, bool] | None:
        """-> (recipients, new message?, external thread?) of a reply or a new message; None if nobody to write to."""
        if self.rng.random() < 0.45:
            t = self.pick_thread(e, day)
            if t is not None:
                rec = self.reply(e, t, day)
                if rec is not None:
                    return rec, False, t["ext"]
        rec, ext, bmean = self.compose(e, day)
        rec = [r for r in dict.fromkeys(rec) if r != e.addr]
        if not rec:
            return None
        if bmean:
            self.new_thread(e, rec, day, bmean, ext)
        return rec, True, ext


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else None)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--people", type=int, default=120)
    ap.add_argument("--per-day", type=int, default=250)
    ap.add_argument("--start", default="2026-01-01")
    ap.add_argument("--cut", default="2026-05-01")
    ap.add_argument("--notes", action="store_true", help="add a 'note' field with the leak sub-kind")
    a = ap.parse_args(argv)
    w = World(a.seed, a.days, a.people, a.per_day,
              dt.date.fromisoformat(a.start), dt.date.fromisoformat(a.cut))
    rows = w.run()
    with a.out.open("w", encoding="utf-8") as fh:
        for ts, snd, rec, leak, kind, note in rows:
            o: dict[str, object] = {"date": ts, "sender": snd, "recipients": rec, "leak": leak, "kind": kind}
            if a.notes:
                o["note"] = note
            fh.write(json.dumps(o) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
