"""The world's evidence: what the DNS says about a typed domain that resembles another (docs/world.md).

    from rcptguard.world import DnsSettings, Finding, World

    world = World(DnsSettings(nameservers=("127.0.0.1",)))
    evidence = await world.check("army.ml", "army.mil")   # at most budget_ms (150), never raises
    if evidence.would_bounce: ...                          # NO_DOMAIN, NO_MAIL: say the mail would bounce
    elif evidence.same_operator: ...                       # SAME_OPERATOR: a real sibling, at most a warning
    # SHARED_HOSTING, DIFFERENT_OPERATOR, UNKNOWN: nothing proven; decide as without DNS (evidence.text says why)

    model.py     Answer (one DNS answer), Finding, Evidence (what the sender reads)
    classify.py  pure: answers -> finding
    shared.py    MX hosts that serve many tenants, with their sources
    cache.py     TtlLru: bounded, TTL-honouring answer cache
    settings.py  DnsSettings: the [dns] keys
    lookup.py    World (asyncio), SyncWorld (a loop in a thread, for callers without one)
    weigh.py     pure: verdict + evidence -> verdict; consult/consult_sync for the doors (never raise)
"""

from rcptguard.world.cache import CacheInfo
from rcptguard.world.classify import Classified, classify
from rcptguard.world.lookup import SyncWorld, World
from rcptguard.world.model import Answer, Evidence, Finding, Outcome
from rcptguard.world.settings import DnsSettings
from rcptguard.world.shared import SHARED_HOSTS, SharedHost, SharedHosts
from rcptguard.world.weigh import SIGNALS, consult, consult_all_sync, consult_sync, wants_evidence, weigh

__all__ = ["SHARED_HOSTS", "SIGNALS", "Answer", "CacheInfo", "Classified", "DnsSettings", "Evidence", "Finding",
           "Outcome", "SharedHost", "SharedHosts", "SyncWorld", "World", "classify", "consult", "consult_all_sync",
           "consult_sync", "wants_evidence", "weigh"]
