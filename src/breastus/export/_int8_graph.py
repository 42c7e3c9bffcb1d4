"""Graph preparation for int8 export: static 'same' padding, and the nodes kept in float32."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

WEIGHTED_OPS: frozenset[str] = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
"""ONNX operators whose weights int8 quantization rounds."""


class StaticPadConv2d(nn.Module):
    """A convolution after a constant zero padding: timm's ``Conv2dSame`` at one fixed input size.

    ``Conv2dSame`` works its 'same' padding out from the input's shape on every call,
    which the ONNX exporter writes as ``Shape``/``Gather``/``Div``/``Ceil``/... nodes
    before a ``Pad``; int8 quantization then quantizes that shape arithmetic too. At a
    fixed image size the padding is a constant, written as one ``Pad`` with constant
    pads (the same numbers: outputs are identical).

    Parameters
    ----------
    conv : torch.nn.Conv2d
        The convolution (its ``padding`` must be 0, as ``Conv2dSame``'s is); its parameters are shared.
    pads : sequence of int
        ``(left, right, top, bottom)`` as :func:`torch.nn.functional.pad` takes them.

    """

    def __init__(self, conv: nn.Conv2d, pads: Sequence[int]) -> None:
        super().__init__()
        self.conv = conv
        self.pads = tuple(int(p) for p in pads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        padded = F.pad(x, self.pads) if any(self.pads) else x
        return F.conv2d(padded, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)


def _same_conv_type() -> type[nn.Module] | None:
    try:
        from timm.layers.conv2d_same import Conv2dSame
    except ImportError:  # timm is a dependency, but the export must not need it for torchvision models
        return None
    same: type[nn.Module] = Conv2dSame
    return same


def static_same_padding(model: nn.Module, image_size: int) -> int:
    """Replace, in place, every timm ``Conv2dSame`` of ``model`` by a :class:`StaticPadConv2d` for ``image_size``.

    The input size of each such convolution is recorded on one forward pass of a
    zero image ``(1, 3, image_size, image_size)`` (``model`` in eval mode).

    Returns
    -------
    int
        The number of convolutions replaced (0 for models without dynamic 'same' padding).

    """
    same = _same_conv_type()
    if same is None:
        return 0
    from timm.layers.padding import pad_same_arg

    targets = {name: module for name, module in model.named_modules() if isinstance(module, same)}
    if not targets:
        return 0
    sizes: dict[str, list[int]] = {}

    def recorder(name: str) -> Any:
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            sizes[name] = [int(v) for v in args[0].shape[-2:]]

        return hook

    handles = [module.register_forward_pre_hook(recorder(name)) for name, module in targets.items()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size))
    finally:
        for handle in handles:
            handle.remove()
    for name, module in targets.items():
        assert isinstance(module, nn.Conv2d)
        pads = pad_same_arg(sizes[name], list(module.weight.shape[-2:]), list(module.stride), list(module.dilation))
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, StaticPadConv2d(module, pads))
    return len(targets)


def first_weighted_nodes(graph: Any) -> list[str]:
    """Names of the weighted nodes (Conv, Gemm, ...) first reached from the graph inputs, and of the nodes before them.

    The nodes between the input and those (a ``Pad`` of 'same' padding) stay with
    them: a quantized ``Pad`` feeding a float32 convolution ran wrong in ONNX Runtime's
    integer kernels (measured: labels of 30 % of BUSI test images changed).
    """
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    found: list[str] = []
    seen: set[str] = set()
    frontier = [i.name for i in graph.input]
    while frontier:
        tensor = frontier.pop()
        for node in consumers.get(tensor, []):
            if node.name in seen:
                continue
            seen.add(node.name)
            found.append(node.name)
            if node.op_type not in WEIGHTED_OPS:
                frontier.extend(node.output)
    return sorted(found)


def last_weighted_nodes(graph: Any) -> list[str]:
    """Names of the weighted nodes (Conv, Gemm, ...) last reached before each graph output."""
    producer = {name: node for node in graph.node for name in node.output}
    found: list[str] = []
    seen: set[str] = set()
    frontier = [o.name for o in graph.output]
    while frontier:
        node = producer.get(frontier.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in WEIGHTED_OPS:
            found.append(node.name)
        else:
            frontier.extend(node.input)
    return sorted(found)


def shape_arithmetic_nodes(graph: Any) -> list[str]:
    """Names of the nodes computing a ``Pad``'s pads from a tensor's shape (dynamic 'same' padding).

    Empty after :func:`static_same_padding` (the pads are then a constant initializer).
    """
    producer = {name: node for node in graph.node for name in node.output}
    found: set[str] = set()
    frontier = [node.input[1] for node in graph.node if node.op_type == "Pad" and len(node.input) > 1]
    while frontier:
        node = producer.get(frontier.pop())
        if node is None or node.name in found:
            continue
        found.add(node.name)
        if node.op_type != "Shape":
            frontier.extend(node.input)
    return sorted(found)
