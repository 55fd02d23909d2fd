"""Exact byte packing of transition bodies, and merging actions per customer."""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from moetrack._wire.encode import Packer, dumps
from moetrack._wire.records import DEVICE, EVENT, USER, Item


def action(name: str, **attrs: object) -> bytes:
    return dumps({"action": name, "attributes": attrs})


def test_actions_of_one_customer_share_an_element_until_a_user_element_intervenes() -> None:
    packer = Packer(100_000, 1_000)
    for item in (
        Item(EVENT, "u1", None, action("a")),
        Item(EVENT, "u2", None, action("b")),
        Item(EVENT, "u1", None, action("c")),
        Item(USER, "u1", None, dumps({"type": "customer", "customer_id": "u1"})),
        Item(EVENT, "u1", None, action("d")),
        Item(EVENT, "u2", None, action("e")),
        Item(EVENT, "u1", "dev", action("f")),
    ):
        assert packer.add(item)
    batch = packer.take()
    body = json.loads(batch.body)
    shapes = [
        (
            e["type"],
            e["customer_id"],
            e.get("device_id"),
            [a["action"] for a in e.get("actions", [])],
        )
        for e in body["elements"]
    ]
    assert shapes == [
        ("event", "u1", None, ["a", "c"]),
        ("event", "u2", None, ["b", "e"]),
        ("customer", "u1", None, []),
        ("event", "u1", None, ["d"]),
        ("event", "u1", "dev", ["f"]),
    ]
    assert (batch.users, batch.events) == (1, 6)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([EVENT, EVENT, EVENT, USER, DEVICE]),
            st.sampled_from(["ab", "cd", "customer-ü", "ef"]),
            st.text(max_size=300),
        ),
        min_size=1,
        max_size=200,
    ),
    st.integers(min_value=1_000, max_value=5_000),
)
def test_bodies_are_exactly_measured_never_over_the_limit_and_keep_order(
    specs: list[tuple[int, str, str]], limit: int
) -> None:
    items = []
    for n, (kind, cid, text) in enumerate(specs):
        if kind == EVENT:
            items.append(
                Item(EVENT, cid, None, dumps({"action": f"e{n}", "attributes": {"t": text}}))
            )
        else:
            element = {
                "type": "customer" if kind == USER else "device",
                "customer_id": cid,
                "n": n,
                "t": text,
            }
            items.append(Item(kind, cid, None, dumps(element)))
    batches = Packer(limit, 50).pack_all(items)
    seen = []
    for batch in batches:
        assert len(batch.body) <= limit
        assert len(batch) <= 50
        body = json.loads(batch.body)
        assert body["type"] == "transition"
        for element in body["elements"]:
            if element["type"] == "event":
                seen.extend((element["customer_id"], a["action"]) for a in element["actions"])
            else:
                seen.append((element["customer_id"], element["n"]))
    expected = []
    for n, (kind, cid, _) in enumerate(specs):
        expected.append((cid, f"e{n}") if kind == EVENT else (cid, n))
    # Order per customer is kept (elements of different customers may interleave).
    for cid in {c for _, c, _ in specs}:
        assert [x for x in seen if x[0] == cid] == [x for x in expected if x[0] == cid]
    assert sorted(map(str, seen)) == sorted(map(str, expected))


def test_packer_size_equals_body_length() -> None:
    rng = random.Random(7)
    packer = Packer(100_000, 10_000)
    for i in range(300):
        cid = f"user-{rng.randrange(20)}"
        assert packer.add(Item(EVENT, cid, rng.choice([None, "d1"]), action(f"x{i}", v=i)))
        assert packer.add(Item(USER, cid, None, dumps({"type": "customer", "customer_id": cid})))
    size = packer.size
    assert len(packer.take().body) == size


def test_user_and_event_caps_per_batch() -> None:
    packer = Packer(100_000, 1_000, max_users=2, max_events=3)
    user = Item(USER, "u1", None, dumps({"type": "customer", "customer_id": "u1"}))
    assert packer.add(user)
    assert packer.add(user)
    assert not packer.add(user)
    for _ in range(3):
        assert packer.add(Item(EVENT, "u2", None, action("a")))
    assert not packer.add(Item(EVENT, "u2", None, action("a")))
