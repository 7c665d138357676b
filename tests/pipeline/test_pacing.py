"""Downloads paced so that over one link they arrive a part apart, in order (no batch left to convert at the end),
while connections slower than the link still run ``concurrency`` at once: shown on a fluid model of the link."""

from __future__ import annotations

import pytest

from hugflow_ray.pipeline.download import Pacing

STEP = 0.001  # seconds of the model's clock


def completions(parts: int, concurrency: int, *, link: float, connection: float, paced: bool = True) -> list[float]:
    """When each of ``parts`` downloads of one part's bytes ends, started in order with at most ``concurrency`` at
    once (by :class:`Pacing` when ``paced``, else as soon as a slot is free), over a link of ``link`` parts a second
    shared evenly, no connection faster than ``connection``."""
    pacing = Pacing(concurrency)
    now, started, ended = 0.0, 0, []
    running: dict[int, list[float]] = {}  # part -> [bytes left, start]
    while len(ended) < parts:
        while started < parts and len(running) < concurrency:
            if paced and pacing.delay(now) != 0.0:
                break
            pacing.started(now)
            running[started] = [1.0, now]
            started += 1
        share = min(connection, link / max(1, len(running)))
        now += STEP
        for part, state in list(running.items()):
            state[0] -= share * STEP
            if state[0] <= 1e-9:
                pacing.ended(now - state[1])
                ended.append(now)
                del running[part]
    return ended


def backlog(arrivals: list[float], seconds: float = 1.0) -> float:
    """Seconds of conversion left when the last part arrives, each part taking ``seconds`` on the cores: the
    sync's tail, when the conversion keeps pace with the link."""
    end = 0.0
    for arrival in arrivals:
        end = max(end, arrival) + seconds
    return end - arrivals[-1]


def test_over_a_shared_link_downloads_no_longer_end_in_batches_and_the_link_never_idles() -> None:
    batched = completions(15, 5, link=1.0, connection=float("inf"), paced=False)
    assert batched[-1] - batched[-5] < 0.01, "unpaced, the last five end together"
    paced = completions(15, 5, link=1.0, connection=float("inf"))
    assert paced[-1] == pytest.approx(15.0, abs=0.01), "one download always runs: the link never idles"
    assert len(set(round(t, 2) for t in paced)) == 15, "no two end together"
    assert backlog(paced) < 0.8 * backlog(batched) == pytest.approx(0.8 * 5), (backlog(paced), paced)


def test_connections_slower_than_the_link_still_run_concurrency_at_once() -> None:
    alone = 5.0  # one part over one connection, in seconds
    unpaced = completions(15, 5, link=100.0, connection=1 / alone, paced=False)
    paced = completions(15, 5, link=100.0, connection=1 / alone)
    assert unpaced[-1] == pytest.approx(15.0, abs=0.01)
    # the first runs alone until its time is known, and the rest start a fifth of it apart: once, at the start
    assert paced[-1] <= unpaced[-1] + 2 * alone, paced
    assert paced[-1] < 15 * alone / 2, "far faster than one at a time"


def test_the_spacing_is_a_fraction_of_the_last_download_and_a_failed_one_says_nothing() -> None:
    pacing = Pacing(4)
    assert pacing.delay(0.0) == 0.0, "nothing runs: the first starts at once"
    pacing.started(0.0)
    assert pacing.delay(1.0) is None, "until a download's time is known, the first runs alone"
    pacing.ended(None)  # a download that failed
    pacing.started(2.0)
    assert pacing.spacing is None and pacing.delay(2.5) is None
    pacing.ended(4.0)
    pacing.started(10.0)
    assert pacing.spacing == 1.0
    assert pacing.delay(10.25) == pytest.approx(0.75) and pacing.delay(11.5) == 0.0
    pacing.ended(0.02)  # small files download quickly: paced as quickly, never one at a time
    pacing.started(11.5)
    assert pacing.delay(11.501) == pytest.approx(0.004), "five milliseconds apart, four at once"
