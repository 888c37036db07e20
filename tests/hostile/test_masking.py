"""``/admin/config`` masks secrets by parsing, in every form they come in: database URL
passwords (holding ``/``, ``?``, ``#`` or ``@``, or passed as ``?password=``), userinfo
in ``base_url`` and ``proxy``, adapter options declared secret, URLs with userinfo and
values under secret-sounding keys among options and ``params``."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Annotated

import msgspec
import pytest

from adapters.base import AdapterOptions
from app.config import dump_effective, load_config
from app.config.report import mask_database_url
from app.gateway import known_systems
from tests.blackbox import admin_client
from tests.hostile.support import gateway

SECRET = "Sup3r"  # every secret below contains it; no masked dump may


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://sg:Sup3r@db:5432/sg", "postgresql://sg:***@db:5432/sg"),
        ("postgresql://sg:Sup3r/x@db/sg", "postgresql://sg:***@db/sg"),
        ("postgresql://sg:Sup3r?x@db/sg", "postgresql://sg:***@db/sg"),
        ("postgresql://sg:Sup3r#x@db/sg", "postgresql://sg:***@db/sg"),
        ("postgresql://sg:Sup3r@x@db/sg", "postgresql://sg:***@db/sg"),
        ("postgresql://sg:Sup3r%40x@db/sg", "postgresql://sg:***@db/sg"),
        (
            "postgresql+asyncpg://sg@db/sg?password=Sup3r&ssl=require",
            "postgresql+asyncpg://sg@db/sg?password=***&ssl=require",
        ),
        (
            "postgresql://db/sg?user=sg&sslpassword=Sup3r",
            "postgresql://db/sg?sslpassword=***&user=sg",
        ),
        ("sqlite:///var/syncgate.db", "sqlite:///var/syncgate.db"),
    ],
)
def test_database_urls_are_masked_by_parsing(tmp_path: Path, url: str, shown: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"database_url: {url!r}\n")
    dumped = dump_effective(load_config(path, {}))
    assert dumped["database_url"] == shown
    assert SECRET not in repr(dumped)


def test_a_database_url_sqlalchemy_cannot_parse_is_masked_whole() -> None:
    # the config checker refuses one, but the dump must not depend on it
    assert mask_database_url("not a url Sup3r") == "***"


class SecretOptions(AdapterOptions, frozen=True):
    """An adapter's options with one declared secret under a harmless name."""

    org_id: str = ""
    signing_material: Annotated[str, msgspec.Meta(extra={"secret": True})] = ""
    callback: str = ""
    timeout_s: int = 0


def test_userinfo_declared_secrets_and_secret_keys_are_masked(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        textwrap.dedent(
            """
            systems:
              inboxops:
                base_url: "https://ops:Sup3r/x#y@inboxops.example/api"
                api_key_env: IO_KEY
                proxy: "http://proxyuser:Sup3r?z@proxy.internal:3128"
                options:
                  org_id: acme
                  signing_material: Sup3r-material
                  callback: "https://Sup3r-token@hooks.example/in"
                  timeout_s: 3
              devhelm:
                base_url: "https://Sup3rToken@devhelm.example"
                api_key_env: DH_KEY
                scopes: [page]
            create_rules:
              - name: r
                system: devhelm
                create_in:
                  - system: inboxops
                    params: {inbox_id: box, credentials: Sup3r-cred, notify: "https://a:Sup3r@n.example"}
            """
        )
    )
    known = known_systems()
    known["inboxops"] = msgspec.structs.replace(known["inboxops"], options=SecretOptions)
    dumped = dump_effective(load_config(path, known), known)
    inboxops = dumped["systems"]["inboxops"]
    assert inboxops["base_url"] == "https://***:***@inboxops.example/api"
    assert inboxops["proxy"] == "http://***:***@proxy.internal:3128"
    assert inboxops["options"] == {
        "org_id": "acme",
        "signing_material": "***",
        "callback": "https://***@hooks.example/in",
        "timeout_s": 3,
    }
    assert dumped["systems"]["devhelm"]["base_url"] == "https://***@devhelm.example"
    assert dumped["create_rules"][0]["create_in"][0]["params"] == {
        "inbox_id": "box",
        "credentials": "***",
        "notify": "https://***:***@n.example",
    }
    assert SECRET not in repr(dumped)


def test_a_path_with_an_at_sign_is_not_taken_for_userinfo(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "systems:\n  inboxops:\n    base_url: 'https://inboxops.example:8443/u/@team'\n"
        "    api_key_env: IO_KEY\n"
    )
    dumped = dump_effective(load_config(path, known_systems()), known_systems())
    assert dumped["systems"]["inboxops"]["base_url"] == "https://inboxops.example:8443/u/@team"


@pytest.mark.slow
async def test_admin_config_shows_no_secret(tmp_path: Path) -> None:
    overrides = {
        "systems": {
            "inboxops": {
                "base_url": "http://ops:Sup3r%2Fx@127.0.0.1:9",
                "proxy": "http://proxyuser:Sup3r@127.0.0.1:9",
            }
        }
    }
    async with gateway(tmp_path, **overrides) as gw, admin_client(gw.url) as admin:
        response = await admin.get("/config")
        assert response.status_code == 200
        inboxops = response.json()["config"]["systems"]["inboxops"]
        assert inboxops["base_url"] == "http://***:***@127.0.0.1:9"
        assert inboxops["proxy"] == "http://***:***@127.0.0.1:9"
        assert SECRET not in response.text
