# SPDX-License-Identifier: MIT
# README.md's Python examples run as written, from the repository's root (their paths are relative to it).
import os
import re

import pith

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def python_blocks():
    with open(os.path.join(ROOT, "README.md")) as f:
        return re.findall(r"^```python\n(.*?)^```$", f.read(), flags=re.MULTILINE | re.DOTALL)


def test_readme_python_example_runs_and_answers(monkeypatch, capsys):
    blocks = python_blocks()
    assert len(blocks) == 1  # the "Python" section's example
    monkeypatch.chdir(ROOT)
    namespace = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    printed = capsys.readouterr().out.splitlines()
    # The demo's kind of document, 100,000 tokens: CItruS pooled over 7 states at a budget of 64 answers it.
    assert namespace["reader"].answer_ids == namespace["doc"].answer
    assert " True ReaderStats(tokens_read=100000," in printed[0]
    kept = namespace["reader"].kept_positions(0, 0)
    assert 0 < kept.size <= 64 and kept.max() < 100_000 and printed[1].startswith("[")
    assert isinstance(namespace["keep_newest"](list(range(100)), None, 64, 0), type(namespace["np"].arange(1)))
    assert isinstance(namespace["model"], pith.Model)
