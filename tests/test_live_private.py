"""Every private attribute of faust-streaming or aiokafka that the worker uses still exists in the installed
versions (streams/live/progress.py lists them). A failure names the attribute: read the new version's source
before changing the pinned range in pyproject.toml."""

import asyncio

import faust
import pytest
from aiokafka import AIOKafkaConsumer

from streams.live.progress import PRIVATE_ATTRIBUTES


def _instances() -> dict[str, object]:
    """One real object of each owner class named in PRIVATE_ATTRIBUTES (nothing is connected)."""

    async def build() -> dict[str, object]:
        app = faust.App("private-attributes-probe", broker="kafka://127.0.0.1:1")
        consumer = app.consumer
        kafka = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
        try:
            return {
                "faust.transport.consumer.Consumer": consumer,
                "faust.transport.drivers.aiokafka.Consumer": consumer,
                "faust.transport.drivers.aiokafka.AIOKafkaConsumerThread": consumer._thread,
                "aiokafka.AIOKafkaConsumer": kafka,
                "aiokafka.consumer.subscription_state.SubscriptionState": kafka._subscription,
                "mode.threads.ServiceThread": consumer._thread,
                "mode.services.Service": consumer,
            }
        finally:
            await kafka.stop()

    return asyncio.run(build())


INSTANCES = _instances()


@pytest.mark.parametrize(("owner", "attribute"), PRIVATE_ATTRIBUTES, ids=[f"{o}.{a}" for o, a in PRIVATE_ATTRIBUTES])
def test_private_attribute_is_still_there(owner: str, attribute: str):
    module, _, name = owner.rpartition(".")
    cls = __import__(module, fromlist=[name]).__dict__[name]
    obj = INSTANCES.get(owner, cls)  # a method is checked on its class
    assert obj is cls or isinstance(obj, cls), f"{owner} is not what it was"
    assert hasattr(obj, attribute) or hasattr(type(obj), attribute), (
        f"{owner}.{attribute} is gone: streams/live/progress.py relies on it (faust-streaming/aiokafka changed)")
