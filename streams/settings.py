"""Worker configuration from environment variables (``CHARTER_*``), via pydantic-settings."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHARTER_", extra="ignore")

    bootstrap_servers: str | None = Field(
        None, description="Kafka bootstrap servers, e.g. 127.0.0.1:9092. Unset: the local broker is started.")
    partitions: int = Field(8, ge=1, description="partition count of the input, clock and state topics")
    charter: str = Field("alice-2007", description="shipped charter name or path of a charter YAML file")
    app_id: str = Field("charter-streams", description="Faust app id: consumer group and internal topic prefix")
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    tick_interval: float = Field(0.1, gt=0, description="seconds between clock ticks per partition")
    data_dir: Path = Field(Path(".charter-data"), description="Faust data directory (state is in Kafka changelogs)")
    replication_factor: int = Field(1, ge=1, description="replication factor of topics the worker creates")
    session_timeout: float = Field(10.0, gt=0, description="consumer group session timeout, seconds")
    flush_every: int = Field(500, ge=1, description="events applied per partition before outputs are flushed")
    topic_prefix: str = Field("", description="prefix of every topic name (namespaces a deployment or a test)")
    instance_id: str | None = Field(
        None, description="static group membership (Kafka group.instance.id): a stable, unique name per worker, e.g. "
        "the pod or host name. A restarted worker then takes its partitions back at once instead of after the "
        "session timeout; a worker that stops holds them until the session timeout")
    log_level: str = "info"
    web_port: int | None = Field(None, description="Faust web server port (metrics); unset: no web server")

    def topic(self, name: str) -> str:
        return self.topic_prefix + name

    def unprefixed(self, name: str) -> str:
        return name[len(self.topic_prefix):] if self.topic_prefix and name.startswith(self.topic_prefix) else name

    @property
    def broker_url(self) -> str:
        servers = self.bootstrap_servers or "127.0.0.1:9092"
        return ";".join(f"kafka://{s.strip()}" for s in servers.split(",") if s.strip())
