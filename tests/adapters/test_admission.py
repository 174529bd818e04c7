"""The process's admission: slots, a bounded line for requests a person waits on, an unbounded one
for acknowledged callbacks, and the strain signal an Official Account passive reply races."""

from __future__ import annotations

import asyncio
import time

import pytest

from adapters.admission import Admission, Busy, answering_limit

GUARD_S = 5.0
"""Only stops a broken test from hanging."""


async def hold(admission: Admission, release: asyncio.Event) -> None:
    async with admission.admit():
        await release.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_answering_limit_by_kind_of_answer() -> None:
    assert answering_limit(llm=True) == 16
    assert answering_limit(llm=False) == 4


def test_a_nonsense_admission_is_refused() -> None:
    with pytest.raises(ValueError, match="limit >= 1"):
        Admission(0)


async def test_past_the_queue_a_request_is_refused_at_once() -> None:
    admission, release = Admission(2, queue=1, wait=GUARD_S), asyncio.Event()
    holders = [asyncio.create_task(hold(admission, release)) for _ in range(3)]
    await settle()
    assert (admission.running, admission.waiting) == (2, 1)
    started = time.monotonic()
    with pytest.raises(Busy) as refused:
        async with admission.admit():
            pytest.fail("admitted past the queue")
    assert time.monotonic() - started < 1.0  # at once, not after the wait
    assert refused.value.retry_after == 5
    assert admission.shed == 1
    release.set()
    await asyncio.wait_for(asyncio.gather(*holders), GUARD_S)
    assert (admission.running, admission.waiting, admission.demand) == (0, 0, 0)


async def test_a_queued_request_gives_up_after_its_wait() -> None:
    admission, release = Admission(1, queue=4, wait=0.2), asyncio.Event()
    holder = asyncio.create_task(hold(admission, release))
    await settle()
    with pytest.raises(Busy, match=r"within 0\.2 s") as refused:
        async with admission.admit():
            pytest.fail("admitted while the slot was held")
    assert refused.value.retry_after == 1
    assert admission.waiting == 0
    release.set()
    await holder
    async with admission.admit():  # the slot is free again
        assert admission.running == 1


async def test_queued_requests_get_slots_in_order() -> None:
    admission, release = Admission(1, queue=4, wait=GUARD_S), asyncio.Event()
    order: list[int] = []

    async def ask(n: int) -> None:
        async with admission.admit():
            order.append(n)
            await release.wait()

    tasks = []
    for n in range(4):
        tasks.append(asyncio.create_task(ask(n)))
        await settle()
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), GUARD_S)
    assert order == [0, 1, 2, 3]


async def test_callbacks_line_up_without_bound_and_count_at_once() -> None:
    admission, release = Admission(1, queue=0, wait=0.1), asyncio.Event()
    ran: list[int] = []

    async def work(n: int) -> None:
        async with ticket_for[n]:
            ran.append(n)
            await release.wait()

    ticket_for = [admission.line_up() for _ in range(50)]
    # Counted before any task ran: the next request already sees the line.
    assert admission.saturated
    assert admission.background_waiting == 50
    tasks = [asyncio.create_task(work(n)) for n in range(50)]
    await settle()
    with pytest.raises(Busy):  # an interactive request is shed, the callbacks are not
        async with admission.admit():
            pass
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), GUARD_S)
    assert ran == list(range(50))
    assert admission.demand == 0


async def test_an_abandoned_ticket_leaves_the_line() -> None:
    admission = Admission(1)
    ticket = admission.line_up()
    assert admission.saturated
    ticket.abandon()
    ticket.abandon()  # idempotent
    assert not admission.saturated
    assert admission.demand == 0


async def test_cancelled_while_in_line_gives_the_place_back() -> None:
    admission, release = Admission(1), asyncio.Event()
    holder = asyncio.create_task(hold(admission, release))
    await settle()
    ticket = admission.line_up()

    async def wait_turn() -> None:
        async with ticket:
            pytest.fail("got a slot that was held")

    waiter = asyncio.create_task(wait_turn())
    await settle()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert admission.background_waiting == 0
    release.set()
    await holder
    assert admission.demand == 0


async def test_strain_resolves_when_work_has_to_queue() -> None:
    admission, release = Admission(2, queue=4, wait=GUARD_S), asyncio.Event()
    strained = admission.strained()
    holders = [asyncio.create_task(hold(admission, release)) for _ in range(2)]
    await settle()
    assert admission.saturated
    assert not strained.done()
    holders.append(asyncio.create_task(hold(admission, release)))
    await settle()
    assert strained.done()
    assert admission.strained().done()  # while the line lasts, at once
    release.set()
    await asyncio.wait_for(asyncio.gather(*holders), GUARD_S)
    assert not admission.strained().done()  # a new calm spell
