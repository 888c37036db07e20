"""The base every vendor simulator is built on: the kit from ``SimOptions``, seeding from a
Syncgate config, the app (vendor routes, the common and the vendor's own ``/_sim/``
routes), and ``GET /_sim/objects`` as ``{"objects": [...]}``."""

from __future__ import annotations

import abc
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, ClassVar

import httpx
import msgspec
import yaml
from litestar import Litestar, Request, Response, get
from litestar.exceptions import ValidationException
from standardwebhooks.webhooks import EmptyWebhookSecretError

from adapters._simcontrol import control_handlers
from adapters._simgate import ASGIApp
from adapters._simkit import Behaviour, SimKit, SimOptions
from adapters.signing import standard_sign


def read_seed_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The Syncgate config file at ``path`` as plain YAML data. Only its shape is read here
    (``syncgate check-config`` validates it); an unreadable or unparsable file, or one
    that is not a mapping, is a ``ValueError`` naming the file."""
    file = os.fspath(path)
    try:
        with open(file, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"seed config {file}: cannot read it: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"seed config {file}: expected a mapping of config keys")
    return data


def config_names(config: dict[str, Any], vendor: str, *, param: str | None = None) -> list[str]:
    """The ids a Syncgate config names in ``vendor``, in the order first named, once each.

    Without ``param``: the system's ``scopes`` (``systems.<vendor>.scopes``) and the
    ``scope`` of every ``create_rules[].create_in[]`` entry for it (DevHelm status pages,
    incident.io incidents). With ``param``: ``params.<param>`` of those entries
    (``inbox_id`` for InboxOps). Disabled systems count too: the ids are still named. A
    named id that is not a non-empty string is a ``ValueError``."""
    found: list[str] = []

    def add(value: Any, where: str) -> None:
        if not isinstance(value, str) or not value:
            raise ValueError(f"seed config: {where}: expected an id (a string), got {value!r}")
        if value not in found:
            found.append(value)

    systems = config.get("systems")
    system = systems.get(vendor) if isinstance(systems, dict) else None
    if param is None and isinstance(system, dict):
        for index, scope in enumerate(system.get("scopes") or []):
            add(scope, f"systems.{vendor}.scopes[{index}]")
    for i, rule in enumerate(config.get("create_rules") or []):
        targets = rule.get("create_in") if isinstance(rule, dict) else None
        for j, target in enumerate(targets or []):
            if not isinstance(target, dict) or target.get("system") != vendor:
                continue
            where = f"create_rules[{i}].create_in[{j}]"
            if param is None:
                if target.get("scope") not in (None, ""):
                    add(target["scope"], where + ".scope")
            else:
                params = target.get("params")
                if isinstance(params, dict) and params.get(param) is not None:
                    add(params[param], f"{where}.params.{param}")
    return found


def seed_names(options: SimOptions, vendor: str, *, param: str | None = None) -> list[str]:
    """``config_names`` of the file ``options.seed_config`` names; [] without one."""
    if options.seed_config is None:
        return []
    return config_names(read_seed_config(options.seed_config), vendor, param=param)


def build_app(
    kit: SimKit,
    handlers: Iterable[Any],
    *,
    on_shutdown: Iterable[Callable[[], Awaitable[None]]] = (),
) -> ASGIApp:
    """The simulator's ASGI app: vendor handlers and the control surface behind the gate.

    Litestar's own validation errors are rendered in the vendor's error shape too.
    """
    from litestar.exceptions import HTTPException

    def on_http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
        code = "validation_error" if isinstance(exc, ValidationException) else "http_error"
        detail = exc.detail
        if isinstance(exc, ValidationException) and exc.extra:
            detail = f"{exc.detail}: {msgspec.json.encode(exc.extra).decode()}"
        return kit.error(exc.status_code, code, str(detail))

    app = Litestar(
        route_handlers=[*handlers, *control_handlers(kit)],
        exception_handlers={HTTPException: on_http_error},
        on_shutdown=[kit.close, *on_shutdown],
        openapi_config=None,
        debug=False,
        logging_config=None,
    )
    return kit.wrap(app)


def json_response(payload: Any, status: int = 200) -> Response[bytes]:
    """``payload`` as a JSON response; ``None`` is an empty body (a 204's)."""
    content = b"" if payload is None else msgspec.json.encode(payload)
    return Response(content, status_code=status, media_type="application/json")


def check_standard_secret(secret: str) -> None:
    """Refuse, at start rather than in a delivery task, a webhook secret that Standard
    Webhooks (Svix) cannot sign with (not base64 after the optional ``whsec_``)."""
    try:
        standard_sign(secret, "msg_check", 0, b"{}")
    except (ValueError, EmptyWebhookSecretError) as exc:
        raise ValueError(
            f"webhook_secret must be a Standard Webhooks secret (whsec_<base64>): {exc}"
        ) from None


class Simulator(abc.ABC):
    """One vendor simulator: ``.app`` to serve, ``.kit`` for the shared machinery.

    A subclass names its vendor and how keys are sent (class attributes), renders errors
    in the vendor's shape (``render_error``), makes its state (``setup``, given the ids
    the seed config names), and declares its routes (``routes``: the vendor API;
    ``control_routes``: its own ``/_sim/`` routes) and its objects (``objects``). The
    base serves those with SimKit's common ``/_sim/`` surface and ``GET /_sim/objects``
    (``{"objects": self.objects()}``), behind the kit's gate.
    """

    #: The system name (a key of ``adapters.VENDORS``).
    vendor: ClassVar[str]
    #: The header carrying the API key, and what precedes the key in it.
    auth_header: ClassVar[str] = "Authorization"
    auth_prefix: ClassVar[str] = "Bearer "
    #: The allowance the rate-limit headers advertise while no limit is set.
    default_rpm: ClassVar[int | None] = None
    #: Readings of what the vendor's documents leave open (``SimOptions.behaviour``).
    behaviours: ClassVar[Mapping[str, Behaviour]] = {}
    #: Which ids of the seed config are this vendor's (``config_names``'s ``param``).
    seed_param: ClassVar[str | None] = None

    def __init__(
        self, options: SimOptions, *, webhook_client: httpx.AsyncClient | None = None
    ) -> None:
        options = self.prepare(options)
        self.kit = SimKit.from_options(
            self.vendor,
            options,
            auth_header=self.auth_header,
            auth_prefix=self.auth_prefix,
            render_error=self.render_error,
            webhook_client=webhook_client,
            rate_limit_headers=self.rate_limit_headers,
            default_rpm=self.default_rpm,
            behaviours=dict(self.behaviours),
        )
        # The seed config is read even by a vendor it names nothing in: a bad file fails
        # at start on every simulator.
        self.setup(seed_names(options, self.vendor, param=self.seed_param))
        handlers = [*self.routes(), *self.control_routes(), self._objects_route()]
        self.app: ASGIApp = self.wrap(build_app(self.kit, handlers))

    # -- what a vendor declares ------------------------------------------------------------

    def prepare(self, options: SimOptions) -> SimOptions:
        """The options this vendor starts with (default: as given); a ``ValueError`` here
        refuses to start on options the vendor could not play."""
        return options

    @abc.abstractmethod
    def render_error(self, status: int, code: str, message: str) -> tuple[bytes, str]:
        """(status, code, message) -> (body, content type) in the vendor's error shape."""

    def rate_limit_headers(self, limit: int, remaining: int, reset_s: float) -> dict[str, str]:
        """The vendor's rate-limit headers for the window as it stands (default: none, for
        a vendor that documents none)."""
        return {}

    @abc.abstractmethod
    def setup(self, seeded: list[str]) -> None:
        """Make the vendor's state (``self.kit`` is ready); ``seeded`` is the ids the seed
        config names in this vendor (``seed_names``)."""

    @abc.abstractmethod
    def routes(self) -> list[Any]:
        """The vendor API's route handlers."""

    def control_routes(self) -> list[Any]:
        """The vendor's own ``/_sim/`` route handlers (besides the common ones)."""
        return []

    @abc.abstractmethod
    def objects(self) -> list[dict[str, Any]]:
        """Every object the simulator holds, in the vendor's JSON, for ``GET /_sim/objects``."""

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """The outermost layer of the app (default: none)."""
        return app

    # -- the common listing ----------------------------------------------------------------

    def _objects_route(self) -> Any:
        @get("/_sim/objects", sync_to_thread=False)
        def all_objects() -> Response[bytes]:
            return json_response({"objects": self.objects()})

        return all_objects
