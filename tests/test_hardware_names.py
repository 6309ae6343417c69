"""Hardware named as benchmark pages, nvidia-smi and vendors write it resolves to the one built-in device it fits
(planner.specs.loader._hardware_by_parts): family, form factor and memory size are read from the name; a name that
fits several boards, or none, stays an unknown-hardware error with suggestions."""

import pytest

from planner.errors import PlannerError
from planner.specs.loader import _aliases, _hardware_by_parts, _hw_parts, get_hardware, hardware_ids


@pytest.mark.parametrize("name, want", [
    ("H100-SXM5-80GB", "h100-sxm"),          # MLPerf system descriptions
    ("H200-SXM-141GB", "h200-sxm"),          # 141 GB is the datasheet's; nvidia-smi reports 140.4 GiB
    ("B200-SXM-180GB", "b200"),              # B200 comes only as an SXM board: the form factor agrees
    ("GB200 NVL72", "gb200"),                # a rack named by its superchip
    ("DGX H100", "h100-sxm"),                # DGX and HGX systems carry SXM boards
    ("HGX H200", "h200-sxm"),
    ("H100 PCI-E 80GB", "h100-pcie"),
    ("Gaudi 3", "gaudi3"),
    ("Instinct MI300X OAM", "mi300x"),
    ("MI300X 192GB", "mi300x"),
    ("GeForce RTX 4090 24GB", "rtx-4090"),
    ("RTX 6000 Ada 48GB", "rtx-6000-ada"),
    ("A100-PCIE-40GB", "a100-pcie-40gb"),
])
def test_descriptive_names_resolve(name, want):
    assert get_hardware(name).id == want


@pytest.mark.parametrize("name", [
    "H100",             # SXM, PCIe or NVL
    "A100 40GB",        # the SXM or the PCIe board
    "NVIDIA A100 80GB",
    "Tesla K80",        # no spec (Kepler)
    "MI300X 128GB",     # no MI300X has 128 GB
    "AMD Instinct MI250X / MI250",  # what HIP prints on both OAMs (one device id): the CU count tells them apart
    "Jetson AGX Orin",  # the 32 GB or the 64 GB module
    "NVIDIA H800 PCIe",       # h800 is the SXM5 board (its product name says so), not the 350 W PCIe card
    "NVIDIA A800 80GB PCIe",  # a800 is the SXM4 board
])
def test_names_that_fit_several_boards_or_none_stay_unknown(name):
    with pytest.raises(PlannerError, match="unknown hardware"):
        get_hardware(name)


def test_parts_of_a_name():
    assert _hw_parts("NVIDIA H100-SXM5-80GB") == ("h100", "sxm", 80.0)
    assert _hw_parts("DGX H200") == ("h200", "sxm", None)
    assert _hw_parts("rtx-4060-ti-16gb") == ("rtx4060ti", None, 16.0)
    assert _hw_parts("H100 PCIe") == ("h100", "pcie", None)
    assert _hw_parts("GB200 NVL72 HBM3e") == ("gb200", None, None)


def test_no_built_in_id_or_alias_resolves_to_another_device():
    for ident in hardware_ids():
        assert _hardware_by_parts(ident) in (None, ident), ident
        assert get_hardware(ident.upper()).id == ident
    for alias, ident in _aliases("Hardware").items():
        assert get_hardware(alias).id == ident, alias
