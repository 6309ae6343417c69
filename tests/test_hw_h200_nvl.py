"""H200 NVL (hw_specs/h200-nvl.yaml): the PCIe H200 with the SXM part's memory, a 600 W cap, NVIDIA's 'with sparsity'
tensor rates halved to dense, and a 4-way NVLink bridge as its scale-up link."""

from __future__ import annotations

import subprocess
import sys

import pytest

from planner.specs.loader import get_hardware, get_interconnect


@pytest.fixture(scope="module")
def hw():
    return get_hardware("h200-nvl")


def test_memory_bandwidth_is_the_4_8_tb_s_of_the_product_page(hw):
    assert hw.memory_bandwidth_bytes_per_s == pytest.approx(4.8e12, rel=0, abs=1e-3)


def test_dense_fp8_is_half_the_sparse_3341_tflops(hw):
    assert hw.peak("fp8") == pytest.approx(3341e12 / 2)
    assert hw.peak("bf16") == pytest.approx(1671e12 / 2)
    assert hw.peak("fp8") == pytest.approx(2 * hw.peak("bf16"), rel=1e-3)  # NVIDIA rounds 2 x 1,671 to 3,341
    assert not hw.supports("fp4")


def test_same_memory_as_the_sxm_part_and_less_power(hw):
    sxm = get_hardware("h200-sxm")
    # the same HBM3e stacks: 141 GB marketed, 143771 MiB reported by nvidia-smi on both boards
    assert hw.memory_capacity_bytes == pytest.approx(sxm.memory_capacity_bytes, rel=0.01)
    assert 141e9 < hw.memory_capacity_bytes <= 141 * 2**30
    assert hw.power.value < sxm.power.value
    # the PCIe board runs below the SXM module's clocks: lower peaks, and priors no higher than the SXM's fractions
    assert hw.peak("bf16") < sxm.peak("bf16")
    for dtype in ("bf16", "fp8"):
        assert hw.matmul_efficiency(dtype) <= sxm.matmul_efficiency(dtype)
        assert hw.achievable.matmul[dtype].kind == "prior"


def test_scale_up_is_a_four_way_nvlink_bridge(hw):
    up = hw.links.scale_up
    assert up is not None and up.interconnect == "nvlink4-bridge-h200" and up.domain_size == 4
    link = get_interconnect(up.interconnect)
    # each card bridged to the other three (a mesh), 900 GB/s per GPU in both directions together
    assert link.kind == "scale_up" and link.topology == "mesh"
    assert link.bandwidth_per_direction.value == pytest.approx(450e9)
    assert link.bandwidth_per_direction.value > get_interconnect("nvlink4-bridge").bandwidth_per_direction.value
    # the bridge is faster than the PCIe Gen5 host link it spares
    assert link.bandwidth_per_direction.value > get_interconnect(hw.links.host.interconnect).bandwidth_per_direction.value


def test_the_driver_name_resolves():
    assert get_hardware("H200 NVL").id == "h200-nvl"
    assert get_hardware("h200-sxm").id == "h200-sxm"  # the SXM part keeps its own names
    assert get_hardware("NVIDIA H200").id == "h200-sxm"


def test_an_estimate_runs():
    r = subprocess.run([sys.executable, "-m", "planner", "estimate", "--model", "llama-3.1-8b", "--hardware", "h200-nvl"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "h200-nvl" in r.stdout
