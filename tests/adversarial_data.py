"""Adversarial tensors for the exactness tests of the quantile engine and the statistics."""

import torch


def adversarial(kind: str, n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if kind == "normal":
        return torch.randn(n, generator=g)
    if kind == "ties":
        return torch.randint(-3, 4, (n,), generator=g).float()
    if kind == "constant":
        return torch.full((n,), -2.5)
    if kind == "zeros":
        return torch.zeros(n)
    if kind == "mostly_zeros":
        values = torch.randn(n, generator=g)
        return torch.where(torch.rand(n, generator=g) < 0.7, 0.0, values)
    if kind == "cauchy":
        return torch.empty(n).cauchy_(generator=g)
    if kind == "bimodal":
        values = torch.randn(n, generator=g) * 0.01
        return values + torch.where(torch.rand(n, generator=g) < 0.5, -5.0, 5.0)
    if kind == "column_scales":
        columns = 64
        rows = -(-n // columns)
        scales = torch.logspace(-4, 4, columns)
        return (torch.randn(rows, columns, generator=g) * scales).reshape(-1)[:n]
    if kind == "subnormals":
        return torch.randn(n, generator=g) * 1e-39
    if kind == "sorted":
        return torch.sort(torch.randn(n, generator=g)).values
    raise ValueError(kind)
