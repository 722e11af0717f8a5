"""Acks are released per topic-partition in offset order (issue 13): a message done early waits for those before it."""

from streams.live.acks import InOrderAcks


def test_a_message_done_early_is_acked_only_after_every_earlier_one_of_its_partition():
    acks = InOrderAcks()
    held = acks.received("a", "a0")
    dead = acks.received("a", "a1")  # an invalid message behind a valid one still held
    assert acks.done(dead) == []
    assert acks.done(held) == ["a0", "a1"]


def test_partitions_are_independent():
    acks = InOrderAcks()
    a0 = acks.received("a", "a0")
    b0 = acks.received("b", "b0")
    assert acks.done(b0) == ["b0"]
    a1 = acks.received("a", "a1")
    assert acks.done(a1) == []
    assert acks.done(a0) == ["a0", "a1"]


def test_done_out_of_order_releases_the_longest_done_prefix():
    acks = InOrderAcks()
    m = [acks.received("a", i) for i in range(5)]
    assert acks.done(m[2]) == []
    assert acks.done(m[4]) == []
    assert acks.done(m[0]) == [0]
    assert acks.done(m[1]) == [1, 2]
    assert acks.done(m[3]) == [3, 4]
