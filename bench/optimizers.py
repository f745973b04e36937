"""Every method as data: its update rule written once, and how each framework's optimizer maps onto it.

**Rules.** A rule is one function ``update(p, g, state, step, hp) -> (delta, state)``: the step to
subtract (θ ← θ − delta) and the new slot values, written in array arithmetic that numpy, torch,
TensorFlow and JAX all accept (``+ - * /`` and ``** 0.5``). ``step.t`` is the step number (1 for
the first update) and ``step.one_minus_pow(β)`` is 1 − βᵗ in the parameters' precision, computed by
each adapter without cancellation. The same function runs in the toy paths (numpy, float64), in
``bench.parity``'s float64 reference, and in every framework's ``optimizer.impl=reference``
(a thin adapter per framework: in place for torch, ``assign`` for TensorFlow, functional for optax).

**Native calls.** :data:`NATIVE` gives the exact keyword arguments of each framework's built-in
optimizer for a rule, every hyperparameter explicit so that a change of library defaults cannot
change what is run. Where native computes something else, ``computes`` names the rule it does
compute (also written once here) and ``residual`` says the difference in words: a real framework
difference, shown by ``python -m bench.parity``, not a bug to chase.

**Methods.** :data:`METHODS` are what ``conf/optimizer/<name>.yaml`` selects: a rule with a batch
size. The tutorial's six come first; the ones after them are "beyond the tutorial".

Adding an optimizer is this file (its rule, native entries and method) and its conf file.
This module imports no framework.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class Step(Protocol):
    """The step counter as a rule sees it; each adapter provides one."""

    t: Any

    def one_minus_pow(self, beta: float) -> Any:
        """1 − βᵗ, in the precision of the parameters."""


class NumpyStep:
    """The counter of the float64 paths (toy, parity's exact reference): plain Python floats."""

    def __init__(self, t: int) -> None:
        self.t = t

    def one_minus_pow(self, beta: float) -> float:
        return 1.0 - beta**self.t


Update = Callable[[Any, Any, Mapping[str, Any], Step, Mapping[str, float]], tuple[Any, dict[str, Any]]]


@dataclass(frozen=True)
class Rule:
    name: str
    update: Update
    slots: tuple[str, ...]  # optimizer state per parameter, each zeros shaped like it at the start
    hparams: tuple[str, ...]  # in the tutorial's notation; conf/optimizer/<method>.yaml gives each
    formula: str


RULES: dict[str, Rule] = {}


def rule(slots: tuple[str, ...], hparams: tuple[str, ...], formula: str) -> Callable[[Update], Update]:
    """Register ``update`` as the rule named after the function."""
    def register(update: Update) -> Update:
        RULES[update.__name__] = Rule(update.__name__, update, slots, hparams, formula)
        return update
    return register


def get_rule(name: str) -> Rule:
    """The rule called ``name``; an unknown rule is an error, never a fallback to another one."""
    try:
        return RULES[name]
    except KeyError:
        raise ValueError(f"unknown update rule {name!r}; known: {', '.join(RULES)}") from None


# ---------------------------------------------------------------- the rules, each written once
@rule((), ("lr",), "θ ← θ − η g")
def sgd(p, g, s, step, hp):
    return hp["lr"] * g, {}


@rule(("v",), ("lr", "beta"), "v ← βv + (1−β)g;  θ ← θ − ηv")
def momentum(p, g, s, step, hp):
    v = s["v"] * hp["beta"] + (1.0 - hp["beta"]) * g
    return hp["lr"] * v, {"v": v}


@rule(("v",), ("lr", "beta"), "v ← βv + (1−β)g;  θ ← θ − η(βv + (1−β)g)")
def nesterov(p, g, s, step, hp):
    v = s["v"] * hp["beta"] + (1.0 - hp["beta"]) * g
    return hp["lr"] * (v * hp["beta"] + (1.0 - hp["beta"]) * g), {"v": v}


@rule(("s",), ("lr", "beta", "eps"), "s ← βs + (1−β)g²;  θ ← θ − η g/(√s + ε)")
def rmsprop(p, g, s, step, hp):
    sq = s["s"] * hp["beta"] + (1.0 - hp["beta"]) * (g * g)
    return hp["lr"] * g / (sq**0.5 + hp["eps"]), {"s": sq}


@rule(("s",), ("lr", "beta", "eps"), "s ← βs + (1−β)g²;  θ ← θ − η g/√(s + ε)")
def rmsprop_eps_in_root(p, g, s, step, hp):
    sq = s["s"] * hp["beta"] + (1.0 - hp["beta"]) * (g * g)
    return hp["lr"] * g / (sq + hp["eps"]) ** 0.5, {"s": sq}


@rule(("s",), ("lr", "eps"), "s ← s + g²;  θ ← θ − η g/(√s + ε)")
def adagrad(p, g, s, step, hp):
    sq = s["s"] + g * g
    return hp["lr"] * g / (sq**0.5 + hp["eps"]), {"s": sq}


@rule(("s",), ("lr", "eps"), "s ← s + g²;  θ ← θ − η g/√(s + ε)")
def adagrad_eps_in_root(p, g, s, step, hp):
    sq = s["s"] + g * g
    return hp["lr"] * g / (sq + hp["eps"]) ** 0.5, {"s": sq}


def _moments(g, s, hp):
    m = s["m"] * hp["beta1"] + (1.0 - hp["beta1"]) * g
    v = s["v"] * hp["beta2"] + (1.0 - hp["beta2"]) * (g * g)
    return m, v


@rule(("m", "v"), ("lr", "beta1", "beta2", "eps"),
      "m ← β₁m + (1−β₁)g;  v ← β₂v + (1−β₂)g²;  θ ← θ − η m̂/(√v̂ + ε),  m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ)")
def adam(p, g, s, step, hp):
    m, v = _moments(g, s, hp)
    m_hat, v_hat = m / step.one_minus_pow(hp["beta1"]), v / step.one_minus_pow(hp["beta2"])
    return hp["lr"] * m_hat / (v_hat**0.5 + hp["eps"]), {"m": m, "v": v}


@rule(("m", "v"), ("lr", "beta1", "beta2", "eps"), "Adam with ε-hat: θ ← θ − η m̂/(√v̂ + ε/√(1−β₂ᵗ))")
def adam_eps_hat(p, g, s, step, hp):
    m, v = _moments(g, s, hp)
    c2 = step.one_minus_pow(hp["beta2"])
    m_hat, v_hat = m / step.one_minus_pow(hp["beta1"]), v / c2
    return hp["lr"] * m_hat / (v_hat**0.5 + hp["eps"] / c2**0.5), {"m": m, "v": v}


@rule(("m", "v"), ("lr", "beta1", "beta2", "eps", "weight_decay"),
      "Adam with decoupled weight decay λ: θ ← θ − η(m̂/(√v̂ + ε) + λθ)")
def adamw(p, g, s, step, hp):
    delta, state = adam(p, g, s, step, hp)
    return hp["lr"] * hp["weight_decay"] * p + delta, state


@rule(("m", "v"), ("lr", "beta1", "beta2", "eps", "weight_decay"), "AdamW with Keras' ε-hat (see adam_eps_hat)")
def adamw_eps_hat(p, g, s, step, hp):
    delta, state = adam_eps_hat(p, g, s, step, hp)
    return hp["lr"] * hp["weight_decay"] * p + delta, state


# ---------------------------------------------------------------- native calls
@dataclass(frozen=True)
class Native:
    """A framework's built-in optimizer for a rule: torch.optim class, keras.optimizers class or
    optax function, with the keyword arguments as a function of the tutorial's hyperparameters."""

    call: str
    kwargs: Callable[[Mapping[str, float]], dict[str, Any]]
    computes: str = ""  # the rule native really computes, where it is not the method's own
    residual: str = ""  # that difference in words ("" = native computes the rule exactly)


def _ema_lr(hp: Mapping[str, float]) -> float:
    """The tutorial's EMA momentum v ← βv + (1−β)g with η is native momentum b ← βb + g with
    lr = η(1−β): v = (1−β)b, the same iterates."""
    return hp["lr"] * (1.0 - hp["beta"])


def _momentum_natives(rule_name: str, nesterov: bool) -> dict[tuple[str, str], Native]:
    """SGD with momentum β (and the Nesterov look-ahead or not) in each framework, every argument given."""
    return {
        (rule_name, "torch"): Native("SGD", lambda hp: dict(
            lr=_ema_lr(hp), momentum=hp["beta"], dampening=0.0, weight_decay=0.0, nesterov=nesterov)),
        (rule_name, "tensorflow"): Native("SGD", lambda hp: dict(
            learning_rate=_ema_lr(hp), momentum=float(hp["beta"]), nesterov=nesterov)),
        (rule_name, "jax"): Native("sgd", lambda hp: dict(
            learning_rate=_ema_lr(hp), momentum=hp["beta"], nesterov=nesterov, accumulator_dtype=None)),
    }


NATIVE: dict[tuple[str, str], Native] = {
    ("sgd", "torch"): Native("SGD", lambda hp: dict(
        lr=hp["lr"], momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False)),
    ("sgd", "tensorflow"): Native("SGD", lambda hp: dict(learning_rate=hp["lr"], momentum=0.0, nesterov=False)),
    ("sgd", "jax"): Native("sgd", lambda hp: dict(
        learning_rate=hp["lr"], momentum=None, nesterov=False, accumulator_dtype=None)),
    # torch: b ← βb + g, θ −= lr·b.  Keras: u ← βu − lr·g, θ += u (u = −lr·b, the same iterates;
    # Keras insists on a float momentum).  optax: trace b ← g + βb, θ −= lr·b.
    **_momentum_natives("momentum", nesterov=False),
    # Nesterov: torch b ← βb + g, θ −= lr(g + βb); Keras u ← βu − lr·g, θ += βu − lr·g; optax trace with
    # nesterov=True, θ −= lr(g + βb). With lr = η(1−β) all three are the EMA form's iterates exactly.
    **_momentum_natives("nesterov", nesterov=True),
    ("rmsprop", "torch"): Native("RMSprop", lambda hp: dict(
        lr=hp["lr"], alpha=hp["beta"], eps=hp["eps"], weight_decay=0.0, momentum=0.0, centered=False)),
    ("rmsprop", "tensorflow"): Native("RMSprop", lambda hp: dict(
        learning_rate=hp["lr"], rho=hp["beta"], epsilon=hp["eps"], momentum=0.0, centered=False),
        computes="rmsprop_eps_in_root", residual="Keras puts ε inside the root: θ −= lr·g/√(s + ε)"),
    # optax's default eps_in_sqrt=True is Keras' form; eps_in_sqrt=False is the tutorial's.
    ("rmsprop", "jax"): Native("rmsprop", lambda hp: dict(
        learning_rate=hp["lr"], decay=hp["beta"], eps=hp["eps"], initial_scale=0.0, eps_in_sqrt=False,
        centered=False, momentum=None, nesterov=False, bias_correction=False)),
    # torch: θ −= lr·g/(√s + ε), the formula. Keras and optax put ε inside the root; both start
    # the sum at 0.1 unless told (torch at 0), so 0 is passed.
    ("adagrad", "torch"): Native("Adagrad", lambda hp: dict(
        lr=hp["lr"], lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=hp["eps"])),
    ("adagrad", "tensorflow"): Native("Adagrad", lambda hp: dict(
        learning_rate=hp["lr"], initial_accumulator_value=0.0, epsilon=hp["eps"]),
        computes="adagrad_eps_in_root", residual="Keras puts ε inside the root: θ −= lr·g/√(s + ε)"),
    ("adagrad", "jax"): Native("adagrad", lambda hp: dict(
        learning_rate=hp["lr"], initial_accumulator_value=0.0, eps=hp["eps"]),
        computes="adagrad_eps_in_root", residual="optax puts ε inside the root: θ −= lr·g/√(s + ε)"),
    ("adam", "torch"): Native("Adam", lambda hp: dict(
        lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"], weight_decay=0.0, amsgrad=False)),
    ("adam", "tensorflow"): Native("Adam", lambda hp: dict(
        learning_rate=hp["lr"], beta_1=hp["beta1"], beta_2=hp["beta2"], epsilon=hp["eps"], amsgrad=False),
        computes="adam_eps_hat",
        residual="Keras uses ε-hat: θ −= lr·m̂/(√v̂ + ε/√(1−β₂ᵗ)); larger ε early on"),
    # optax: θ −= lr·m̂/(√(v̂ + eps_root) + ε), the tutorial's form with eps_root=0. Its 1 − βᵗ is taken
    # in float32 (1.3e-5 off at t = 1 for β = 0.999): rounding, but 10x the reference's after 50 steps.
    ("adam", "jax"): Native("adam", lambda hp: dict(
        learning_rate=hp["lr"], b1=hp["beta1"], b2=hp["beta2"], eps=hp["eps"], eps_root=0.0, mu_dtype=None,
        nesterov=False)),
    # AdamW: torch scales θ by 1 − lr·λ before its Adam step, Keras subtracts lr·λ·θ before its own
    # (ε-hat) Adam step, optax adds λθ to the Adam direction: the same decay of the pre-step θ.
    ("adamw", "torch"): Native("AdamW", lambda hp: dict(
        lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"], weight_decay=hp["weight_decay"],
        amsgrad=False)),
    ("adamw", "tensorflow"): Native("AdamW", lambda hp: dict(
        learning_rate=hp["lr"], weight_decay=hp["weight_decay"], beta_1=hp["beta1"], beta_2=hp["beta2"],
        epsilon=hp["eps"], amsgrad=False),
        computes="adamw_eps_hat", residual="Keras' Adam step uses ε-hat: ε/√(1−β₂ᵗ) in place of ε"),
    ("adamw", "jax"): Native("adamw", lambda hp: dict(
        learning_rate=hp["lr"], b1=hp["beta1"], b2=hp["beta2"], eps=hp["eps"], eps_root=0.0, mu_dtype=None,
        weight_decay=hp["weight_decay"], mask=None, nesterov=False)),
}


def native(rule_name: str, framework: str) -> Native:
    try:
        return NATIVE[(rule_name, framework)]
    except KeyError:
        raise ValueError(f"no native optimizer for rule={rule_name!r} framework={framework!r}") from None


def native_kwargs(rule_name: str, framework: str, hp: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(class or function name, keyword arguments) of the native optimizer for ``rule_name``.

    torch classes live in ``torch.optim``, TensorFlow ones in ``keras.optimizers``, JAX ones are
    ``optax`` functions.
    """
    entry = native(rule_name, framework)
    return entry.call, entry.kwargs({k: float(hp[k]) for k in get_rule(rule_name).hparams})


def computed_rule(rule_name: str, framework: str, impl: str) -> str:
    """The rule a framework's optimizer computes: the method's own, or the variant its native one has."""
    if impl == "native":
        return native(rule_name, framework).computes or rule_name
    return rule_name


# What native cannot match exactly, per rule and framework ("" = exact match).
RESIDUAL: dict[tuple[str, str], str] = {key: entry.residual for key, entry in NATIVE.items()}


# ---------------------------------------------------------------- methods
@dataclass(frozen=True)
class Method:
    """What ``optimizer=<name>`` selects: a rule and the batch it sees."""

    name: str
    rule: str
    batch_size: int | None  # the method's own batch; None = the whole training set
    colour: str  # in the toy figures, the same for a method everywhere
    toy_lr: float  # its step size on the toy's Rosenbrock surface (the tutorial's x² uses η 0.1 for all)
    tutorial: bool = True  # one of the tutorial's six; the others are "beyond the tutorial"

    @property
    def formula(self) -> str:
        batch = {None: "  (whole training set per step)", 1: "  (one sample per step)"}.get(self.batch_size, "")
        return get_rule(self.rule).formula + batch


# Rosenbrock's curvature (up to ~2,000 at the start) caps plain GD at η ≈ 1e-3; the adaptive
# methods take steps of about η per coordinate, so they get a larger one.
METHODS: dict[str, Method] = {m.name: m for m in (
    Method("bgd", "sgd", None, "#000000", 1e-3),
    Method("sgd", "sgd", 1, "#9c36b5", 1e-3),
    Method("minibatch", "sgd", 32, "#2f9e44", 1e-3),
    Method("momentum", "momentum", 32, "#e67700", 1e-2),
    Method("rmsprop", "rmsprop", 32, "#1971c2", 2e-2),
    Method("adam", "adam", 32, "#c2255c", 5e-2),
    Method("nesterov", "nesterov", 32, "#a0522d", 1e-2, tutorial=False),
    Method("adagrad", "adagrad", 32, "#868e96", 1e-1, tutorial=False),
    Method("adamw", "adamw", 32, "#7950f2", 5e-2, tutorial=False),
)}
TUTORIAL_METHODS = tuple(name for name, m in METHODS.items() if m.tutorial)


def required_hparams(method: str) -> tuple[str, ...]:
    return get_rule(METHODS[method].rule).hparams
