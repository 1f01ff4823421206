"""`kpi.maintenance.list` and `.delete` over the control channel of a whole gateway: who may,
what a bad request gets, and the indicators (`kpi.get`) following each change at once (they are
computed from the store). The rule on the time (planned deleted, ongoing ended now, over refused)
is unit-tested with a fixed clock in tests/kpi/test_maintenance.py."""

from __future__ import annotations

import time

import pytest

from gateway.client import RemoteError
from gateway.timeutil import epoch_to_iso, iso_to_epoch

pytestmark = pytest.mark.peers  # the gateway's SIP worker (pjsua2)


async def test_list_and_delete_by_role_with_clear_refusals(start_gateway, connect) -> None:
    # A window over can only be declared within kpi.maintenance_grace_s of now: widened here to have
    # one to refuse the deletion of (the default refuses it: tests/kpi/test_maintenance.py, test_kpi.py)
    gw = await start_gateway(**{"kpi.maintenance_grace_s": 7300})
    root, olga, alice = (await connect(gw, "tok-admin"), await connect(gw, "tok-observer"),
                         await connect(gw, "tok-dispatcher"))
    now = time.time()
    at = lambda s: epoch_to_iso(now + s)  # noqa: E731
    over = await root.call("kpi.maintenance.add", start=at(-7200), end=at(-3600), reason="last night")
    ongoing = await root.call("kpi.maintenance.add", start=at(-60), end=at(3600), parts=["sip"], reason="upgrade")
    planned = await root.call("kpi.maintenance.add", start=at(7200), end=at(9000), reason="tomorrow")

    for reader in (olga, alice, root):  # every reading role lists
        listed = await reader.call("kpi.maintenance.list")
        assert [(w["maintenance_id"], w["state"]) for w in listed["windows"]] == [
            (over["maintenance_id"], "over"), (ongoing["maintenance_id"], "ongoing"),
            (planned["maintenance_id"], "planned")], listed
        assert listed["truncated"] is False
    assert [w["reason"] for w in (await olga.call("kpi.maintenance.list", since=at(0)))["windows"]] == [
        "upgrade", "tomorrow"]
    assert [w["reason"] for w in (await olga.call("kpi.maintenance.list", until=at(0)))["windows"]] == [
        "last night", "upgrade"]

    async def refused(client, method: str, **params) -> RemoteError:
        with pytest.raises(RemoteError) as err:
            await client.call(method, **params)
        return err.value

    assert (await refused(olga, "kpi.maintenance.list", since=at(0), until=at(0))).reason == "invalid-params"
    assert (await refused(olga, "kpi.maintenance.list", since="yesterday")).reason == "invalid-params"
    for reader in (olga, alice):  # only an admin takes a window back
        err = await refused(reader, "kpi.maintenance.delete", maintenance_id=planned["maintenance_id"])
        assert err.reason == "forbidden"
    err = await refused(root, "kpi.maintenance.delete", maintenance_id=999_999)
    assert (err.reason, err.details) == ("no-such-maintenance", {"maintenance_id": 999_999})
    assert (await refused(root, "kpi.maintenance.delete", maintenance_id=0)).reason == "invalid-params"
    err = await refused(root, "kpi.maintenance.delete", maintenance_id=over["maintenance_id"])
    assert err.reason == "maintenance-over" and err.details["end"] == over["end"]

    since = at(-7300)  # kpi.get measures from the gateway's first run: the window over is before it
    before = (await olga.call("kpi.get", since=since))["availability"]["maintenance"]
    assert [(w["maintenance_id"], w["end"]) for w in before] == [(ongoing["maintenance_id"], ongoing["end"])]
    done = await root.call("kpi.maintenance.delete", maintenance_id=ongoing["maintenance_id"])
    assert done["action"] == "ended" and iso_to_epoch(done["window"]["end"]) <= time.time()
    done_planned = await root.call("kpi.maintenance.delete", maintenance_id=planned["maintenance_id"])
    assert done_planned["action"] == "deleted" and done_planned["window"]["reason"] == "tomorrow"
    after = (await olga.call("kpi.get", since=since))["availability"]["maintenance"]
    assert [(w["maintenance_id"], w["end"]) for w in after] == [(ongoing["maintenance_id"], done["window"]["end"])]
    assert [w["state"] for w in (await olga.call("kpi.maintenance.list"))["windows"]] == ["over", "over"]
    # each change is in the audit log twice: the request, and the window as it was
    methods = [r["method"] for r in await gw.store.list_audit(limit=200)]
    assert "kpi.maintenance.deleted" in methods and "kpi.maintenance.ended" in methods
    assert methods.count("kpi.maintenance.delete") == 7  # 2 forbidden, unknown, over, 2 done, + bad id
