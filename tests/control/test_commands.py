"""CommandRunner without sockets: ownership, the stop's grace, idempotency scoped by method."""

import asyncio

import pytest

from gateway.commands import CommandRunner, MemoryIdempotencyStore


async def test_a_started_command_outlives_whoever_waited_for_it() -> None:
    runner = CommandRunner(MemoryIdempotencyStore(), max_running=2, grace_s=1.0)
    release, done = asyncio.Event(), []

    async def command() -> str:
        await release.wait()
        done.append(1)
        return "ok"

    task = runner.start(command(), "c1")
    waiter = asyncio.ensure_future(asyncio.shield(task))
    waiter.cancel()  # the connection went away
    release.set()
    assert await task == "ok" and done == [1]


async def test_finish_lets_commands_end_then_cancels_the_late_ones() -> None:
    runner = CommandRunner(MemoryIdempotencyStore(), max_running=2, grace_s=0.2)
    quick = runner.start(asyncio.sleep(0.01, "quick"), "quick")
    stuck = runner.start(asyncio.Event().wait(), "stuck")
    assert runner.full
    await runner.finish()
    assert quick.result() == "quick" and stuck.cancelled() and not runner.full


async def test_idempotent_by_principal_method_and_key() -> None:
    runner = CommandRunner(MemoryIdempotencyStore(), max_running=8, grace_s=1.0)
    runs: list[str] = []
    gate, three_running = asyncio.Event(), asyncio.Event()

    def run(name: str):
        async def go() -> dict:
            runs.append(name)
            if len(runs) == 3:
                three_running.set()
            await gate.wait()
            return {"r": f"{name}-{len(runs)}"}
        return go

    first = asyncio.ensure_future(runner.idempotent("alice", "k", "call.dial", run("dial")))
    again = asyncio.ensure_future(runner.idempotent("alice", "k", "call.dial", run("dial")))
    other = asyncio.ensure_future(runner.idempotent("alice", "k", "sms.send", run("sms")))
    bob = asyncio.ensure_future(runner.idempotent("bob", "k", "call.dial", run("bob")))
    await three_running.wait()  # dial, sms and bob run; the repeat waits for the first dial
    gate.set()
    results = await asyncio.gather(first, again, other, bob)
    assert results[0] == results[1] and sorted(runs) == ["bob", "dial", "sms"]
    assert len({r["r"] for r in results}) == 3
    assert await runner.idempotent("alice", "k", "call.dial", run("dial")) == results[0]
    assert len(runs) == 3  # a later repeat runs nothing either


async def test_a_failed_attempt_is_not_kept() -> None:
    runner = CommandRunner(MemoryIdempotencyStore(), max_running=8, grace_s=1.0)

    async def fail() -> dict:
        raise RuntimeError("down")

    async def ok() -> dict:
        return {"ok": True}

    with pytest.raises(RuntimeError):
        await runner.idempotent("alice", "k", "call.dial", fail)
    assert await runner.idempotent("alice", "k", "call.dial", ok) == {"ok": True}
