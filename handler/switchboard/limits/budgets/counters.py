"""Budget counters: what each line has spent and what calls in flight hold on it.

Spend is counted with DynamoDB `ADD` counters in the calls table: one item per scope and period (pk
`BUDGET#task#<task>` or `BUDGET#key#<name>`, sk `DAY#<yyyy-mm-dd>` or `MONTH#<yyyy-mm>`, with a TTL), so
every Lambda instance sees every other's spend (`TableCounters`). Without a table the counters live in this
process (`MemoryCounters`). Only scopes that have a budget are counted.

An item holds `spent_usd` (what ended calls cost) and `committed_nusd` (that plus what calls in flight have
reserved, in nano-dollars). Admitting a call is one conditional ADD of its reservation (condition:
`committed_nusd` below the limit), atomic across instances; when the call ends its reservation is replaced by
its cost. Each reservation is also written to a per-minute attribute (`held_<minute>`) that its release takes
back; one still held RESERVATION_EXPIRES_S later belonged to a process that died mid-call, and is handed
back (`reclaim`), so a leak never blocks a budget for long. Passing the soft threshold, and the limit, is
stamped on the item with a conditional update (`claim`), so only one instance speaks of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from switchboard.limits.budgets.model import Key, Line, iso

KEEP_COUNTERS_S = {"day": 40 * 86400, "month": 400 * 86400}  # counters outlive their period, for reports
RESERVATION_EXPIRES_S = 900  # longer than any call (the function's timeout is 300 s, a call's deadline 600 s)
HELD_PREFIX = "held_"  # + the minute (epoch // 60) a reservation was made in
NANO = 1_000_000_000  # reservations and committed spend are whole nano-dollars in the table
SOFT, EXCEEDED = "soft", "exceeded"
NOTE_ATTRIBUTE = {SOFT: "soft_noted_at", EXCEEDED: "exceeded_noted_at"}
DynamoDB = Any  # a boto3 DynamoDB client: botocore ships no types


@dataclass
class Spent:
    """A counter as read: dollars so far, what calls in flight hold, whether any call's cost was unknown,
    which notes were made, and the reservations by minute (for handing back those a dead process left)."""

    usd: float = 0.0
    incomplete: bool = False
    noted: frozenset[str] = frozenset()
    committed: float | None = None  # usd plus what is reserved; None on an item older than reservations
    held: dict[int, float] | None = None  # minute -> reserved that minute

    @property
    def reserved_usd(self) -> float:
        return max((self.committed if self.committed is not None else self.usd) - self.usd, 0.0)


@dataclass(frozen=True)
class Hold:
    """One call's reservation on one line: how much, and in which minute (0 usd: nothing reserved)."""

    line: Line
    usd: float = 0.0
    minute: int = 0


class Counters(Protocol):
    shared: bool  # True: other processes count into the same counters (a table)

    def read(self, keys: list[Key]) -> dict[Key, Spent]: ...
    def reserve(self, line: Line, usd: float, minute: int) -> tuple[bool, Spent]: ...
    def settle(self, hold: Hold, usd: float, unknown: bool) -> Spent: ...
    def add(self, line: Line, usd: float, unknown: bool) -> Spent: ...
    def reclaim(self, line: Line, held: dict[int, float]) -> None: ...
    def claim(self, line: Line, note: str) -> bool: ...


def stale_holds(spent: Spent, now: float) -> dict[int, float]:
    """Reservations older than RESERVATION_EXPIRES_S: left by a process that died mid-call (or already 0)."""
    oldest = int((now - RESERVATION_EXPIRES_S) // 60)
    return {minute: usd for minute, usd in (spent.held or {}).items() if minute < oldest}


class MemoryCounters:
    """This process's own counters: no table configured (a local run without the embedded stack)."""

    shared = False

    def __init__(self) -> None:
        self.items: dict[Key, tuple[float, Spent]] = {}  # key -> (period end, figure)

    def read(self, keys: list[Key]) -> dict[Key, Spent]:
        return {key: self.items[key][1] for key in keys if key in self.items}

    def _get(self, line: Line) -> Spent:
        return self.items.get(line.key, (0.0, Spent()))[1]

    def _put(self, line: Line, spent: Spent) -> Spent:
        self._forget_ended()
        self.items[line.key] = (line.period.ends_at, spent)
        return spent

    def reserve(self, line: Line, usd: float, minute: int) -> tuple[bool, Spent]:
        before = self._get(line)
        committed = before.usd if before.committed is None else before.committed
        if committed >= line.limit_usd:
            return False, before
        held = dict(before.held or {})
        held[minute] = held.get(minute, 0.0) + usd
        return True, self._put(line, Spent(before.usd, before.incomplete, before.noted, committed + usd, held))

    def settle(self, hold: Hold, usd: float, unknown: bool) -> Spent:
        before = self._get(hold.line)
        committed = (before.usd if before.committed is None else before.committed) + usd - hold.usd
        held = dict(before.held or {})
        if hold.usd:
            held[hold.minute] = held.get(hold.minute, 0.0) - hold.usd
            if abs(held[hold.minute]) < 1e-12:
                del held[hold.minute]
        return self._put(hold.line, Spent(before.usd + usd, before.incomplete or unknown, before.noted,
                                          committed, held))

    def add(self, line: Line, usd: float, unknown: bool) -> Spent:
        """Spend with nothing reserved first."""
        return self.settle(Hold(line), usd, unknown)

    def reclaim(self, line: Line, held: dict[int, float]) -> None:
        before = self._get(line)
        kept = {m: v for m, v in (before.held or {}).items() if m not in held}
        committed = (before.committed or 0.0) - sum(v for m, v in (before.held or {}).items() if m in held)
        self._put(line, Spent(before.usd, before.incomplete, before.noted, committed, kept))

    def claim(self, line: Line, note: str) -> bool:
        ends_at, spent = self.items.get(line.key, (line.period.ends_at, Spent()))
        if note in spent.noted:
            return False
        self.items[line.key] = (ends_at, Spent(spent.usd, spent.incomplete, spent.noted | {note}, spent.committed,
                                               spent.held))
        return True

    def _forget_ended(self) -> None:
        if len(self.items) > 2000:
            cutoff = time.time() - KEEP_COUNTERS_S["day"]
            for key in [k for k, (ends_at, _) in self.items.items() if ends_at < cutoff]:
                del self.items[key]


class TableCounters:
    """The counters as items in the calls table: atomic ADDs, so every instance counts into the same figure."""

    shared = True

    def __init__(self, dynamodb: DynamoDB | Callable[[], DynamoDB], table: str) -> None:
        """`dynamodb` is a client, or a function returning one (so boto3 loads only when first used)."""
        self._db = dynamodb
        self.table = table

    @property
    def db(self) -> DynamoDB:
        if callable(self._db) and not hasattr(self._db, "update_item"):
            self._db = self._db()
        return self._db

    def read(self, keys: list[Key]) -> dict[Key, Spent]:
        found: dict[Key, Spent] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 100):  # BatchGetItem's limit
            found.update(self._read_batch(unique[start:start + 100]))
        return found

    def _read_batch(self, keys: list[Key]) -> dict[Key, Spent]:
        request: dict[str, Any] = {self.table: {
            "Keys": [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in keys], "ConsistentRead": True}}
        found: dict[Key, Spent] = {}
        for _ in range(3):  # unprocessed keys (throttling) are asked for again, twice at most
            answer = self.db.batch_get_item(RequestItems=request)
            for item in answer.get("Responses", {}).get(self.table, []):
                found[(item["pk"]["S"], item["sk"]["S"])] = _spent(item)
            request = answer.get("UnprocessedKeys") or {}
            if not request:
                return found
        raise RuntimeError("budget counters not read: DynamoDB left keys unprocessed")

    def _key(self, line: Line) -> dict[str, Any]:
        return {"pk": {"S": line.scope.pk}, "sk": {"S": line.period.sk}}

    def _stamps(self, line: Line) -> dict[str, Any]:
        return {":end": {"S": iso(line.period.ends_at)},
                ":ttl": {"N": str(int(line.period.ends_at + KEEP_COUNTERS_S[line.period.kind]))}}

    def reserve(self, line: Line, usd: float, minute: int) -> tuple[bool, Spent]:
        """ADD the reservation to `committed_nusd` if that is below the limit: (admitted, the item after, or as
        it stood when refused). Reservations are whole nano-dollars: sums that return to zero stay exact."""
        db = self.db
        for _ in range(2):
            try:
                answer = db.update_item(
                    TableName=self.table, Key=self._key(line),
                    UpdateExpression="ADD committed_nusd :n, #h :n SET expires_at = :ttl, period_ends_at = :end",
                    ConditionExpression="(attribute_not_exists(committed_nusd) AND attribute_not_exists(spent_usd))"
                                        " OR committed_nusd < :limit",
                    ExpressionAttributeNames={"#h": f"{HELD_PREFIX}{minute}"},
                    ExpressionAttributeValues={":n": {"N": str(nano(usd))}, ":limit": {"N": str(nano(line.limit_usd))},
                                               **self._stamps(line)},
                    ReturnValues="ALL_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD")
            except db.exceptions.ConditionalCheckFailedException as exc:
                item = exc.response.get("Item") or {}
                if "committed_nusd" not in item and "spent_usd" in item and self._seed(line, item["spent_usd"]):
                    continue  # an item counted before reservations existed: committed starts at its spend
                return False, _spent(item)
            return True, _spent(answer.get("Attributes", {}))
        return False, Spent()

    def _seed(self, line: Line, spent: dict[str, str]) -> bool:
        db = self.db
        try:
            db.update_item(TableName=self.table, Key=self._key(line), UpdateExpression="SET committed_nusd = :n",
                           ConditionExpression="attribute_not_exists(committed_nusd) AND spent_usd = :spent",
                           ExpressionAttributeValues={":spent": spent, ":n": {"N": str(nano(float(spent["N"])))}})
        except db.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def settle(self, hold: Hold, usd: float, unknown: bool) -> Spent:
        """The call's cost in place of its reservation (or added, when it reserved nothing)."""
        line = hold.line
        adds = ["spent_usd :usd", "committed_nusd :delta", "calls :one"] + (["unpriced_calls :one"] if unknown else [])
        names: dict[str, str] = {}
        values = {":usd": {"N": f"{usd:.10f}"}, ":delta": {"N": str(nano(usd) - nano(hold.usd))}, ":one": {"N": "1"},
                  **self._stamps(line)}
        if hold.usd:
            adds.append("#h :back")
            names["#h"] = f"{HELD_PREFIX}{hold.minute}"
            values[":back"] = {"N": str(-nano(hold.usd))}
        answer = self.db.update_item(
            TableName=self.table, Key=self._key(line),
            UpdateExpression="ADD " + ", ".join(adds) + " SET expires_at = :ttl, period_ends_at = :end",
            ExpressionAttributeValues=values, ReturnValues="ALL_NEW", **({"ExpressionAttributeNames": names}
                                                                         if names else {}))
        return _spent(answer.get("Attributes", {}))

    def add(self, line: Line, usd: float, unknown: bool) -> Spent:
        """Spend with nothing reserved first."""
        return self.settle(Hold(line), usd, unknown)

    def reclaim(self, line: Line, held: dict[int, float]) -> None:
        """Hand back reservations nobody will release; each only if it is still what was seen (else: next time)."""
        db = self.db
        for minute, usd in held.items():
            try:
                db.update_item(TableName=self.table, Key=self._key(line),
                               UpdateExpression="ADD committed_nusd :back REMOVE #h", ConditionExpression="#h = :seen",
                               ExpressionAttributeNames={"#h": f"{HELD_PREFIX}{minute}"},
                               ExpressionAttributeValues={":back": {"N": str(-nano(usd))},
                                                          ":seen": {"N": str(nano(usd))}})
            except db.exceptions.ConditionalCheckFailedException:
                continue

    def claim(self, line: Line, note: str) -> bool:
        """Stamp the note on the counter unless another instance did first: True for the one that did."""
        db = self.db
        try:
            db.update_item(TableName=self.table, Key=self._key(line),
                           UpdateExpression="SET #n = :now", ConditionExpression="attribute_not_exists(#n)",
                           ExpressionAttributeNames={"#n": NOTE_ATTRIBUTE[note]},
                           ExpressionAttributeValues={":now": {"S": iso(time.time())}})
        except db.exceptions.ConditionalCheckFailedException:
            return False
        return True


def nano(usd: float) -> int:
    """Dollars as whole nano-dollars, how reservations are counted (exact when they are handed back)."""
    return round(usd * NANO)


def _spent(item: dict[str, Any]) -> Spent:
    noted = frozenset(note for note, attribute in NOTE_ATTRIBUTE.items() if attribute in item)
    held = {int(name[len(HELD_PREFIX):]): float(value["N"]) / NANO for name, value in item.items()
            if name.startswith(HELD_PREFIX) and name[len(HELD_PREFIX):].isdigit() and "N" in value}
    committed = float(item["committed_nusd"]["N"]) / NANO if "N" in item.get("committed_nusd", {}) else None
    return Spent(float(item.get("spent_usd", {}).get("N", "0")), int(item.get("unpriced_calls", {}).get("N", "0")) > 0,
                 noted, committed, held)


# -- the tracker: admit, then count -----------------------------------------------------------------------
