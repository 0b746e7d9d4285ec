"""torch.distributions' Categorical and Normal and torch.multinomial, traced as torch's own code composes them: the
programs of PyTorch's reinforcement learning examples (reinforce.py, a Gaussian policy) and makemore's sampling give
torch's samples, values, gradients and grad_fns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_program_pytorch import _refused, in_torch, same_as_torch, traced

HEAD = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"

REINFORCE = HEAD + """from torch.distributions import Categorical
torch.manual_seed(543)
class Policy(nn.Module):
    def __init__(self):
        super(Policy, self).__init__()
        self.affine1 = nn.Linear(4, 128)
        self.dropout = nn.Dropout(p=0.6)
        self.affine2 = nn.Linear(128, 2)
    def forward(self, x):
        x = self.affine1(x)
        x = self.dropout(x)
        x = F.relu(x)
        action_scores = self.affine2(x)
        return F.softmax(action_scores, dim=1)
policy = Policy()
state = torch.randn(4).unsqueeze(0)
probs = policy(state)
m = Categorical(probs)
action = m.sample()
log_prob = m.log_prob(action)
ent = m.entropy()
loss = (-log_prob * 1.5 - 0.01 * ent).sum()
loss.backward()
"""


def test_reinforce_samples_and_scores_its_action_as_torch(tmp_path: Path) -> None:
    """PyTorch's reinforce.py policy: Categorical(probs).sample() draws torch's action (multinomial's exponential race,
    in program order after the dropout mask), log_prob and entropy give torch's numbers and gradients; m.probs is the
    normalised probs, named for the variable."""
    t = traced(REINFORCE, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(REINFORCE, tmp_path)
    same_as_torch(t, g, ["policy", "state", "probs", "action", "log_prob", "ent", "loss"], exact=True)
    nodes = t.result.nodes
    assert [nodes[k].grad_fn for k in ("log_prob", "ent", "m.probs")] == ["SqueezeBackward1", "NegBackward0", "DivBackward0"]
    assert nodes["action"].dtype == "int64" and nodes["action"].grad_fn is None


GAUSSIAN = HEAD + """import torch.distributions as D
from torch.distributions.normal import Normal
torch.manual_seed(0)
mu_net = nn.Linear(3, 2)
log_std = nn.Parameter(torch.zeros(2))
s = torch.randn(5, 3)
mu = mu_net(s)
std = log_std.exp()
dist = Normal(mu, std)
a = dist.sample()
lp = dist.log_prob(a).sum(-1)
r = dist.rsample()
ent = dist.entropy().sum(-1)
n2 = Normal(mu, 0.5)
lp2 = n2.log_prob(r)
logits = torch.randn(5, 4, requires_grad=True)
c = D.Categorical(logits=logits)
acts = c.sample()
lpc = c.log_prob(acts)
pr = c.probs
ec = c.entropy()
mode = c.mode
loss = (-(lp * 2.0).mean() + r.pow(2).mean() - 0.01 * ent.mean() + lp2.sum() - lpc.mean() + ec.sum() + pr[:, 0].sum()
        + dist.variance.sum() + dist.stddev.sum() + dist.mean.sum())
loss.backward()
"""


def test_gaussian_policy_and_categorical_of_logits_as_torch(tmp_path: Path) -> None:
    """Normal(mu, std): sample() (no graph), rsample() (through loc and scale), log_prob, entropy, variance; a number as
    scale (broadcast_all's tensor); Categorical(logits=...) with its probs made by softmax on use: torch's numbers,
    samples and grad_fns."""
    t = traced(GAUSSIAN, engines=["torch", "reference", "numeric"])
    assert t.result.comparison.verdict == "agree"
    g = in_torch(GAUSSIAN, tmp_path)
    same_as_torch(t, g, ["mu_net", "log_std", "s", "mu", "a", "lp", "r", "ent", "lp2", "logits", "acts", "lpc", "ec", "mode",
                         "loss"])
    np.testing.assert_allclose(t.arrays["torch/value/c.probs"], g["pr"].detach().numpy(), rtol=2e-6)  # pr: an alias of it
    nodes = t.result.nodes
    assert nodes["a"].grad_fn is None and nodes["r"].grad_fn == type(g["r"].grad_fn).__name__ == "AddBackward0"
    assert [nodes[k].grad_fn for k in ("lp2", "ec", "c.probs")] == [type(g[k].grad_fn).__name__ for k in ("lp2", "ec", "pr")]


def test_multinomial_draws_as_torch_with_a_generator(tmp_path: Path) -> None:
    """makemore's sampling, torch.multinomial(probs, num_samples=1, replacement=True, generator=g), five draws without
    replacement (topk of the race) and probs.multinomial(1) on the global generator: torch's indices."""
    program = HEAD + ("torch.manual_seed(0)\ng = torch.Generator().manual_seed(2147483647)\nW = torch.randn((27, 27), generator=g, requires_grad=True)\n"
                      "xenc = F.one_hot(torch.tensor([0, 5, 13]), num_classes=27).float()\nlogits = xenc @ W\n"
                      "counts = logits.exp()\nprobs = counts / counts.sum(1, keepdims=True)\n"
                      "ix = torch.multinomial(probs, num_samples=1, replacement=True, generator=g)\n"
                      "ix2 = torch.multinomial(probs[0], 5, generator=g)\nix3 = probs.multinomial(1)\n"
                      "loss = -probs[torch.arange(3), ix[:, 0]].log().mean() + probs[0, ix2].sum() + probs.gather(1, ix3).sum()\n"
                      "loss.backward()\n")
    t = traced(program)
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(program, tmp_path), ["W", "probs", "ix", "ix2", "ix3", "loss"], exact=True)


@pytest.mark.parametrize(("body", "message"), [
    ("from torch.distributions import Categorical\nc = Categorical(probs=torch.rand(4), logits=torch.rand(4))\n",
     "Either `probs` or `logits` must be specified, but not both"),
    ("from torch.distributions import Categorical\nc = Categorical(torch.tensor(0.5))\n", "at least one-dimensional"),
    ("import torch.distributions as D\nc = D.Normal(torch.zeros(2), 1.0)\nq = c.cdf(torch.zeros(2))\n", "Normal.cdf is not traced"),
    ("s = torch.multinomial(torch.rand(3), 4)\n", "cannot sample n_sample > prob_dist.size(-1) samples without replacement"),
])
def test_what_is_not_traced_is_refused_in_torch_terms(body: str, message: str) -> None:
    assert message in str(_refused(body))


ACTOR_CRITIC = HEAD + """from torch.distributions import Categorical
torch.manual_seed(543)
class Policy(nn.Module):
    def __init__(self):
        super(Policy, self).__init__()
        self.affine1 = nn.Linear(4, 128)
        self.action_head = nn.Linear(128, 2)
        self.value_head = nn.Linear(128, 1)
    def forward(self, x):
        x = F.relu(self.affine1(x))
        action_prob = F.softmax(self.action_head(x), dim=-1)
        state_values = self.value_head(x)
        return action_prob, state_values
model = Policy()
state = torch.randn(4)
probs, state_value = model(state)
m = Categorical(probs)
action = m.sample()
log_prob = m.log_prob(action)
R = 1.5
advantage = R - state_value.item()
policy_loss = -log_prob * advantage
value_loss = F.smooth_l1_loss(state_value, torch.tensor([R]))
loss = policy_loss + value_loss
loss.backward()
"""


def test_actor_critic_uses_the_value_as_a_number(tmp_path: Path) -> None:
    """actor_critic.py's `advantage = R - value.item()` before backward(): the value as a node without grad (a note
    says torch has a Python number there), the policy gradient scaled by it, torch's gradients."""
    t = traced(ACTOR_CRITIC)
    assert t.result.comparison.verdict == "agree"
    g = in_torch(ACTOR_CRITIC, tmp_path)
    same_as_torch(t, g, ["model", "probs", "action", "log_prob", "policy_loss", "value_loss", "loss"])
    assert t.result.nodes["advantage"].grad_fn is None and any("is a Python number in torch" in n for n in t.result.notes)


FINISH_EPISODE = HEAD + """torch.manual_seed(0)
net = nn.Linear(4, 3)
saved_actions = []
for t in range(3):
    out = net(torch.randn(1, 4))
    probs = F.softmax(out[:, :2], dim=-1)
    saved_actions.append((torch.log(probs[0, t % 2]), out[:, 2]))
rewards = [1.0, 0.0, 1.0]
R = 0
returns = []
for r in rewards[::-1]:
    R = r + 0.99 * R
    returns.insert(0, R)
returns = torch.tensor(returns)
returns = (returns - returns.mean()) / (returns.std() + 1e-8)
policy_losses = []
value_losses = []
for (log_prob, value), R in zip(saved_actions, returns):
    advantage = R - value.item()
    policy_losses.append(-log_prob * advantage)
    value_losses.append(F.smooth_l1_loss(value, torch.tensor([R])))
loss = torch.stack(policy_losses).sum() + torch.stack(value_losses).sum()
loss.backward()
"""


def test_actor_critic_finish_episode_as_written(tmp_path: Path) -> None:
    """actor_critic.py's finish_episode: returns built with insert(0, R) and normalised, `for (log_prob, value), R in
    zip(saved_actions, returns)` (R a row of a tensor), `R - value.item()`, `torch.tensor([R])` (a copy without grad):
    torch's loss and gradients."""
    t = traced(FINISH_EPISODE)
    assert t.result.comparison.verdict == "agree"
    same_as_torch(t, in_torch(FINISH_EPISODE, tmp_path), ["net", "returns", "loss"])
