"""Every topic and changelog name of a deployment, declared once, and their creation before the worker starts.

Input and output topic names come from the contract's models (``schemas``); the worker's internal topics and
state changelogs are declared here. Everything else imports them from this module.
"""

from __future__ import annotations

import asyncio
import logging

from schemas.inputs import INPUT_TOPICS as _INPUT_MODELS
from schemas.inputs import KEY_FIELD
from schemas.outputs import OUTPUT_MODELS
from streams.settings import Settings

log = logging.getLogger("charter.topics")

INPUT_TOPICS: tuple[str, ...] = tuple(_INPUT_MODELS)
# Keyed by customer_id: co-partitioned with each other and consumed by one task per partition number.
CUSTOMER_TOPICS: tuple[str, ...] = tuple(t for t in INPUT_TOPICS if KEY_FIELD[t] == "customer_id")
CALL_TOPIC = "call-queue"  # keyed by call_id: repartitioned by queue to the hotline
OUTPUT_TOPICS: tuple[str, ...] = tuple(OUTPUT_MODELS)
DEAD_LETTER_TOPIC = "dead-letter"
CLOCK_TOPIC = "charter-clock"  # one tick per partition per tick_interval: deadlines fire inside stream iteration
HOTLINE_TOPIC = "charter-hotline"  # call-queue repartitioned to one partition, with per-source watermarks
SUBSCRIBERS_TABLE = "subscribers"
HOTLINE_TABLE = "hotline"


def changelog_name(settings: Settings, table: str) -> str:
    """The changelog topic of a state table (faust's naming: ``{app_id}-{table}-changelog``; not prefixed)."""
    return f"{settings.app_id}-{table}-changelog"


def topic_plan(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """Unprefixed topic (or changelog) name -> (partitions, configs). Inputs, the clock and outputs share the
    partition count."""
    n = settings.partitions
    plan: dict[str, tuple[int, dict[str, str]]] = {t: (n, {}) for t in INPUT_TOPICS}
    plan.update({t: (n, {}) for t in OUTPUT_TOPICS})
    # ticks are worthless after a minute; keep the clock topic small
    plan[CLOCK_TOPIC] = (n, {"retention.ms": "600000", "segment.ms": "600000"})
    plan[HOTLINE_TOPIC] = (1, {})
    plan[DEAD_LETTER_TOPIC] = (n, {"max.message.bytes": str(16 * 1024 * 1024)})
    # State changelogs are created here too, before the worker joins its group: left to faust, a first start
    # could assign partitions before the new changelog topic is visible ("changelog has 0 partitions").
    compact = {"cleanup.policy": "compact"}
    plan[changelog_name(settings, SUBSCRIBERS_TABLE)] = (n, compact)
    plan[changelog_name(settings, HOTLINE_TABLE)] = (1, compact)
    return plan


async def ensure_topics_async(settings: Settings) -> None:
    # imported here: replay imports the names, not Kafka
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from streams.connection import client_options, start_client

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
        copartitioned = {*CUSTOMER_TOPICS, CLOCK_TOPIC}
        for d in described:
            name = d["topic"]
            want = plan[name][0]
            have = len(d["partitions"])
            if have != want and settings.unprefixed(name) in copartitioned:
                raise SystemExit(f"topic {name} has {have} partitions, CHARTER_PARTITIONS={want}: input topics "
                                 "and the clock must be co-partitioned (set CHARTER_PARTITIONS to match)")
    finally:
        await admin.close()


def ensure_topics(settings: Settings) -> None:
    asyncio.run(ensure_topics_async(settings))
