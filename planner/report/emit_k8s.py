"""A Kubernetes Deployment running the vLLM OpenAI server for a plan (``emit("k8s", plan)``)."""

from __future__ import annotations

import math
import re

import yaml

from planner.report.checkpoint import _checkpoint
from planner.report.emit import PORT, VLLM_IMAGE, _headed, _Plan, _vllm_args, vllm_sampler_env
from planner.report.script import _Script

_LABEL_OK = re.compile(r"[^A-Za-z0-9_.-]")


def _label(v) -> str:
    s = _LABEL_OK.sub("-", str(v))[:63].strip("-_.")
    return s or "none"


def _dns(v: str) -> str:
    s = re.sub(r"[^a-z0-9-]", "-", v.lower()).strip("-")
    return re.sub(r"-+", "-", s)[:63].strip("-") or "planner"


def _emit_k8s(p: _Plan) -> str:
    ck = _checkpoint("vllm", p)
    s = _Script()
    docs = []
    summary = (f"{p.model} on {p.hardware}: tp={p.tp} pp={p.pp} ep={p.ep} dp={p.dp}"
               + (f" attention-dp={p.attention_dp_size}" if p.attention_dp else "")
               + f" weights={p.weights} kv={p.kv} seqs={p.max_num_seqs} max-model-len={p.max_model_len}")
    for role in p.role_list:
        gpus = role.tp * p.pp
        name = _dns(f"{p.model}-vllm" + ("" if role.name == "serve" else f"-{role.name}"))
        args = [ck.path] + _vllm_args(p, role, ck)
        args[args.index("--port") + 1] = str(PORT)  # one pod, one server: the container port
        labels = {
            "app.kubernetes.io/name": "vllm",
            "app.kubernetes.io/instance": name,
            "planner/model": _label(p.model),
            "planner/hardware": _label(p.hardware),
            "planner/role": role.name,
            "planner/tp": str(role.tp),
            "planner/pp": str(p.pp),
            "planner/ep": str(role.ep),
            "planner/dp": str(p.dp),
            "planner/weights": _label(p.weights),
            "planner/kv": _label(p.kv),
        }
        container = {
            "name": "vllm",
            "image": VLLM_IMAGE,
            "command": ["vllm", "serve"],
            "args": args,
            "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token-secret", "key": "token", "optional": True}}}]
                   + [{"name": k, "value": v} for k, v in vllm_sampler_env(p).items()],
            "ports": [{"name": "http", "containerPort": PORT}],
            "resources": {"limits": {"nvidia.com/gpu": gpus}, "requests": {"nvidia.com/gpu": gpus}},
            "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}],
            "readinessProbe": {"httpGet": {"path": "/health", "port": PORT}, "initialDelaySeconds": 60,
                               "periodSeconds": 10, "failureThreshold": 3},
        }
        if p.kv_offload_gib > 0:
            host = math.ceil(p.kv_offload_gib * gpus)
            container["resources"]["requests"]["memory"] = f"{host}Gi"  # at least the offload buffer
        docs.append({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": labels, "annotations": {"planner/plan": summary}},
            "spec": {
                "replicas": role.workers,
                "selector": {"matchLabels": {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": name}},
                "template": {
                    "metadata": {"labels": dict(labels)},
                    "spec": {
                        "containers": [container],
                        # tensor-parallel workers talk through shared memory
                        "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}}],
                    },
                },
            },
        })
        if gpus > 8:
            s.comment(f"{name}: one pod needs {gpus} GPUs; across nodes run it with a multi-node launcher (e.g. LeaderWorkerSet)")
    if p.disaggregated:
        s.comment(f"prefill and decode Deployments: front them with a prefill/decode proxy (NixlConnector) on port {PORT}")
    elif p.dp > 1:
        s.comment(f"{p.dp} replicas: put a Service in front to balance requests over them")
    return _headed(p, "k8s (vLLM OpenAI server)", ck, s) + "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)
