"""Create the topics a deployment needs, co-partitioned, before the worker starts."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.connection import client_options, start_client
from streams.settings import Settings

log = logging.getLogger("charter.topics")


def topic_plan(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """topic -> (partitions, configs). Inputs, the clock and outputs share the partition count."""
    from streams.live import CLOCK_TOPIC, HOTLINE_TOPIC, INPUT_TOPICS, OUTPUT_TOPICS

    n = settings.partitions
    plan: dict[str, tuple[int, dict[str, str]]] = {t: (n, {}) for t in INPUT_TOPICS}
    plan.update({t: (n, {}) for t in OUTPUT_TOPICS})
    # ticks are worthless after a minute; keep the clock topic small
    plan[CLOCK_TOPIC] = (n, {"retention.ms": "600000", "segment.ms": "600000"})
    plan[HOTLINE_TOPIC] = (1, {})
    plan["dead-letter"] = (n, {"max.message.bytes": str(16 * 1024 * 1024)})
    # State changelogs are created here too, before the worker joins its group: left to faust, a first start
    # could assign partitions before the new changelog topic is visible ("changelog has 0 partitions").
    from streams.live import changelog_name

    compact = {"cleanup.policy": "compact"}
    plan[changelog_name(settings, "subscribers")] = (n, compact)
    plan[changelog_name(settings, "hotline")] = (1, compact)
    return plan


async def ensure_topics_async(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(**client_options(settings))
    await start_client(admin, settings)
    try:
        existing = set(await admin.list_topics())
        plan = topic_plan(settings)
        plan = {(t if t.endswith("-changelog") else settings.topic(t)): v for t, v in plan.items()}
        missing = [NewTopic(name=t, num_partitions=p, replication_factor=settings.replication_factor,
                            topic_configs=cfg) for t, (p, cfg) in plan.items() if t not in existing]
        if missing:
            await admin.create_topics(missing)
            log.info("created topics: %s", ", ".join(t.name for t in missing))
        described = await admin.describe_topics([t for t, (p, _) in plan.items() if t in existing])
        for d in described:
            name = d["topic"]
            want = plan[name][0]
            have = len(d["partitions"])
            if have != want and settings.unprefixed(name) in _copartitioned():
                raise SystemExit(f"topic {name} has {have} partitions, CHARTER_PARTITIONS={want}: input topics "
                                 "and the clock must be co-partitioned (set CHARTER_PARTITIONS to match)")
    finally:
        await admin.close()


def _copartitioned() -> set[str]:
    from streams.live import CLOCK_TOPIC, CUSTOMER_TOPICS

    return {*CUSTOMER_TOPICS, CLOCK_TOPIC}


def ensure_topics(settings: Settings) -> None:
    asyncio.run(ensure_topics_async(settings))
