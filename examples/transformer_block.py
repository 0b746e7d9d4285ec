# One pre-norm transformer encoder block: layer norm, causal multi-head self-attention, GELU MLP, two residuals.
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
d_model, n_heads, seq = 16, 2, 8
ln1 = nn.LayerNorm(d_model)
qkv_proj = nn.Linear(d_model, 3 * d_model)
out_proj = nn.Linear(d_model, d_model)
ln2 = nn.LayerNorm(d_model)
mlp = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model))

x = torch.randn(1, seq, d_model, requires_grad=True)
B, T, C = x.shape
q, k, v = qkv_proj(ln1(x)).chunk(3, dim=-1)
q = q.view(B, T, n_heads, C // n_heads).transpose(1, 2)
k = k.view(B, T, n_heads, C // n_heads).transpose(1, 2)
v = v.view(B, T, n_heads, C // n_heads).transpose(1, 2)
att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
att = att.transpose(1, 2).reshape(B, T, C)
x = x + out_proj(att)  # first residual
x = x + mlp(ln2(x))  # second residual
loss = x.pow(2).mean()
loss.backward()
