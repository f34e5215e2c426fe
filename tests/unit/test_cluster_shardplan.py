"""The runner's choices for a shard's batch (pure: no Ray session, no sockets)."""

from __future__ import annotations

from pathlib import Path

from segdl.cluster.shardplan import journal_mode, run_batch, shard_batch
from segdl.disk.journal import JOURNAL_NAME
from segdl.run.shards import iter_shards


def test_a_destination_with_a_journal_is_read_by_every_shard(tmp_path: Path) -> None:
    """Files an earlier run finished are known from the journal before any request; a
    destination without one is only appended to."""
    assert journal_mode(tmp_path) == "append"
    (tmp_path / JOURNAL_NAME).write_text("")
    assert journal_mode(tmp_path) is True


def test_a_run_s_shards_build_no_small_file_events_and_read_the_journal_as_dest_says(
    tmp_path: Path,
) -> None:
    """Every shard starts from the run's settings: its files in parallel, pipelined as
    asked, no per-file events, and the journal as the destination had it at the start."""
    fresh = run_batch(tmp_path, parallel=8, pipelining=False)
    assert fresh == {"parallel": 8, "pipelining": False, "lean_events": False, "journal": "append"}
    (tmp_path / JOURNAL_NAME).write_text("")
    assert run_batch(tmp_path, parallel=8, pipelining=True)["journal"] is True


def test_only_a_first_attempt_into_dest_itself_skips_reading_the_journal() -> None:
    """A retry (its lost attempt finished files) and a shard writing into its own ``dir=``s
    read the journal; a first attempt into a fresh destination does not."""
    batch = {"parallel": 4, "journal": "append"}
    plain = next(iter_shards(["http://h/a", "http://h/b"], 2))
    own_dir = next(iter_shards(["http://h/a", "  dir=sub"], 2))
    assert shard_batch(batch, plain, retry=False)["journal"] == "append"
    assert shard_batch(batch, plain, retry=True)["journal"] is True
    assert shard_batch(batch, own_dir, retry=False)["journal"] is True
    read = {"parallel": 4, "journal": True}
    assert shard_batch(read, plain, retry=False)["journal"] is True
