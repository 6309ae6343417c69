"""Hardware, interconnect and system specs (pydantic), read from YAML with units.

A value that nobody published is absent (None) and stays so: ``Hardware.peak``
raises a clear error naming the device and dtype when a plan needs it.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from planner.errors import PlannerError
from planner.units import parse_quantity

# GPU/accelerator kernel generations, as the kernel/engine calibration layer keys them: "blackwell" is the data-center part (sm_100/sm_103: B200,
# GB200, B300, GB300, with tensor memory and tcgen05 MMA); "blackwell-rtx" the GB202 workstation/server die (sm_120:
# RTX PRO 6000), whose tensor cores and kernels are a different generation, so it does not inherit B200's values
ARCHITECTURES = ("pascal", "volta", "turing", "ampere", "ada", "hopper", "blackwell", "blackwell-rtx", "cdna2", "cdna3", "cdna4", "rdna3", "gaudi2", "gaudi3", "tpu-v5e",
                 "tpu-v6e", "apple-m1", "apple-m2", "apple-m3", "apple-m4", "snapdragon-x", "zen4", "sapphire-rapids")
# GPU architectures whose shader cores issue one instruction a clock per scheduler to whichever of their FP32, FP16 and
# integer units it needs: Apple's M1 (Apple7) and M2 (Apple8) GPUs. A kernel that unpacks a quantized weight on those
# units and multiplies it there too (llama.cpp's Metal kernel_mul_mm: simdgroup matrices run on the same ALUs) takes
# the two in turn, so the unpacking adds to the multiply's time rather than hiding under it. From the M3 (Apple9) on
# a scheduler dual-issues (an FP32 instruction beside an FP16 or integer one), as on NVIDIA and AMD parts, whose
# tensor cores are units of their own. Sources: Apple's tech talk 'Explore GPU advancements in M3 and A17 Pro'
# (October 2023: 'high-performance ALU pipelines', more operations in parallel; as summarised by AppleInsider,
# 2023-11-10), and a description of the per-scheduler units (one 32-wide FP32, one FP16 and an integer unit each; 'on
# M1 and M2 a scheduler can dispatch one instruction to a suitable execution unit per cycle ... on Apple M3,
# schedulers are capable of dual issue'; MrMobster, public forum post, secondary)
SINGLE_ISSUE_ALU_ARCHITECTURES = frozenset({"apple-m1", "apple-m2"})
DTYPES = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp6", "fp4", "int4")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class Sourced(_Strict):
    """A number with its unit parsed into SI (``_dimension``) and where it came from."""

    _dimension: ClassVar[str] = ""
    value: float
    source: str
    note: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse_unit(cls, v):
        if isinstance(v, dict) and "value" in v and cls._dimension:
            v = dict(v)
            v["value"] = parse_quantity(v["value"], cls._dimension)
        return v


class Bytes(Sourced):
    _dimension: ClassVar[str] = "bytes"


class BytesPerS(Sourced):
    _dimension: ClassVar[str] = "bytes_per_s"


class Flops(Sourced):
    _dimension: ClassVar[str] = "flops"


class Seconds(Sourced):
    _dimension: ClassVar[str] = "s"


class Watts(Sourced):
    _dimension: ClassVar[str] = "w"


class Count(_Strict):
    """A whole number of units on a device (streaming multiprocessors, compute units), with where it came from."""

    value: int = Field(ge=1)
    source: str
    note: str | None = None


class HostCpu(_Strict):
    """The CPU a device's engine process runs on, where it is not an x86 server's: the time a PyTorch op takes on it
    from Python, relative to an x86 DGX host's, with its source. Engines whose executor runs in Python (vLLM, SGLang,
    TensorRT-LLM's PyTorch backend) spend their host time per step in such ops."""

    name: str
    op_time_ratio: float = Field(gt=0.0)
    source: str


class Price(_Strict):
    """On-demand rent of one device (one GPU / chip), US dollars per hour, with the date it was listed."""

    usd_per_hour: float = Field(gt=0, allow_inf_nan=False)
    date: str
    source: str
    note: str | None = None


class Purchase(_Strict):
    """Purchase price in US dollars (per device on a device spec, per node on a system spec), with its date."""

    usd: float = Field(gt=0, allow_inf_nan=False)
    date: str
    source: str
    note: str | None = None


class Fraction(_Strict):
    """An achievable fraction of a peak: a prior from published measurements,
    or a value this project's harness calibrated."""

    fraction: float = Field(gt=0, le=1.2)
    source: str
    kind: Literal["prior", "calibrated", "published"] = "prior"


class Memory(_Strict):
    capacity: Bytes
    bandwidth: BytesPerS
    type: str | None = None
    # the total the GPU runtime itself reports (cudaMemGetInfo, torch.cuda.mem_get_info): below nvidia-smi's
    # memory.total (``capacity``) by what the driver keeps for itself. Engines take their memory fraction of this
    # figure and can allocate no more (vLLM's gpu_memory_utilization x total_gpu_memory). None: capacity
    visible: Bytes | None = None

    @model_validator(mode="after")
    def _visible_within_capacity(self):
        if self.visible is not None and not 0.8 * self.capacity.value <= self.visible.value <= self.capacity.value:
            raise ValueError(f"memory.visible ({self.visible.value:.4g} bytes) must lie within 80-100 % of memory.capacity "
                             f"({self.capacity.value:.4g} bytes): the runtime reports the device's memory less the driver's")
        return self


class Achievable(_Strict):
    # matmul efficiency per dtype (fraction of dense peak); missing dtype -> `default_matmul`; the key fp16_accumulate
    # is the sustained fraction of the fp16_accumulate peak (Hardware.fp16_accumulate_gain)
    matmul: dict[str, Fraction] = {}
    memory: Fraction
    # Matmuls on few tokens: efficiency halves at this M (tile/wave quantization, see costmodel)
    matmul_half_m: float | None = Field(default=None, description="tokens at which GEMM efficiency is half of its peak")
    attention: Fraction | None = None  # prefill attention (flash) FLOP/s fraction of the 16-bit peak
    kv_read: Fraction | None = None  # decode attention: fraction of peak bandwidth reading a paged KV cache
    elementwise: Fraction | None = None  # norms/activations: fraction of the fp32 peak they compute at (CPUs)
    source_note: str | None = None


class Overheads(_Strict):
    kernel_s: Seconds | None = None  # fixed cost per kernel launch (GPU) / per op call (CPU)
    step_s: Seconds | None = None  # fixed cost per engine step (scheduler, sampling, host sync)


class LinkRef(_Strict):
    interconnect: str
    domain_size: int | None = Field(default=None, ge=1, description="devices that share this link tier")
    count: int = Field(default=1, ge=1, description="links (or NICs) per device")


class Links(_Strict):
    scale_up: LinkRef | None = None
    # the server's own fabric between scale-up domains (PCIe through the root ports or a PCIe switch): bridged pairs
    # or quads of PCIe cards (H100 NVL, H200 NVL) in a server of up to ``domain_size`` cards; collectives that leave a
    # scale-up domain but stay in the server cross it
    node: LinkRef | None = None
    scale_out: LinkRef | None = None
    host: LinkRef | None = None


EXP_PER_SM_CLOCK = 16  # MUFU.EX2 results per clock per SM, NVIDIA Maxwell to Blackwell (CUDA C++ Programming Guide)


class Hardware(_Strict):
    id: str
    name: str
    vendor: str
    kind: Literal["gpu", "cpu", "tpu", "accelerator", "soc"]
    aliases: list[str] = []  # other ids that name this device (planner.specs.loader resolves them)
    # the kernel/engine calibration layer is keyed by architecture (engines/calibration/): a device
    # with no published rows inherits its architecture's fitted values
    architecture: str | None = None
    memory: Memory
    peak_flops: dict[str, Flops | None]
    # dense FP16 tensor-core peak when a kernel accumulates in FP16, where the datasheet lists it apart from the
    # FP32-accumulate rate of peak_flops.fp16 (GeForce parts run FP32 accumulation at half rate); None: the same rate.
    # Only kernels that accumulate in FP16 reach it (llama.cpp's cuBLAS path: Engine.gemm_fp16_accumulate)
    fp16_accumulate: Flops | None = None
    # FP32 lanes per SM where a part has 64 (NVIDIA GA100, Turing, Volta: 64 FP32 beside 64 separate INT32 lanes); None
    # where FP32 peak counts 128 per SM. A kernel bound by the SMs' issue slots, not by FP32 math, runs at SMs x clock,
    # which the FP32 peak then understates by 128 / lanes (cuda_core_issue_gain)
    fp32_lanes_per_sm: int | None = Field(default=None, ge=16, le=256)
    # exponentials (MUFU.EX2) per clock per SM on the special function units, where a part has other than the 16 of
    # every NVIDIA GPU from Maxwell to Blackwell (CUDA C++ Programming Guide, throughput of native arithmetic
    # instructions: 16 results per clock per SM for 32-bit exp2, log2, reciprocal, rsqrt, sin, cos): Blackwell Ultra
    # (B300, GB300) doubles it. Softmax takes one per attention score (exp_rate)
    exp_per_sm_clock: int | None = Field(default=None, ge=1, le=256)
    # streaming multiprocessors (NVIDIA): a GEMM's output tiles run on them in waves, one tile per SM at a time, so a
    # GEMM whose tile count is not a multiple of the SM count leaves some idle in its last wave (costmodel/roofline.py
    # wave_efficiency, for engines that state their GEMM tile: Engine.gemm_tile)
    sm_count: Count | None = None
    # the on-chip cache every SM (CU) reads device memory through: NVIDIA's L2, AMD's Infinity Cache where the part has
    # one (CDNA3/4, RDNA3: memory-side, shared by all XCDs), else its L2. Decode attention reads a KV block that several
    # running sequences share (a cached prompt, a system prompt) from memory once a step while a layer's shared blocks
    # fit in it (serving/sim/decodes.py shared_reread); None: not on record, every sequence's read priced from memory
    last_level_cache: Bytes | None = None
    achievable: Achievable
    overheads: Overheads = Field(default_factory=Overheads)
    links: Links = Field(default_factory=Links)
    power: Watts | None = None  # board / module power at its maximum (TDP, TGP, TBP)
    price: Price | None = None  # on-demand rent per device-hour
    purchase: Purchase | None = None  # purchase price per device (the card or module alone)
    host_memory: Bytes | None = None
    host_cpu: HostCpu | None = None  # a host CPU slower (or faster) per PyTorch op than an x86 server's; None: x86
    notes: list[str] = []
    calibrated_from: str | None = None  # the capture a calibrated spec was fitted to
    kernel_profile: str | None = None  # folder with a measured kernels.csv the cost model looks up

    @field_validator("architecture")
    @classmethod
    def _arch(cls, v):
        if v is not None and v not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {v!r}; known: {list(ARCHITECTURES)}")
        return v

    @field_validator("peak_flops")
    @classmethod
    def _dtypes(cls, v):
        bad = [k for k in v if k not in DTYPES]
        if bad:
            raise ValueError(f"unknown dtype(s) {bad}; known: {list(DTYPES)}")
        return v

    def peak(self, dtype: str) -> float:
        """Dense peak FLOP/s for a compute dtype; raises if unpublished."""
        q = self.peak_flops.get(dtype)
        if q is None:
            if dtype in self.peak_flops:
                raise PlannerError(f"{self.id} has no published {dtype} peak FLOP/s; this plan needs it")
            raise PlannerError(f"{self.id} does not run {dtype} natively")
        return q.value

    def supports(self, dtype: str) -> bool:
        return self.peak_flops.get(dtype) is not None

    def fp16_accumulate_gain(self) -> float:
        """How much faster a 16-bit GEMM runs when it accumulates in FP16 than at its FP32-accumulate rate, each as
        sustained: fp16_accumulate times achievable.matmul["fp16_accumulate"] (where the spec records that fraction;
        else the 16-bit one) over peak_flops.fp16 times the 16-bit fraction. 1 where no separate FP16-accumulate rate
        is published."""
        if self.fp16_accumulate is None or not self.supports("fp16"):
            return 1.0
        f16 = self.matmul_efficiency("fp16")
        acc = self.achievable.matmul.get("fp16_accumulate")
        sustained = self.fp16_accumulate.value * (acc.fraction if acc is not None else f16)
        return max(sustained / (self.peak("fp16") * f16), 1.0)

    def cuda_core_issue_gain(self) -> float:
        """SMs x clock x 128 lanes over the FP32 peak: 1 where the FP32 peak counts 128 lanes per SM, 2 on parts with 64
        (fp32_lanes_per_sm). What a kernel paced by the SMs' instruction issue, rather than by FP32 math, gains over a
        rate taken as a multiple of the FP32 peak."""
        return 128.0 / self.fp32_lanes_per_sm if self.fp32_lanes_per_sm else 1.0

    def single_issue_alus(self) -> bool:
        """Whether the device's shader cores issue one ALU instruction a clock per scheduler across their FP32, FP16 and
        integer units (SINGLE_ISSUE_ALU_ARCHITECTURES: Apple M1, M2), so in-kernel weight unpacking and the multiply
        on the same units take turns."""
        return self.architecture in SINGLE_ISSUE_ALU_ARCHITECTURES

    def exp_rate(self, per_sm_clock: int | None = None) -> float | None:
        """Exponentials per second the special function units issue (softmax's one per attention score): per SM and
        clock 16 on NVIDIA GPUs (exp_per_sm_clock where a part differs; ``per_sm_clock`` to ask for another) times
        SMs x clock, which the FP32 peak gives as FP32 / (2 x FP32 lanes per SM). H100 SXM: 16 x 67 TFLOPS / 256 =
        4.2e12 (FlashAttention-3's paper: 3.9 TFLOPS of special functions beside 989 of FP16 matmul). None where no
        rate is on record (other vendors, CPUs)."""
        if self.vendor != "nvidia" or self.sm_count is None or not self.supports("fp32"):
            return None
        per_clock = per_sm_clock or self.exp_per_sm_clock or EXP_PER_SM_CLOCK
        return per_clock * self.peak("fp32") / (2.0 * (self.fp32_lanes_per_sm or 128))

    def matmul_efficiency(self, dtype: str) -> float:
        f = self.achievable.matmul.get(dtype)
        if f is None:
            f = self.achievable.matmul.get("default")
        if f is None:
            raise PlannerError(f"{self.id} has no achievable matmul fraction for {dtype}")
        return f.fraction

    def joined_by(self, link: str) -> "Hardware":
        """This device with the interconnect ``link`` as its scale-out network, id ``ID+LINK``: laptops or boards
        joined over Wi-Fi or Ethernet into one tensor/pipeline-parallel deployment (TPI-LLM's edge clusters)."""
        links = self.links.model_copy(update={"scale_out": LinkRef(interconnect=link)})
        return self.model_copy(update={"id": f"{self.id}+{link}", "links": links})

    @property
    def memory_bandwidth_bytes_per_s(self) -> float:
        return self.memory.bandwidth.value

    @property
    def memory_capacity_bytes(self) -> float:
        return self.memory.capacity.value

    @property
    def memory_visible_bytes(self) -> float:
        """What the GPU runtime reports as the device's total (Memory.visible), what engines take their fraction of;
        the capacity where no figure is on record."""
        v = self.memory.visible
        return v.value if v is not None else self.memory.capacity.value

    @property
    def node_size(self) -> int:
        """Devices one server holds: its scale-up domain, or the node tier joining several domains (1 without either)."""
        up = (self.links.scale_up.domain_size or 1) if self.links.scale_up else 1
        node = (self.links.node.domain_size or 1) if self.links.node else 1
        return max(up, node)


class Interconnect(_Strict):
    """A link tier; ``in_switch`` is required when ``in_switch_reduction`` is set."""

    id: str
    name: str
    kind: Literal["scale_up", "scale_out", "host", "network"]
    bandwidth_per_direction: BytesPerS  # per device (per link set), one direction
    latency: Seconds
    achievable: Fraction | None = None
    in_switch_reduction: bool = False  # NVLink SHARP (NVLS): all-reduce reduced in the switch
    # measured all-reduce bus bandwidth with in-switch reduction, as a fraction of the link rate
    in_switch: Fraction | None = None
    in_switch_min_devices: int = 5  # NCCL picks NVLS only from this group size up
    topology: Literal["switch", "mesh", "torus", "bus", "point_to_point"] = "switch"
    notes: list[str] = []


class System(_Strict):
    """A node: N devices, the link inside it and the NICs out of it."""

    id: str
    name: str
    device: str
    devices_per_node: int = Field(ge=1)
    scale_up: str | None = None
    scale_out: str | None = None
    nics_per_node: int = 0
    source: str
    # the whole node at its maximum, devices included (the host's share is this less the devices' power)
    power: Watts | None = None
    purchase: Purchase | None = None  # the whole node, devices included
