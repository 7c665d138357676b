"""Downloads paced so that over one link they arrive a part apart, in order (no batch left to convert at the end),
while connections slower than the link still run ``concurrency`` at once: shown on a fluid model of the link."""

from __future__ import annotations

import random

import pytest

from hugflow_ray.pipeline.download import Pacing

STEP = 0.001  # seconds of the model's clock


def completions(parts: int, concurrency: int, *, link: float, connection: float, paced: bool = True,
                uneven: float = 0.0, seed: int = 0) -> tuple[list[float], list[int]]:
    """When each of ``parts`` downloads of one part's bytes ends (by part), and how many ran at once at each step:
    started in order with at most ``concurrency`` at once (by :class:`Pacing` when ``paced``, else as soon as a
    slot is free), over a link of ``link`` parts a second, no connection faster than ``connection``. The link is
    shared evenly, or (``uneven``) as flows share one: each running download's weight drawn again every half second
    from ``1 +- uneven``."""
    pacing, draw = Pacing(concurrency), random.Random(seed)
    now, started, ended, at_once = 0.0, 0, [0.0] * parts, []
    running: dict[int, list[float]] = {}  # part -> [bytes left, its id in the pacing, its weight]
    while len(running) or started < parts:
        while started < parts and len(running) < concurrency:
            if paced and pacing.delay(now) != 0.0:
                break
            running[started] = [1.0, pacing.started(now), 1.0]
            started += 1
        at_once.append(len(running))
        if uneven and round(now / STEP) % round(0.5 / STEP) == 0:
            for state in running.values():
                state[2] = draw.uniform(1 - uneven, 1 + uneven)
        weights = sum(state[2] for state in running.values())
        now += STEP
        for part, state in list(running.items()):
            state[0] -= min(connection, link * state[2] / max(weights, 1e-9)) * STEP
            if state[0] <= 1e-9:
                pacing.ended(int(state[1]), now, 1)
                ended[part] = now
                del running[part]
    return ended, at_once


def backlog(ended: list[float], seconds: float = 1.0) -> float:
    """Seconds of conversion left when the last part arrives, each part taking ``seconds`` on the cores and opened
    in split order (a part waits for every part before it): the sync's tail, when the conversion keeps pace."""
    end = ready = 0.0
    for arrival in ended:
        ready = max(ready, arrival)
        end = max(end, ready) + seconds
    return end - max(ended)


def overtaken(ended: list[float]) -> int:
    """Pairs of parts where the later one arrived first."""
    return sum(1 for i, a in enumerate(ended) for b in ended[i + 1:] if b < a)


def test_over_a_shared_link_downloads_no_longer_end_in_batches_and_the_link_never_idles() -> None:
    batched, _ = completions(15, 5, link=1.0, connection=float("inf"), paced=False)
    assert batched[-1] - batched[-5] < 0.01, "unpaced, the last five end together"
    paced, at_once = completions(15, 5, link=1.0, connection=float("inf"))
    assert paced[-1] == pytest.approx(15.0, abs=0.01), "one download always runs: the link never idles"
    assert len({round(t, 2) for t in paced}) == 15, "no two end together"
    assert backlog(paced) < 0.8 * backlog(batched) == pytest.approx(0.8 * 5), (backlog(paced), paced)
    assert max(at_once[len(at_once) // 2:]) == 2, "more at once bring nothing over one link: two run at once"


def test_over_a_link_shared_unevenly_the_parts_arrive_in_order_and_the_tail_is_one_part() -> None:
    for seed in range(4):
        unpaced, _ = completions(15, 5, link=1.0, connection=float("inf"), paced=False, uneven=0.8, seed=seed)
        paced, _ = completions(15, 5, link=1.0, connection=float("inf"), uneven=0.8, seed=seed)
        assert max(paced) == pytest.approx(15.0, abs=0.01), "the link never idles"
        # the first download runs alone, then five at once until their times show they share one link
        assert overtaken(paced[8:]) == 0 < overtaken(unpaced[8:]), (seed, paced, unpaced)
        assert backlog(paced, 0.6) < 0.7 * backlog(unpaced, 0.6), (seed, paced, unpaced)


def test_connections_slower_than_the_link_still_run_concurrency_at_once() -> None:
    alone = 5.0  # one part over one connection, in seconds
    unpaced, _ = completions(15, 5, link=100.0, connection=1 / alone, paced=False)
    paced, at_once = completions(15, 5, link=100.0, connection=1 / alone)
    assert max(unpaced) == pytest.approx(15.0, abs=0.01)
    # the first runs alone until its time is known, and the rest start a fifth of it apart: once, at the start
    assert max(paced) <= max(unpaced) + 2 * alone, paced
    assert max(paced) < 15 * alone / 2, "far faster than one at a time"
    assert max(at_once) == 5


def test_the_overlap_is_what_more_downloads_at_once_bring_and_a_failed_one_says_nothing() -> None:
    pacing = Pacing(4)
    assert pacing.delay(0.0) == 0.0, "nothing runs: the first starts at once"
    failed = pacing.started(0.0)
    assert pacing.delay(1.0) is None, "until a download's time is known, the first runs alone"
    pacing.ended(failed, 2.0, None)
    first = pacing.started(2.0)
    assert pacing.spacing is None and pacing.delay(2.5) is None
    pacing.ended(first, 6.0, 4_000)  # alone: 1,000 bytes a second
    assert (pacing.overlap, pacing.spacing) == (4, 1.0), "then as many at once as allowed, a quarter of it apart"
    a = pacing.started(10.0)
    assert pacing.delay(10.25) == pytest.approx(0.75) and pacing.delay(11.5) == 0.0
    b = pacing.started(11.0)
    pacing.ended(a, 18.0, 4_000)  # beside one other for 7 of its 8 seconds, at half the speed: one link
    assert pacing.overlap == 2 and pacing.spacing == 4.0
    assert pacing.delay(18.0) == pytest.approx(0.0) and pacing.delay(18.0) is not None
    c = pacing.started(18.0)
    assert pacing.delay(19.0) is None, "two run: the next waits for one to end"
    pacing.ended(b, 19.0, 8_000)  # beside another all along, at the speed of one alone: connections limit
    assert pacing.overlap == 3
    d = pacing.started(19.0)
    pacing.ended(d, 19.02, 20)  # small files are quick: paced as quickly, several at once
    assert (pacing.overlap, pacing.spacing) == (3, pytest.approx(0.02 / 3))
    pacing.ended(c, 20.0, 2_000)


def test_a_small_file_is_measured_against_files_no_bigger_than_itself() -> None:
    pacing = Pacing(5)
    big = pacing.started(0.0)
    pacing.ended(big, 1.0, 100_000_000)  # alone: 100 MB a second
    small = [pacing.started(1.0 + i / 100) for i in range(3)]
    for i, download in enumerate(small):  # three at once, each 0.1 s for 1 MB: latency, not the link, limits them
        pacing.ended(download, 1.1 + i / 100, 1_000_000)
    assert pacing.overlap >= 3, "ten times slower than the big file, but not slowed by each other"
    shared = [pacing.started(2.0), pacing.started(2.0)]
    for download in shared:  # two at once, each at half the speed the small ones had: one link
        pacing.ended(download, 2.2, 1_000_000)
    assert pacing.overlap == 2
