"""The span ranker's fits, on plain arrays: listwise rankers, a logistic confidence, the
two heads on the generator's state, out-of-fold scores and the abstention threshold.

A *group* is one question's candidate spans: ``x`` (candidates, features) and ``f1``
(each candidate's token F1 against the gold). A listwise fit pulls the softmax of the
scores over each group toward its best-F1 candidates (ties share the mass); groups
where no candidate overlaps the gold teach nothing and are left out.

    >>> x = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    >>> w = fit_listwise([(x, np.array([0.0, 1.0]))], ["a", "b"], epochs=50)
    >>> w["b"] > 0 > w["a"]
    True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ragmem.span_ranking import StateHead

Group = tuple[np.ndarray, np.ndarray]  # (candidates, features) matrix, each one's F1
# fit on (states, f1, group), score other states
FitAndScore = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def padded_groups(groups: Sequence[Group]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Groups with some F1 > 0 as one padded tensor: features, target (the best-F1
    candidates share the mass) and the mask of real rows."""
    items = [(x, y) for x, y in groups if len(y) and y.max() > 0]
    if not items:
        raise ValueError("no question has a candidate that overlaps its gold answer: "
                         "use more questions")
    width = max(len(y) for _, y in items)
    x = torch.zeros(len(items), width, items[0][0].shape[1])
    target = torch.zeros(len(items), width)
    mask = torch.zeros(len(items), width, dtype=torch.bool)
    for g, (xg, yg) in enumerate(items):
        n = len(yg)
        x[g, :n] = torch.from_numpy(np.asarray(xg, dtype=np.float32))
        best = torch.from_numpy((yg == yg.max()).astype(np.float32))
        target[g, :n] = best / best.sum()
        mask[g, :n] = True
    return x, target, mask


def listwise_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits.masked_fill(~mask, float("-inf")), 1).masked_fill(~mask, 0)
    return -(target * logp).sum() / len(logits)


def fit_listwise(groups: Sequence[Group], names: Sequence[str], l2: float = 1e-3,
                 epochs: int = 300) -> dict[str, float]:
    """Named weights of a linear score, fitted listwise (Adam from zero; a feature that
    never varies keeps weight 0 and is left out), rounded to 5 places as shipped."""
    x, target, mask = padded_groups(groups)
    w = torch.zeros(len(names), requires_grad=True)
    opt = torch.optim.Adam([w], lr=0.05)
    for _ in range(epochs):
        opt.zero_grad()
        loss = listwise_loss(x @ w, target, mask) + l2 * (w ** 2).sum()
        loss.backward()
        opt.step()
    return {k: round(float(v), 5) for k, v in zip(names, w.detach(), strict=True) if v != 0}


def fit_logistic(x: np.ndarray, y: np.ndarray, names: Sequence[str], l2: float = 1e-3,
                 epochs: int = 2000) -> tuple[dict[str, float], float]:
    """Named weights and bias of a logistic model of ``y`` (0/1) on ``x``."""
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    w = torch.zeros(len(names), requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05)
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt)
        (loss + l2 * (w ** 2).sum()).backward()
        opt.step()
    return ({k: round(float(v), 5) for k, v in zip(names, w.detach(), strict=True)},
            round(float(b.detach()), 5))


def groups_of(x: np.ndarray, f1: np.ndarray, group: np.ndarray) -> list[Group]:
    """Rows of ``x`` and ``f1`` cut into groups by ``group`` (question ids, ascending)."""
    return [(x[group == g], f1[group == g]) for g in np.unique(group)]


def fit_linear_head(states: np.ndarray, f1: np.ndarray, group: np.ndarray, l2: float,
                    epochs: int = 300) -> np.ndarray:
    """A listwise linear head on the generator's states (standardised inside, folded
    back): weights then bias, so ``state @ w[:-1] + w[-1]`` is its score."""
    mu, sd = states.mean(0), states.std(0) + 1e-3
    z = (states - mu) / sd
    w = fit_listwise(groups_of(z, f1, group), [str(k) for k in range(z.shape[1])], l2, epochs)
    v = np.array([w.get(str(k), 0.0) for k in range(z.shape[1])], dtype=np.float32)
    return np.concatenate([v / sd, [-(mu / sd) @ v]]).astype(np.float32)


def fit_mlp_head(states: np.ndarray, f1: np.ndarray, group: np.ndarray, units: int,
                 l2: float, epochs: int = 300, seed: int = 0) -> dict[str, np.ndarray]:
    """A listwise head of a linear part and ``units`` GELU units (tanh form) on the
    states; returned folded back onto the raw state as ``StateHead`` reads it:
    ``linear`` (size + 1), ``hidden`` (units, size + 1) and ``out`` (units + 1)."""
    torch.manual_seed(seed)
    mu, sd = states.mean(0), states.std(0) + 1e-3
    z = (states - mu) / sd
    xt, target, mask = padded_groups(groups_of(z, f1, group))
    inner = torch.nn.Linear(states.shape[1], units)
    outer = torch.nn.Linear(units, 1)
    linear = torch.nn.Linear(states.shape[1], 1, bias=False)
    opt = torch.optim.Adam([*inner.parameters(), *outer.parameters(), *linear.parameters()],
                           lr=0.01)
    gelu = torch.nn.GELU(approximate="tanh")
    for _ in range(epochs):
        opt.zero_grad()
        logits = (outer(gelu(inner(xt))) + linear(xt))[..., 0]
        penalty = sum((m.weight ** 2).sum() for m in (inner, outer, linear))
        (listwise_loss(logits, target, mask) + l2 * penalty).backward()
        opt.step()
    w1 = inner.weight.detach().numpy() / sd  # z = (x - mu) / sd folded into the weights
    b1 = inner.bias.detach().numpy() - w1 @ mu
    v = linear.weight.detach().numpy()[0] / sd
    head = {"linear": np.r_[v, -(v @ mu)].astype(np.float32),
            "hidden": np.c_[w1, b1].astype(np.float32),
            "out": np.r_[outer.weight.detach().numpy()[0],
                         outer.bias.detach().numpy()].astype(np.float32)}
    with torch.inference_mode():  # the folded head scores as the fitted one
        zt = torch.from_numpy(z[:64].astype(np.float32))
        fitted = (outer(gelu(inner(zt))) + linear(zt))[..., 0].numpy()
    if not np.allclose(mlp_scores(head, states[:64]), fitted, rtol=1e-3, atol=1e-3):
        raise ArithmeticError("the MLP head folded onto raw states scores otherwise than "
                              "fitted: states too large for float32? check the inputs")
    return head


def mlp_scores(head: dict[str, np.ndarray], states: np.ndarray) -> np.ndarray:
    """The MLP head's score of each state, as the answerer reads it."""
    return StateHead(0, head["linear"], head["hidden"], head["out"]).score(states)


def linear_scores(head: np.ndarray, states: np.ndarray) -> np.ndarray:
    return np.asarray(states @ head[:-1] + head[-1], dtype=np.float32)


def out_of_fold(states: np.ndarray, f1: np.ndarray, group: np.ndarray, folds: int,
                fit_and_score: FitAndScore) -> np.ndarray:
    """Each candidate's score from a head fitted without its question's fold (questions
    are dealt to ``folds`` folds in turn), so that the second stage is fitted on the
    scores a head gives to questions it has not seen. ``fit_and_score(states, f1,
    group, rows_to_score)`` fits on the first three and scores the fourth."""
    questions = np.unique(group)
    fold_of = {g: k % folds for k, g in enumerate(questions)}
    fold = np.array([fold_of[g] for g in group])
    out = np.zeros(len(group), dtype=np.float32)
    for k in range(folds):
        train = fold != k
        if (~train).any():
            out[~train] = fit_and_score(states[train], f1[train], group[train], states[~train])
    return out


def choose_threshold(confidence: np.ndarray, f1: np.ndarray, answerable: np.ndarray,
                     max_loss: float, step: float = 0.02
                     ) -> tuple[float, list[dict[str, float]]]:
    """The highest confidence threshold (in ``step``s) whose abstentions lose at most
    ``max_loss`` of the mean F1 on answerable questions, and the whole table: for each
    threshold, the F1 lost and the share of absent questions it abstains on."""
    absent = ~answerable
    base = f1[answerable].mean()
    table, best = [], 0.0
    for t in np.round(np.arange(0.0, 1.0, step), 2):
        keep = confidence >= t
        loss = base - (f1 * keep)[answerable].mean()
        abstain = float((~keep)[absent].mean()) if absent.any() else 0.0
        table.append({"abstain_below": float(t), "f1_loss": round(float(loss), 4),
                      "abstain_absent": round(abstain, 4)})
        if loss <= max_loss:
            best = float(t)
    return best, table
