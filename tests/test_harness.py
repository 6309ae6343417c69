"""The profiling harness: capture layout, CSV contract, the reference transformer, resume."""

import csv

import numpy as np
import pytest
import yaml

from planner.harness import (
    E2E_COLUMNS,
    KERNEL_COLUMNS,
    ProfileOptions,
    SimulatedInterrupt,
    run_profile,
    tiny_model,
)
from planner.harness.backends import NumpyOps, torch_or_none
from planner.harness.capture import CsvSink, fmt
from planner.harness.transformer import Config, KVCache, Transformer
from cli_helpers import run as run_cli

META_KEYS = {"status", "mode", "date", "command", "planner_version", "host_id", "hostname_sha256", "cpu_model",
             "logical_cores", "physical_cores", "memory_bytes", "os", "python", "numpy", "threads", "torch",
             "device", "backends", "model", "e2e", "timing", "skipped", "runs"}
KERNEL_OPS = {"gemm", "attn_prefill", "attn_decode", "copy", "read", "write", "rmsnorm", "silu_mul", "add",
              "host_dense", "host_moe", "host_mla", "moe_loop"}


def read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]


def keys(rows, columns):
    k = columns.index("repeats")
    return [tuple(r[c] for c in columns[:k]) for r in rows]


def tiny(tmp_path, **kw):
    return ProfileOptions(tiny=True, out=tmp_path, backends=["numpy"], progress=False, command="pytest", **kw)


def test_tiny_capture_is_well_formed(tmp_path):
    r = run_profile(tiny(tmp_path))
    assert r.status == "complete"
    assert r.folder.parent.name.startswith("cpu-") and r.folder.name.endswith("-tiny")
    header, krows = read_csv(r.folder / "kernels.csv")
    assert header == KERNEL_COLUMNS
    assert {row["op"] for row in krows} == KERNEL_OPS
    header, erows = read_csv(r.folder / "e2e.csv")
    assert header == E2E_COLUMNS
    assert {row["phase"] for row in erows} == {"prefill", "decode"}
    for row in krows + erows:
        med, p10, p90 = float(row["median_s"]), float(row["p10_s"]), float(row["p90_s"])
        assert med > 0 and p10 <= med <= p90
        assert int(row["repeats"]) >= 2 and int(row["threads"]) >= 1
        assert float(row["cv"]) >= 0 and row["busy"] in ("0", "1")
    for row in krows:
        assert int(row["bytes"]) > 0 or row["op"].startswith("host_")  # host probes: no arithmetic to speak of
        if row["op"] == "gemm":
            m, n, k = int(row["m"]), int(row["n"]), int(row["k"])
            assert int(row["flops"]) == 2 * m * n * k
            assert int(row["bytes"]) == (m * k + k * n + m * n) * 4
            assert row["batch"] == "" and row["seq_q"] == ""
        if row["op"] == "attn_prefill":
            b, h, d, s = (int(row[c]) for c in ("batch", "heads", "head_dim", "seq_q"))
            assert row["seq_kv"] == row["seq_q"] and int(row["flops"]) == 4 * b * h * d * s * (s + 1) // 2
        if row["op"] == "attn_decode":
            assert row["seq_q"] == "1"
        if row["op"] == "copy":
            assert int(row["bytes"]) == 2 * int(row["m"]) * 4
    model = tiny_model()
    gemm_nk = {(int(r["n"]), int(r["k"])) for r in krows if r["op"] == "gemm"}
    assert {((4 + 2 * 2) * 16, 64), (64, 64), (2 * 128, 64), (64, 128)} <= gemm_nk  # qkv, o, gate_up, down
    for row in krows:  # library calls per kernel, as the numpy backend writes them (host probes: counted by calibrate;
        # moe_loop: layer code, looked up whole)
        expect = 0 if row["op"].startswith("host_") or row["op"] == "moe_loop" else {"rmsnorm": 7, "silu_mul": 5, "attn_prefill": 11, "attn_decode": 8}.get(row["op"], 1)
        assert int(row["calls"]) == expect
        if row["op"].startswith("host_"):
            assert (r.folder / "models" / f"{row['op'].replace('_', '-')}.yaml").is_file()
    models = {row["model"] for row in erows}
    assert model.id in models and {m for m in models if m.startswith("ref-")} == {"ref-dense-128", "ref-moe-128", "ref-mla-128"}
    for row in erows:
        if row["model"] == model.id:
            assert int(row["total_layers"]) == model.num_layers
        else:  # a reference model runs all its layers, and its spec travels with the capture
            assert row["layers"] == row["total_layers"]
            assert (r.folder / "models" / f"{row['model']}.yaml").is_file()
        if row["phase"] == "prefill":
            assert row["context"] == row["prompt_tokens"]
    meta = yaml.safe_load((r.folder / "meta.yaml").read_text())
    assert META_KEYS <= set(meta)
    assert meta["status"] == "complete" and meta["mode"] == "tiny" and meta["command"] == "pytest"
    assert len(meta["hostname_sha256"]) == 16
    assert meta["numpy"]["version"] == np.__version__ and "blas" in meta["numpy"]
    assert meta["peak_rss_bytes"] > 0 and meta["memory_budget_bytes"] > 0 and meta["clock"] in ("wall", "thread")
    assert "cpu_governor" in meta and "thread_env" in meta and set(meta["busy_rows"]) == {"kernels", "e2e"}
    assert any("allreduce" in s for s in meta["skipped"])


def test_fresh_run_refuses_an_existing_capture(tmp_path, monkeypatch):
    import datetime
    import types

    from planner.harness import run as run_module

    # both runs on one day: a capture folder is named by the date, so two runs either side of midnight write two
    # folders and neither refuses (which is right for a user, and made this test fail when CI crossed midnight)
    day = types.SimpleNamespace(date=types.SimpleNamespace(today=lambda: datetime.date(2026, 12, 3)), datetime=datetime.datetime)
    monkeypatch.setattr(run_module, "_dt", day)
    run_profile(tiny(tmp_path))
    with pytest.raises(Exception, match="--resume"):
        run_profile(tiny(tmp_path))


def test_interrupted_run_resumes_without_duplicates_or_losses(tmp_path):
    reference = run_profile(tiny(tmp_path / "ref"))
    _, kref = read_csv(reference.folder / "kernels.csv")
    _, eref = read_csv(reference.folder / "e2e.csv")

    with pytest.raises(SimulatedInterrupt):
        run_profile(tiny(tmp_path / "cut", stop_after_rows=7))
    folder = next((tmp_path / "cut").glob("*/*"))
    meta = yaml.safe_load((folder / "meta.yaml").read_text())
    assert meta["status"] == "partial"
    _, partial = read_csv(folder / "kernels.csv")
    assert len(partial) == 7
    # a torn last line (killed mid-write) is dropped on resume
    with open(folder / "kernels.csv", "a") as f:
        f.write("gemm,numpy,cpu,fp32,99")

    with pytest.raises(SimulatedInterrupt):  # a second interruption, inside e2e this time
        run_profile(tiny(tmp_path / "cut", resume=True, stop_after_rows=len(kref) - 7 + 1))
    r = run_profile(tiny(tmp_path / "cut", resume=True))
    assert r.folder == folder and r.status == "complete"
    _, krows = read_csv(folder / "kernels.csv")
    _, erows = read_csv(folder / "e2e.csv")
    for got, ref, cols in ((krows, kref, KERNEL_COLUMNS), (erows, eref, E2E_COLUMNS)):
        assert len(keys(got, cols)) == len(set(keys(got, cols)))  # exactly once
        assert sorted(keys(got, cols)) == sorted(keys(ref, cols))  # nothing lost
    meta = yaml.safe_load((folder / "meta.yaml").read_text())
    assert meta["status"] == "complete" and len(meta["runs"]) == 3
    assert [run["status"] for run in meta["runs"]][:2] == ["interrupted (SimulatedInterrupt)"] * 2


def test_sink_keys_and_formatting(tmp_path):
    path = tmp_path / "x.csv"
    s = CsvSink(path, E2E_COLUMNS)
    row = {"model": "m", "backend": "numpy", "device": "cpu", "dtype": "fp32", "layers": 1, "total_layers": 2,
           "phase": "decode", "batch": 1, "prompt_tokens": None, "context": 8, "repeats": 3, "median_s": 0.5,
           "p10_s": 0.4, "p90_s": 0.6, "threads": 2, "cv": 0.1, "others_cores": 0.0, "load1": 0.5, "busy": 0}
    s.write(row)
    s.write(row | {"median_s": 0.7})  # same key: ignored
    s.close()
    again = CsvSink(path, E2E_COLUMNS)
    assert again.has(row) and not again.has(row | {"batch": 2})
    again.close()
    assert path.read_text().count("\n") == 2
    assert fmt(None) == "" and fmt(3) == "3" and fmt(1.23456789e-5) == "1.23457e-05"


CFG = Config(vocab_size=97, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, intermediate_size=96)


def test_transformer_is_seeded_and_not_zero():
    ops = NumpyOps()
    a, b, c = Transformer(CFG, ops, seed=3), Transformer(CFG, ops, seed=3), Transformer(CFG, ops, seed=4)
    tokens = np.random.default_rng(0).integers(0, CFG.vocab_size, size=(2, 5))
    la = a.forward(tokens, KVCache(ops, CFG, 2, 16))
    lb = b.forward(tokens, KVCache(ops, CFG, 2, 16))
    lc = c.forward(tokens, KVCache(ops, CFG, 2, 16))
    assert la.shape == (2, CFG.vocab_size) and la.dtype == np.float32
    np.testing.assert_array_equal(la, lb)
    assert not np.allclose(la, lc)
    assert all(np.count_nonzero(w) == w.size for w in (a.tok_embeddings, a.output, a.layers[0].wqkv, a.layers[1].w2))
    assert np.array_equal(a.step(tokens, KVCache(ops, CFG, 2, 16)), la.argmax(-1))


def test_kv_cache_decode_matches_full_recompute():
    ops = NumpyOps()
    net = Transformer(CFG, ops, seed=1)
    tokens = np.random.default_rng(1).integers(0, CFG.vocab_size, size=(3, 12))
    full = net.forward(tokens, KVCache(ops, CFG, 3, 32), 0)
    cache = KVCache(ops, CFG, 3, 32, rng=np.random.default_rng(9))  # garbage beyond what is written must not matter
    net.forward(tokens[:, :7], cache, 0)  # prefill
    for pos in range(7, 11):  # decode one token at a time
        net.forward(tokens[:, pos:pos + 1], cache, pos)
    last = net.forward(tokens[:, 11:], cache, 11)
    np.testing.assert_allclose(last, full, atol=1e-4, rtol=1e-4)
    chunked = KVCache(ops, CFG, 3, 32)  # chunked prefill: causal mask with an offset
    net.forward(tokens[:, :5], chunked, 0)
    np.testing.assert_allclose(net.forward(tokens[:, 5:], chunked, 5), full, atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(torch_or_none() is None, reason="torch is not installed")
def test_torch_transformer_matches_numpy():
    from planner.harness.backends import TorchOps

    tokens = np.random.default_rng(2).integers(0, CFG.vocab_size, size=(2, 9))
    outs = []
    for ops in (NumpyOps(), TorchOps("cpu", "fp32")):
        net = Transformer(CFG, ops, seed=5)
        t = tokens if ops.name == "numpy" else ops.torch.from_numpy(tokens)
        cache = KVCache(ops, CFG, 2, 16)
        with ops.inference():
            net.forward(t[:, :8], cache, 0)
            outs.append(ops.to_numpy(net.forward(t[:, 8:], cache, 8)))
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-4, rtol=1e-4)




def test_cli_tiny_run(tmp_path, capsys):
    code, out, err = run_cli(["profile", "--tiny", "--backend", "numpy", "--out", str(tmp_path)], capsys)
    assert code == 0, err
    assert "complete" in out
    assert len(list(tmp_path.glob("*/*/kernels.csv"))) == 1


def _has_cuda():
    torch = torch_or_none()
    return torch is not None and torch.cuda.is_available()


@pytest.mark.parametrize("args, fragment", [
    pytest.param(["profile", "--device", "cuda"], "no CUDA device is available",
                 marks=pytest.mark.skipif(_has_cuda(), reason="this machine has CUDA")),
    (["profile", "--device", "tpu"], "unknown device"),
    (["profile", "--backend", "jax", "--tiny"], "unknown backend"),
    (["profile", "--model", "deepseek-v3", "--tiny"], "q_lora_rank"),
    (["profile", "--model", "gpt-j-6b", "--tiny"], "ungated MLP"),
    (["profile", "--model", "no-such-model"], "unknown model"),
    (["profile", "--tiny", "--layers", "0"], "at least 1"),
    (["profile", "--tiny", "--max-memory", "1MiB"], "at least 64 MiB"),
    (["profile", "--tiny", "--max-memory", "lots"], "bytes quantity"),
])
def test_cli_errors_are_one_line(args, fragment, capsys, tmp_path):
    code, _, err = run_cli(args + ["--out", str(tmp_path)], capsys)
    assert code == 2
    assert fragment in err and err.startswith("error: ") and err.count("\n") == 1
    assert "Traceback" not in err
    assert not list(tmp_path.iterdir())  # nothing written
