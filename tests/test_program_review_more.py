"""Programs from the reviews of audio and time-series code, PyTorch's own docs and tutorials, and gradient-debugging
snippets as posted on the forums, traced against real torch; and NeRF's hierarchical sampling (torch.searchsorted)."""

from __future__ import annotations

from pathlib import Path

from test_program_pytorch import in_torch, same_as_torch, traced

HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\ntorch.manual_seed(0)\n"


def test_nerf_sample_pdf_with_searchsorted(tmp_path: Path) -> None:
    # nerf-pytorch's sample_pdf: bins from searchsorted(cdf, u, right=True), clamped with torch.max/min of int64
    # tensors, gathered; the gradient flows through the gathered cdf
    program = HEAD + (
        "bins = torch.linspace(0, 1, 9)\nweights = torch.rand(16, 8, requires_grad=True)\n"
        "pdf = weights / weights.sum(-1, keepdim=True)\ncdf = torch.cumsum(pdf, -1)\n"
        "cdf = torch.cat([torch.zeros_like(cdf[..., :1]), cdf], -1)\nu = torch.rand(16, 5)\n"
        "inds = torch.searchsorted(cdf, u, right=True)\n"
        "below = torch.max(torch.zeros_like(inds - 1), inds - 1)\n"
        "above = torch.min((cdf.shape[-1] - 1) * torch.ones_like(inds), inds)\n"
        "inds_g = torch.stack([below, above], -1)\n"
        "matched_shape = [inds_g.shape[0], inds_g.shape[1], cdf.shape[-1]]\n"
        "cdf_g = torch.gather(cdf.unsqueeze(1).expand(matched_shape), 2, inds_g)\n"
        "bins_g = torch.gather(bins.unsqueeze(0).unsqueeze(0).expand(matched_shape), 2, inds_g)\n"
        "denom = cdf_g[..., 1] - cdf_g[..., 0]\ndenom = torch.where(denom < 1e-5, torch.ones_like(denom), denom)\n"
        "t = (u - cdf_g[..., 0]) / denom\nsamples = bins_g[..., 0] + t * (bins_g[..., 1] - bins_g[..., 0])\n"
        "b = torch.bucketize(torch.randn(4, 3), torch.tensor([-1.0, 0.0, 1.0]))\n"
        "loss = samples.sum() + (b * weights[:4, :3]).sum()\nloss.backward()\n")
    t = traced(program)
    assert t.result.nodes["inds"].dtype == "int64" and t.result.nodes["inds"].grad_fn is None
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(program, tmp_path), ["weights", "cdf", "inds", "below", "above", "samples", "b", "loss"])
