# SPDX-License-Identifier: MIT
# Two Python threads read two documents on one shared model at the same time: the GIL is released
# while pith reads, so their computations overlap. One Reader refuses a second thread; Ctrl-C stops a feed.
import os
import signal
import threading

import pytest

import pith


def test_two_readers_on_one_model_run_in_parallel(model):
    docs = [pith.toy_document("kv", 16000, seed) for seed in (1, 2)]
    readers = [pith.Reader(model, policy="citrus-shared", budget=64, chunk=64, citrus_pool=7, instruction=d.instruction,
                           max_answer_tokens=8, threads=1) for d in docs]
    barrier = threading.Barrier(2)
    errors = []

    def read(reader, doc):
        try:
            barrier.wait()
            reader.feed(doc.ids)
            reader.answer(len(doc.answer))
        except Exception as e:  # reported below: an assertion in a thread would be lost
            errors.append(e)

    threads = [threading.Thread(target=read, args=(r, d)) for r, d in zip(readers, docs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    # Each reader's feed computed while the other's did: with the GIL held through a feed, the other
    # thread could not even enter its own until the first returned.
    (a_start, a_end), (b_start, b_end) = (r._busy_intervals()[0] for r in readers)
    assert a_start < b_end and b_start < a_end, "the two readings did not overlap"
    # The answers are those of the same readings done one after the other.
    for reader, doc in zip(readers, docs):
        alone = pith.Reader(model, policy="citrus-shared", budget=64, chunk=64, citrus_pool=7,
                            instruction=doc.instruction, max_answer_tokens=8, threads=1)
        alone.feed(doc.ids)
        alone.answer(len(doc.answer))
        assert alone.answer_ids == reader.answer_ids


def test_a_reader_used_by_two_threads_at_once_is_refused(model):
    doc = pith.toy_document("kv", 8000, 3)
    r = pith.Reader(model, policy="streaming", budget=64, chunk=64, instruction=doc.instruction, threads=1)
    inside = threading.Event()
    release = threading.Event()
    refused = []

    def slow_progress(done):
        if not inside.is_set():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=lambda: r.feed(doc.ids, progress=slow_progress))
    t.start()
    inside.wait(10)
    try:
        r.feed(doc.ids)
    except pith.ArgumentError as e:
        refused.append(str(e))
    release.set()
    t.join()
    assert refused and "in use by another thread" in refused[0]


def test_ctrl_c_interrupts_a_long_feed(model):
    doc = pith.toy_document("kv", 400000, 5)  # seconds of reading; interrupted after 0.2 s
    r = pith.Reader(model, policy="streaming", budget=64, chunk=64, instruction=doc.instruction, threads=1)
    timer = threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            r.feed(doc.ids)
    finally:
        timer.cancel()
    assert 0 < r.stats.tokens_read < len(doc.ids)
    with pytest.raises(pith.ArgumentError, match="make a new Reader"):
        r.answer(4)
