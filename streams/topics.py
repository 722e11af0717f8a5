"""Every topic and changelog name of a deployment, declared once, and their creation before the worker starts.

Input and output topic names come from the contract's models (``schemas``); the worker's internal topics and
state changelogs are declared here. Everything else imports them from this module.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from schemas.inputs import INPUT_TOPICS as _INPUT_MODELS
from schemas.inputs import KEY_FIELD
from schemas.outputs import OUTPUT_MODELS
from streams.errors import UserFacingError
from streams.settings import Settings, retention_ms

log = logging.getLogger("charter.topics")

INPUT_TOPICS: tuple[str, ...] = tuple(_INPUT_MODELS)
# Keyed by customer_id: co-partitioned with each other and consumed by one task per partition number.
CUSTOMER_TOPICS: tuple[str, ...] = tuple(t for t in INPUT_TOPICS if KEY_FIELD[t] == "customer_id")
CALL_TOPIC = "call-queue"  # keyed by call_id: repartitioned by queue to the hotline
OUTPUT_TOPICS: tuple[str, ...] = tuple(OUTPUT_MODELS)
DEAD_LETTER_TOPIC = "dead-letter"
CLOCK_TOPIC = "charter-clock"  # one tick per partition per tick_interval: a tick steps that partition's task
HOTLINE_TOPIC = "charter-hotline"  # call-queue repartitioned to one partition, with per-source watermarks
# the partition tasks' element changes (SPEC 10) to one partition, with per-source watermarks
ELEMENTS_TOPIC = "charter-elements"
INTERNAL_TOPICS = (CLOCK_TOPIC, HOTLINE_TOPIC, ELEMENTS_TOPIC)
SUBSCRIBERS_TABLE = "subscribers"
HOTLINE_TABLE = "hotline"
ELEMENTS_TABLE = "elements"


def changelog_name(settings: Settings, table: str) -> str:
    """The changelog topic of a state table (faust's naming: ``{app_id}-{table}-changelog``; not prefixed)."""
    return f"{settings.app_id}-{table}-changelog"


class TopicProblem(UserFacingError):
    """Topics that exist but cannot be used as they are (or, with create_topics off, are missing)."""


def topic_plan(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """Topic name as created (prefixed; changelogs are named after the app id) -> (partitions, configs).

    Inputs, the clock, outputs and the subscribers changelog share the partition count; output topics keep their
    records for ``output_retention``, the compensation ledger for ``compensation_retention``.
    """
    n = settings.partitions
    t = settings.topic
    plan: dict[str, tuple[int, dict[str, str]]] = {t(name): (n, {}) for name in INPUT_TOPICS}
    outputs = {"retention.ms": str(retention_ms(settings.output_retention))}
    plan.update({t(name): (n, dict(outputs)) for name in OUTPUT_TOPICS})
    plan[t("compensation")][1]["retention.ms"] = str(retention_ms(settings.compensation_retention))
    # a dead letter carries the raw value of a bad message (base64 when not UTF-8): room for a large one
    plan[t(DEAD_LETTER_TOPIC)][1]["max.message.bytes"] = str(16 * 1024 * 1024)
    # ticks are worthless after a minute; keep the clock topic small
    plan[t(CLOCK_TOPIC)] = (n, {"retention.ms": "600000", "segment.ms": "600000"})
    plan[t(HOTLINE_TOPIC)] = (1, {})
    plan[t(ELEMENTS_TOPIC)] = (1, {})
    # State changelogs are created here too, before the worker joins its group: left to faust, a first start
    # could assign partitions before the new changelog topic is visible ("changelog has 0 partitions").
    compact = {"cleanup.policy": "compact"}
    plan[changelog_name(settings, SUBSCRIBERS_TABLE)] = (n, compact)
    plan[changelog_name(settings, HOTLINE_TABLE)] = (1, dict(compact))
    plan[changelog_name(settings, ELEMENTS_TABLE)] = (1, dict(compact))
    return plan


def copartitioned(settings: Settings) -> list[str]:
    """Topics whose partition p all belong to the task of partition p: they must have ``partitions`` partitions."""
    return [*(settings.topic(name) for name in (*CUSTOMER_TOPICS, CALL_TOPIC, CLOCK_TOPIC)),
            changelog_name(settings, SUBSCRIBERS_TABLE)]


def problems(settings: Settings, partitions: dict[str, int], compacted: dict[str, bool]) -> list[str]:
    """What is wrong with the existing topics (name -> partition count; changelog -> compacted), one item each."""
    plan = topic_plan(settings)
    out = [f"{name} is missing" for name in plan if name not in partitions]
    for name in copartitioned(settings):
        have = partitions.get(name)
        if have is not None and have != settings.partitions:
            out.append(f"{name} has {have} partitions, not CHARTER_PARTITIONS={settings.partitions} (co-partitioned)")
    for name, is_compacted in compacted.items():
        if not is_compacted:
            out.append(f"{name} is not compacted (cleanup.policy=compact)")
    return out


async def _default_replication(admin: Any) -> int:
    """The cluster's ``default.replication.factor`` (aiokafka's CreateTopics v3 cannot ask for "the default")."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    cluster = await admin.describe_cluster()
    broker = str(cluster["brokers"][0]["node_id"])
    [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.BROKER, broker)])
    for resource in response.resources:
        for entry in resource[4]:
            if entry[0] == "default.replication.factor":
                return int(entry[1])
    return 1


async def ensure_topics_async(settings: Settings) -> None:
    """Create the missing topics (unless ``create_topics`` is off), then check every topic the worker uses;
    raises ``TopicProblem`` listing everything that is wrong."""
    # imported here: replay imports the names, not Kafka
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from streams.connection import client_options, start_client

    admin = AIOKafkaAdminClient(**client_options(settings))
    await start_client(admin, settings)
    try:
        plan = topic_plan(settings)
        existing = set(await admin.list_topics())
        missing = [name for name in plan if name not in existing]
        if missing and settings.create_topics:
            factor = settings.replication_factor or await _default_replication(admin)
            await admin.create_topics([NewTopic(name=name, num_partitions=plan[name][0], replication_factor=factor,
                                                topic_configs=plan[name][1]) for name in missing])
            log.info("created topics (replication factor %d): %s", factor, ", ".join(missing))
            missing = []
        # Topics just created are as planned (and may not be in the metadata yet): check the others.
        present = [name for name in plan if name in existing]
        partitions = {name: plan[name][0] for name in plan if name not in existing and name not in missing}
        partitions.update({d["topic"]: len(d["partitions"]) for d in await admin.describe_topics(present)
                           if d.get("partitions")})
        changelogs = [name for name in present if plan[name][1].get("cleanup.policy") == "compact"]
        compacted = {}
        if changelogs:
            for response in await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)
                                                          for name in changelogs]):
                for resource in response.resources:
                    policy = {entry[0]: entry[1] for entry in resource[4]}.get("cleanup.policy", "")
                    compacted[resource[3]] = "compact" in policy
        wrong = problems(settings, partitions, compacted)
        if wrong:
            hint = "" if settings.create_topics else " (CHARTER_CREATE_TOPICS=false: the worker creates none)"
            raise TopicProblem(f"topics not usable{hint}: " + "; ".join(wrong))
    finally:
        await admin.close()


def ensure_topics(settings: Settings) -> None:
    asyncio.run(ensure_topics_async(settings))
