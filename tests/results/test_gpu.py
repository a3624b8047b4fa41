"""Section 7's GPU scaling table: precisions and folded BRL rows as settings of their own."""
from brl_graph.labels import BRL, MPNN
from brl_graph.results.gpu import gpu_section, setting


def _row(model, ms, **flags):
    return {"model": model, "num_nodes": 1000, "layers": 1, "fwd_bwd_ms": ms,
            "peak_mem_mb": 1.0, "lease_run": 3, "command": "python benchmarks/scaling.py X", **flags}


def test_setting_names_the_precision_and_the_fold():
    assert setting({"bf16": True, "tf32": True}) == (1, "bf16", False)  # autocast wins
    assert setting({"tf32": True, "fold": True, "layers": 4}) == (4, "tf32", True)
    assert setting({}) == (1, "fp32", False)


def test_folded_and_tf32_rows_are_compared_with_the_twin_of_their_precision():
    rows = [_row(MPNN, 2.0), _row(BRL, 20.0),
            _row(MPNN, 1.5, tf32=True), _row(BRL, 4.5, tf32=True),
            _row(BRL, 8.0, fold=True)]
    text, summary = gpu_section(None, rows, None)
    lines = [line for line in text.splitlines() if line.startswith("| 1 layer")]
    assert [line.split(" | ")[0] for line in lines] == [
        "| 1 layer(s), fp32", "| 1 layer(s), fp32, folded BRL", "| 1 layer(s), tf32"]
    assert lines[0].endswith("| 10.00x |")
    assert lines[1].endswith("| 4.00x |")  # 8.0 ms over the fp32 twin's 2.0
    assert lines[2].endswith("| 3.00x |")  # 4.5 over the tf32 twin's 1.5, not fp32's
    assert "fp32 10.0x, fp32 folded 4.0x, tf32 3.0x" in summary
    assert "4.0x in fp32 (folded)" in text and "4.0-4.0x" not in text  # one value, not a range
    assert lines[1].split(" | ")[2] == "2.0 ms / 1 MB (run 3)"  # the folded row shows its twin


def test_profiled_rows_list_their_costliest_ops():
    ops = [{"name": f"aten::op{i}", "calls": 2, "self_ms": 10.0 - i} for i in range(8)]
    rows = [_row(MPNN, 2.0), _row(BRL, 20.0, profile=ops)]
    text, _ = gpu_section(None, rows, None)
    assert "### Where the GPU time goes" in text
    line = next(x for x in text.splitlines() if x.startswith("| brl | 1 layer(s), fp32"))
    assert "`aten::op0` 10.00 ms (2x)" in line and "`aten::op4`" in line
    assert "`aten::op5`" not in line  # five per row
    assert "Where the GPU time goes" not in gpu_section(None, rows[:1], None)[0]


def test_superseded_rows_leave_the_table_and_are_named_in_the_reading():
    why = "before the token-node products ran in blocks of nodes"
    rows = [_row(MPNN, 2.0, lease_run=2, superseded=why), _row(BRL, 26.0, lease_run=2, superseded=why),
            _row(MPNN, 2.0), _row(BRL, 2.4)]
    text, summary = gpu_section(None, rows, None)
    lines = [line for line in text.splitlines() if line.startswith("| 1 layer")]
    assert len(lines) == 1 and lines[0].endswith("| 1.20x |")  # the current rows only
    assert "1.2x" in summary and "13.0x" not in summary
    assert (f"Rows of run 2 superseded ({why}) are kept in the file and left out of the table; "
            "in them BRL's time over its twin's was 13.0x in fp32.") in text
    # superseded rows alone, without a run number or a reason: named, and no crash
    text, summary = gpu_section(None, [{**r, "superseded": True} for r in rows[:2]]
                                + [_row(MPNN, 2.0, superseded=True, lease_run=None)], None)
    assert summary is None and "not run" in text.lower()
    assert "Rows of run 2 superseded (older code) are kept" in text and "13.0x in fp32" in text
