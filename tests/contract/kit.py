"""What the contract suite needs to know about one vendor, beyond the Adapter interface.

Each vendor has one ``kit_<vendor>.py`` beside this file exposing ``KIT``, an instance of
a ``VendorKit`` subclass. Everything vendor-specific the generic suite needs lives there:
how to seed an object in the simulator (as the vendor itself, or a person in its UI,
would make it), a human change, how to make the simulator send a webhook, and sample
create/update values. ``sim`` is an ``httpx.AsyncClient`` whose base URL is the simulator.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from adapters._simkit import SimOptions
from adapters.base import AdapterSettings
from app.model import CreateTarget, Fields, ObjectRef

#: Webhook retries in tests follow the vendor's real schedule, compressed: a day of retries
#: plays in under a second, so a test that flushes deliveries never waits on the clock.
WEBHOOK_TIME_SCALE = 1e-5


class VendorKit:
    system: ClassVar[str]
    #: API key the simulator is started with, in the vendor's own key format.
    api_key: ClassVar[str]
    #: A webhook secret in the vendor's format (``whsec_<base64>`` for Standard Webhooks).
    webhook_secret: ClassVar[str]
    #: A second, different valid secret (rotation / wrong-secret tests).
    other_secret: ClassVar[str]
    #: Header names that carry the signature; removing any one must fail verification.
    signature_headers: ClassVar[tuple[str, ...]]
    #: Whether signatures carry a timestamp that can go stale.
    timestamped: ClassVar[bool] = True
    #: The rate-limit headers on every authenticated response (none where undocumented).
    rate_limit_headers: ClassVar[tuple[str, ...]] = ()
    #: Scopes the adapter lists (DevHelm status page ids, ...); () where none.
    scopes: ClassVar[tuple[str, ...]] = ()
    #: Where ``create`` puts objects; None where the vendor cannot create.
    create_target: ClassVar[CreateTarget | None]
    create_fields: ClassVar[Fields]
    #: A writable change (differs from what ``seed`` makes).
    update_fields: ClassVar[Fields]

    def settings(self, base_url: str, /, **overrides: Any) -> AdapterSettings:
        """Adapter settings pointing at the simulator, with this kit's secrets."""
        values: dict[str, Any] = {
            "base_url": base_url,
            "api_key": self.api_key,
            "webhook_secrets": (self.webhook_secret,),
            "scopes": self.scopes,
            "page_size": 2,
        }
        values.update(overrides)
        return AdapterSettings(**values)

    def api_headers(self) -> dict[str, str]:
        """Headers that authenticate a call to the vendor's API, sent the vendor's way."""
        return {"Authorization": f"Bearer {self.api_key}"}

    def signature_headers_under(self, behaviour: dict[str, Any]) -> tuple[str, ...]:
        """The signature headers the simulator sends under ``behaviour``."""
        return self.signature_headers

    def retry_after_under(self, behaviour: dict[str, Any]) -> bool:
        """Whether a 429 carries ``Retry-After`` under ``behaviour``."""
        return True

    def timestamped_under(self, behaviour: dict[str, Any]) -> bool:
        """Whether signatures carry a timestamp under ``behaviour``."""
        return self.timestamped

    def sim_options(self, **overrides: Any) -> SimOptions:
        """Simulator options for tests: this kit's key and secret, fast webhook retries."""
        values: dict[str, Any] = {
            "api_key": self.api_key,
            "webhook_secret": self.webhook_secret,
            "webhook_time_scale": WEBHOOK_TIME_SCALE,
        }
        values.update(overrides)
        return SimOptions(**values)

    def simulator(self, **options: Any) -> Any:
        """A fresh simulator object (with ``.app`` and ``.kit``)."""
        raise NotImplementedError

    async def seed(self, sim: httpx.AsyncClient, n: int = 0) -> ObjectRef:
        """Make one object in the simulator as the vendor or a person would (``n`` varies
        titles); return its reference."""
        raise NotImplementedError

    async def human_change(self, sim: httpx.AsyncClient, ref: ObjectRef) -> None:
        """Change the object's status as a person in the vendor UI would."""
        raise NotImplementedError

    async def trigger_webhook(self, sim: httpx.AsyncClient) -> None:
        """Make the simulator send (at least) one signed webhook delivery."""
        raise NotImplementedError
