"""MindSpore distributed checkpoints: automap's reader against MindSpore's own merging of the same rank files.

The rank files are cut by `mindspore.transform_checkpoints` from a full checkpoint following strategy files
written with MindSpore's protobuf class (`tests/_distributed_fixtures.py`): tensor-parallel cuts along either
axis and along one axis by two device axes (a `Layout`), optimizer-parallel slices, replicated parameters,
training state, and a pipeline of two stages sharing a parameter. The truth is `transform_checkpoints`
merging them back, and `merge_sliced_parameter` for an uneven cut.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from automap import CheckpointFormatError
from automap.io import ms_distributed
from automap.io._ms_strategy import is_strategy_file
from tests._distributed_fixtures import (
    MS_LAYOUTS,
    MS_STAGES,
    MindSporeCluster,
    mindspore_cluster,
    strategy_json,
    strategy_message,
)

ms = pytest.importorskip("mindspore")

pytestmark = pytest.mark.mindspore


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> MindSporeCluster:
    return mindspore_cluster(tmp_path_factory.mktemp("ms"))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> MindSporeCluster:
    return mindspore_cluster(tmp_path_factory.mktemp("ms_pipeline"), pipeline=True)


@pytest.fixture
def copy(cluster: MindSporeCluster, tmp_path: Path) -> Path:
    """A copy of the rank folders and strategy a test may change (same layout: checkpoint/ beside strategy/)."""
    shutil.copytree(cluster.checkpoint, tmp_path / "checkpoint")
    shutil.copytree(cluster.strategies[0].parent, tmp_path / "strategy")
    return tmp_path / "checkpoint"


def _values(record: Any) -> np.ndarray:
    """What automap read, as MindSpore shows it: bfloat16 (raw bits in automap) as float32 values."""
    array = record.read()
    if record.dtype == "bfloat16":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _assert_equals_merge(table: Any, cluster: MindSporeCluster) -> None:
    records = {r.name: r for r in (*table.params, *table.excluded)}
    assert set(records) == set(cluster.merged)
    for name, truth in cluster.merged.items():
        array = _values(records[name])
        assert array.shape == truth.shape and array.dtype == truth.dtype, name
        assert array.tobytes() == truth.tobytes(), name
        assert np.array_equal(array, np.asarray(cluster.original[name], dtype=array.dtype)), name


def test_every_tensor_equals_mindspore_merge(cluster: MindSporeCluster) -> None:
    table = ms_distributed.read(cluster.checkpoint)
    assert table.format == "mindspore-distributed" and table.framework == "mindspore"
    _assert_equals_merge(table, cluster)
    assert {r.name for r in table.excluded} == {
        "adam_m.layers.0.attention.wo.weight",
        "adam_v.layers.0.attention.wq.weight",
        "global_step",
    }
    expected = {name: spec[1] for name, spec in MS_LAYOUTS.items()}
    assert {r.name: r.dtype for r in table.params} == {n: d for n, d in expected.items() if n in table}
    assert table.names[0] == "embedding.word_embeddings.embedding_table"  # rank 0's file order


def test_slices_of_every_kind_are_present(cluster: MindSporeCluster) -> None:
    """Each rank holds a part (else the test above proves less): shapes as MindSpore cut them."""
    from automap.io.mindspore import read as read_ckpt

    rank_0 = read_ckpt(next((cluster.checkpoint / "rank_0").glob("*.ckpt")))
    shapes = {r.name: r.shape for r in (*rank_0.params, *rank_0.excluded)}
    assert shapes["embedding.word_embeddings.embedding_table"] == (4, 4)  # rows by two device axes
    assert shapes["layers.0.attention.wq.weight"] == (4, 12)  # rows by model parallel
    assert shapes["layers.0.attention.wo.weight"] == (6, 4)  # columns, and rows by optimizer parallel
    assert shapes["layers.0.norm.gamma"] == (3,)  # optimizer parallel over all 4 ranks
    assert shapes["layers.0.norm.beta"] == (12,)  # replicated


def test_pipeline_stages_from_their_own_files_or_joined(pipeline: MindSporeCluster) -> None:
    assert len(pipeline.strategies) == 2  # one file per stage, found in ../strategy
    _assert_equals_merge(ms_distributed.read(pipeline.checkpoint), pipeline)
    _assert_equals_merge(ms_distributed.read(pipeline.checkpoint, strategy=pipeline.joined), pipeline)
    files = sorted(pipeline.checkpoint.glob("rank_*/*.ckpt"))
    _assert_equals_merge(ms_distributed.read(files, strategy=pipeline.strategies[0].parent), pipeline)


def test_json_strategies(pipeline: MindSporeCluster, tmp_path: Path) -> None:
    """Strategy files saved as JSON (`save_file` ending in .json), one per stage; MindSpore parses them too."""
    for stage, layouts in MS_STAGES.items():
        file = tmp_path / f"strategy_{stage}.json"
        file.write_text(json.dumps(strategy_json(layouts, stage)))
        assert set(ms.build_searched_strategy(str(file))) == set(layouts)
    _assert_equals_merge(ms_distributed.read(pipeline.checkpoint, strategy=tmp_path), pipeline)
    wrong = strategy_json(MS_STAGES[1], 1)
    wrong["parallel_layout_item"]["layers.1.norm.gamma"]["tensor_shape"] = [24]
    (tmp_path / "strategy_1.json").write_text(json.dumps(wrong))
    with pytest.raises(
        CheckpointFormatError,
        match=r"'layers\.1\.norm\.gamma': the strategy records its shape as \[24\], but .* makes it \[12\]",
    ):
        ms_distributed.read(pipeline.checkpoint, strategy=tmp_path)


def test_a_missing_stage_file_is_refused(pipeline: MindSporeCluster) -> None:
    with pytest.raises(CheckpointFormatError, match=r"describes pipeline stages \[1\] but not stage 0"):
        ms_distributed.read(pipeline.checkpoint, strategy=pipeline.strategies[1])


def test_pipeline_stages_hold_their_own_parameters(pipeline: MindSporeCluster) -> None:
    from automap.io.mindspore import read as read_ckpt

    stage_1 = read_ckpt(next((pipeline.checkpoint / "rank_3").glob("*.ckpt")))
    assert set(stage_1.names) == set(MS_STAGES[1])


def test_moments_follow_their_parameter_when_the_strategy_omits_them(cluster: MindSporeCluster, copy: Path) -> None:
    """MindSpore saves the layouts of trainable parameters only (by default), yet cuts their moments alike."""
    trainable = {n: spec for n, spec in MS_LAYOUTS.items() if not n.startswith("adam_")}
    (copy.parent / "strategy" / "strategy.ckpt").write_bytes(strategy_message(trainable, 0).SerializeToString())
    table = ms_distributed.read(copy)
    _assert_equals_merge(table, cluster)
    assert table.excluded[0].shape == (12, 8)


def test_data_files(pipeline: MindSporeCluster, tmp_path: Path) -> None:
    files = ms_distributed.data_files(pipeline.checkpoint)
    assert files == [*sorted(pipeline.checkpoint.glob("rank_*/*.ckpt")), *pipeline.strategies]
    assert ms_distributed.data_files(tmp_path) == []


def test_sniff(cluster: MindSporeCluster, tmp_path: Path) -> None:
    assert ms_distributed.sniff(cluster.checkpoint)
    assert not ms_distributed.sniff(cluster.checkpoint / "rank_0")
    assert not ms_distributed.sniff(tmp_path)
    assert is_strategy_file(cluster.strategies[0])
    assert not is_strategy_file(next((cluster.checkpoint / "rank_0").glob("*.ckpt")))


def test_reading_is_lazy(cluster: MindSporeCluster, copy: Path) -> None:
    """Listing reads no tensor: bytes changed afterwards show up in what is read, and only where changed."""
    table = ms_distributed.read(copy)
    rank_1 = next((copy / "rank_1").glob("*.ckpt"))
    raw = bytearray(rank_1.read_bytes())
    gamma = cluster.original["layers.0.norm.gamma"][3:6].tobytes()  # rank 1's optimizer-parallel part
    at = bytes(raw).index(gamma)
    raw[at : at + len(gamma)] = np.full(3, 7.0, np.float32).tobytes()
    rank_1.write_bytes(bytes(raw))  # the same size: the mapping made when listing sees the new bytes
    assert np.array_equal(table["layers.0.norm.gamma"].read()[3:6], np.full(3, 7.0, np.float32))
    assert np.array_equal(table["layers.0.norm.gamma"].read()[:3], cluster.original["layers.0.norm.gamma"][:3])
    assert table["layers.0.norm.beta"].read().tobytes() == cluster.merged["layers.0.norm.beta"].tobytes()


def test_uneven_cut_equals_merge_sliced_parameter(tmp_path: Path) -> None:
    """`param_split_shape`/`indices_offset`: an embedding cut into 3 and 7 rows."""
    table = np.arange(40, dtype=np.float32).reshape(10, 4)
    strategy = tmp_path / "strategy.ckpt"
    strategy.write_bytes(
        strategy_message({"table": ((10, 4), "float32", [2], [0, -1], 0, 0)}, 0, split=[3, 7]).SerializeToString()
    )
    parts = [table[:3], table[3:]]
    for rank, part in enumerate(parts):
        (tmp_path / f"rank_{rank}").mkdir()
        ms.save_checkpoint([{"name": "table", "data": ms.Tensor(part)}], str(tmp_path / f"rank_{rank}" / "net.ckpt"))
    sliced = [ms.Parameter(ms.Tensor(part), name="table") for part in parts]
    truth = ms.merge_sliced_parameter(sliced, ms.build_searched_strategy(str(strategy))).asnumpy()
    read = ms_distributed.read(tmp_path)["table"].read()
    assert read.tobytes() == truth.tobytes() == table.tobytes()
    strategy.write_bytes(
        strategy_message(
            {"table": ((10, 4), "float32", [2], [0, -1], 0, 0)}, 0, split=[3, 7], offsets=[0, 2]
        ).SerializeToString()
    )
    with pytest.raises(
        CheckpointFormatError, match=r"'table': the slices \[0:3, 0:4\] \(rank 0\) and \[2:9, 0:4\] \(rank 1\) overlap"
    ):
        ms_distributed.read(tmp_path)
    strategy.write_bytes(
        strategy_message(
            {"table": ((10, 4), "float32", [2], [0, -1], 0, 0)}, 0, split=[3, 7], offsets=[0, 4]
        ).SerializeToString()
    )
    with pytest.raises(
        CheckpointFormatError, match=r"'table': the slice \[4:11, 0:4\] held by rank 1 reaches outside .*\[10, 4\]"
    ):
        ms_distributed.read(tmp_path)


# --- what is refused -------------------------------------------------------------------------------------------


def test_a_missing_rank_is_named(copy: Path) -> None:
    shutil.rmtree(copy / "rank_3")
    with pytest.raises(
        CheckpointFormatError, match=r"rank 3 has no checkpoint .* the strategy describes 4 ranks; copy"
    ):
        ms_distributed.read(copy)


def test_a_slice_missing_from_its_rank_leaves_a_gap_named(copy: Path) -> None:
    rank_file = next((copy / "rank_3").glob("*.ckpt"))
    saved = ms.load_checkpoint(str(rank_file))
    del saved["embedding.word_embeddings.embedding_table"]
    ms.save_checkpoint([{"name": n, "data": p} for n, p in saved.items()], str(rank_file))
    with pytest.raises(
        CheckpointFormatError,
        match=r"'embedding\.word_embeddings\.embedding_table': no slice holds its part \[12:16, 0:4\]",
    ):
        ms_distributed.read(copy)


def test_a_parameter_no_rank_holds_is_named(copy: Path) -> None:
    layouts = {**MS_LAYOUTS, "layers.9.ffn.w": ((4, 4), "float32", [2, 2], [0, -1], 0, 0)}
    (copy.parent / "strategy" / "strategy.ckpt").write_bytes(strategy_message(layouts, 0).SerializeToString())
    with pytest.raises(CheckpointFormatError, match=r"'layers\.9\.ffn\.w' is described by the strategy but no rank"):
        ms_distributed.read(copy)


def test_a_slice_that_does_not_fit_its_layout_is_named(copy: Path) -> None:
    layouts = {**MS_LAYOUTS, "head.weight": ((5, 12), "float16", [2, 2], [-1], 0, 0)}
    (copy.parent / "strategy" / "strategy.ckpt").write_bytes(strategy_message(layouts, 0).SerializeToString())
    with pytest.raises(
        CheckpointFormatError,
        match=r"'head\.weight': the slice rank 0 holds \(\[5, 12\]\) does not fit its layout: the layout maps 1",
    ):
        ms_distributed.read(copy)


def _resave(rank_file: Path, name: str, array: np.ndarray) -> None:
    """Rewrite one rank's file with MindSpore, one tensor replaced."""
    saved = ms.load_checkpoint(str(rank_file))
    saved[name] = ms.Parameter(ms.Tensor(array), name=name)
    ms.save_checkpoint([{"name": n, "data": p} for n, p in saved.items()], str(rank_file))


def test_a_slice_of_another_shape_is_named(copy: Path) -> None:
    _resave(next((copy / "rank_1").glob("*.ckpt")), "layers.0.attention.wq.weight", np.zeros((2, 12), np.float32))
    with pytest.raises(
        CheckpointFormatError,
        match=r"'layers\.0\.attention\.wq\.weight': rank 1 holds a slice of \[2, 12\], but its layout gives that rank "
        r"\[4, 12\] of \[8, 12\]",
    ):
        ms_distributed.read(copy)


def test_training_state_that_cannot_be_joined_stays_listed(copy: Path) -> None:
    _resave(next((copy / "rank_2").glob("*.ckpt")), "adam_m.layers.0.attention.wo.weight", np.zeros((5, 4), np.float32))
    table = ms_distributed.read(copy)
    record = table.excluded[[r.name for r in table.excluded].index("adam_m.layers.0.attention.wo.weight")]
    assert any("cannot be joined" in note for note in table.notes)
    with pytest.raises(CheckpointFormatError, match=r"rank 2 holds a slice of \[5, 4\]"):
        record.read()


def test_a_strategy_for_fewer_ranks_is_refused(copy: Path) -> None:
    layouts = {name: (shape, dtype, [2], [-1] * len(shape), 0, 0) for name, (shape, dtype, *_) in MS_LAYOUTS.items()}
    (copy.parent / "strategy" / "strategy.ckpt").write_bytes(strategy_message(layouts, 0).SerializeToString())
    with pytest.raises(
        CheckpointFormatError, match=r"the strategy describes 2 ranks .* but there is a checkpoint for rank 2"
    ):
        ms_distributed.read(copy)


@pytest.mark.parametrize("damage", ["truncated", "huge device matrix", "huge stage"])
def test_a_corrupt_strategy_is_refused(copy: Path, damage: str) -> None:
    file = copy.parent / "strategy" / "strategy.ckpt"
    if damage == "truncated":
        file.write_bytes(file.read_bytes()[:-7])
        message = r"strategy\.ckpt': not a valid MindSpore strategy file"
    elif damage == "huge stage":
        file.write_bytes(strategy_message(MS_LAYOUTS, (1 << 32) - 1).SerializeToString())
        message = r"strategy\.ckpt': pipeline stage 4294967295 of parameter '.*' is beyond any real pipeline"
    else:
        layouts = {**MS_LAYOUTS, "head.weight": ((5, 12), "float16", [1 << 20, 1 << 20], [-1, -1], 0, 0)}
        file.write_bytes(strategy_message(layouts, 0).SerializeToString())
        message = r"strategy\.ckpt': not a valid MindSpore strategy file: dev_matrix \[1048576, 1048576\] does not"
    with pytest.raises(CheckpointFormatError, match=message):
        ms_distributed.read(copy, strategy=file)


def test_no_strategy_is_refused_with_the_fix(copy: Path) -> None:
    shutil.rmtree(copy.parent / "strategy")
    with pytest.raises(CheckpointFormatError, match=r"no parallel strategy file found .* strategy_ckpt_config"):
        ms_distributed.read(copy)


def test_two_saves_in_a_rank_folder_are_not_guessed(copy: Path) -> None:
    first = next((copy / "rank_2").glob("*.ckpt"))
    shutil.copy(first, first.with_name("net_rank_2-20_1.ckpt"))
    with pytest.raises(CheckpointFormatError, match=r"rank_2' holds 2 checkpoints .* will not guess"):
        ms_distributed.read(copy)
