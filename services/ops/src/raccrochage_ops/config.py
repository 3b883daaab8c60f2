"""Ops' settings, built at start-up from the environment."""

from __future__ import annotations

from pydantic import Field
from raccrochage_platform.settings import ServiceSettings


class OpsSettings(ServiceSettings):
    token_key: str = Field(
        validation_alias="RACCROCHAGE_TOKEN_KEY",
        min_length=32,
        description="key that signs the bearer tokens (raccrochage token --role ops)",
    )
    service_urls: str = Field(
        "",
        validation_alias="OPS_SERVICE_URLS",
        description="name=http://host:port,... of the services whose /metrics give their outbox; "
        "empty: read from the rig's rig.json",
    )
    health_seconds: float = Field(15, validation_alias="OPS_HEALTH_SECONDS", gt=0)
    consumer_batch: int = Field(500, validation_alias="OPS_CONSUMER_BATCH", ge=1, le=5000)

    def urls(self) -> dict[str, str]:
        """Where each service answers, from OPS_SERVICE_URLS or the rig (read at each call:
        the rig may restart a service on another port)."""
        if self.service_urls.strip():
            pairs = (item.split("=", 1) for item in self.service_urls.split(",") if item.strip())
            return {name.strip(): url.strip() for name, url in pairs}
        try:  # beside a local rig (developers); an image has no rig and lists its services
            from raccrochage_rig.state import RigState, rig_dir
        except ImportError:
            return {}

        state = RigState.load(rig_dir())
        return {name: s.http for name, s in state.services.items() if s.http and name != self.service_name}
