"""Plain-words names of top-level domains, for reasons a sender reads (".ml is Mali's country domain")."""

from __future__ import annotations

from functools import cache

import pycountry

# Country-code domains that are not an ISO 3166 alpha-2 code, or whose ISO name reads badly in a sentence.
_SPECIAL = {
    "uk": "the United Kingdom", "ac": "Ascension Island", "eu": "the European Union", "su": "the former Soviet Union",
    "us": "the United States", "ru": "Russia", "kr": "South Korea", "kp": "North Korea", "ir": "Iran",
    "sy": "Syria", "ve": "Venezuela", "tw": "Taiwan", "tz": "Tanzania", "vn": "Vietnam", "la": "Laos",
    "md": "Moldova", "bo": "Bolivia", "cd": "the Democratic Republic of the Congo", "cg": "the Republic of the Congo",
    "nl": "the Netherlands", "ph": "the Philippines", "ae": "the United Arab Emirates", "cz": "Czechia",
    "fm": "Micronesia", "ps": "Palestine", "mk": "North Macedonia", "va": "the Vatican",
}
_GENERIC = {
    "mil": "the US military's domain", "gov": "the US government's domain", "edu": "the domain of US universities",
    "int": "the domain of international organisations",
}


@cache
def describe_tld(tld: str) -> str | None:
    """"Mali's country domain" for ml, "the US military's domain" for mil, None for other generic ones."""
    tld = tld.rsplit(".", 1)[-1].lower()
    if tld in _GENERIC:
        return _GENERIC[tld]
    if len(tld) != 2 or not tld.isalpha():
        return None
    name = _SPECIAL.get(tld)
    if name is None:
        country = pycountry.countries.get(alpha_2=tld.upper())
        if country is None:
            return None
        name = getattr(country, "common_name", None) or country.name
    possessive = f"{name}'" if name.endswith("s") else f"{name}'s"
    return f"the country domain of {name}" if name.startswith("the ") else f"{possessive} country domain"
