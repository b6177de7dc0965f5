"""History, the guard's second pillar beside the typo model: the organisation's own mail, per sender.

    batch.py     a Batch of tallies: what a door or `rcptguard learn` counts, before it is written
    model.py     Seen, DomainFacts, Facts: what history says of one message's recipients
    rules.py     the poisoning guard: which domains count as correspondents
    judge.py     one message judged with its sender's history (confirmations, the odd recipient out)
    memory.py    history in memory (the evaluation); the store keeps it in rcptguard.store.history
    settings.py  the [history] section

The guard's index of known domains is built from `learned()` (the domains the poisoning guard lets count), once,
and rebuilt only when domains become known (rcptguard.runtime); everything per sender or per message is a look-up
at the time of the message (`facts`), never a rebuild.
"""

from rcptguard.history.batch import Batch, Counted
from rcptguard.history.memory import MemoryHistory
from rcptguard.history.model import DomainFacts, Facts, Seen, address_key, sender_key
from rcptguard.history.settings import HistorySettings
from rcptguard.history.view import HistoryView

__all__ = ["Batch", "Counted", "DomainFacts", "Facts", "HistorySettings", "HistoryView", "MemoryHistory", "Seen",
           "address_key", "sender_key"]
