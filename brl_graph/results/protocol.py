"""The full-protocol tables of sections 3 and 4: ogbg-molhiv at 100 epochs over
OGB's ten seeds and Peptides-func at 60 over LRGB's four, beside the published rows.

Rows come from ``experiments/graph_property.py`` (``--epochs 100`` into
``ogbg-molhiv-e100.json``, ``--epochs 60`` into ``peptides-func-e60.json``) and
appear one by one as the runs finish; a missing or empty file is "not run yet".
Each model's figure is the test metric at its best validation epoch, per seed,
then mean ± sample std over the seeds. A target gets a verdict only once every
model it names has :attr:`Protocol.seeds` seeds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from brl_graph.labels import BRL, FULL, MPNN
from brl_graph.results.common import Verdict, clear_gap, commands_block, fmt, mean_std, table

NAMES = {BRL: "BRL", MPNN: "MPNN twin (K=0, widened)", FULL: "GPSConv multihead (widened)"}


class Earlier(NamedTuple):
    """Rows of an earlier recipe, shown below a protocol's table and never counted."""
    stem: str  # the results file, ``benchmarks/results/<stem>.json``
    what: str  # what differed, for the text
    # Overrides that make the rows' stored commands run the earlier recipe under
    # today's config; they are appended to each printed command.
    overrides: Tuple[str, ...] = ()


class Candidate(NamedTuple):
    """Rows of a recipe under test, shown below a protocol's table and not counted.

    Once the config takes the recipe over, its rows move into the protocol's own
    file, the rows they replace become an :class:`Earlier` recipe, and models the
    change touches run again under it. Once its rule turns it down, it becomes a
    :class:`Probe`, with that rule as its outcome.
    """
    stem: str  # the results file, ``benchmarks/results/<stem>.json``
    what: str  # what differs from the config and why, for the text
    # What the candidate sets on top of the config; appended to each printed
    # command that lacks it, so the commands run the candidate whatever wrote them.
    overrides: Tuple[str, ...]
    # The runs it was chosen on, (model, seed): left out of its figures, so that the
    # luck of the choice does not lift its mean.
    chosen_on: Tuple[Tuple[str, int], ...] = ()


class Probe(NamedTuple):
    """Rows of a recipe tried against the config and not taken over.

    They are shown below a protocol's table and never counted, so that a probe that
    left a row stays on the record beside the recipe that shipped.
    """
    stem: str  # the results file, ``benchmarks/results/<stem>.json``
    what: str  # what differed from the config, for the text
    # What the probe set on top of the config; appended to each printed command that lacks it.
    overrides: Tuple[str, ...]
    outcome: str  # a sentence: why it went no further, the gate and the figures


class GpuRun(NamedTuple):
    """The whole published protocol on a CUDA GPU, as one driver call."""
    what: str  # what the call runs, for the text
    options: str  # driver options beyond config, root, runs, models, seeds, device and JSON file


@dataclass(frozen=True)
class Protocol:
    """One benchmark's full protocol: where its rows are, what was published, the targets.

    ``targets`` maps a model to the mean it must reach; ``clear_of_mpnn`` also
    asks BRL's mean to exceed the MPNN twin's by more than the larger of their
    standard deviations over seeds.
    """
    stem: str
    title: str
    config: str
    epochs: int
    metric: str
    published: Tuple[Tuple[str, float, float], ...]  # (model, mean, std)
    source: str
    targets: Mapping[str, float]
    clear_of_mpnn: bool = False
    seeds: int = 4
    # An earlier seed count whose figures stay shown (each model's first
    # ``interim_seeds`` seeds) once the protocol asks for more; ``None``: none.
    interim_seeds: Optional[int] = None
    earlier: Tuple[Earlier, ...] = ()  # newest first: the first complete one can stand in
    candidates: Tuple[Candidate, ...] = ()
    probes: Tuple[Probe, ...] = ()  # newest first, as ``earlier``
    # How many probes ran against the config and what test figures mean for them,
    # including probes that left no row; shown before the candidates and probes.
    probes_note: str = ""
    gpu: Optional[GpuRun] = None
    note: str = ""  # which seeds run and why, when that needs saying

    def __post_init__(self) -> None:
        if self.interim_seeds is not None and not 0 < self.interim_seeds < self.seeds:
            raise ValueError(f"{self.stem}: interim_seeds ({self.interim_seeds}) must be a "
                             f"seed count between 1 and seeds - 1 ({self.seeds - 1})")

    def seed_list(self) -> str:
        """``0 1 ... seeds-1``, as the driver's ``--seeds`` takes them."""
        return " ".join(str(s) for s in range(self.seeds))

    def gpu_command(self) -> str:
        """The one ``graph_property.py`` call that runs :attr:`gpu` (``""``: none): BRL,
        the widened twin and GPSConv for each of the protocol's seeds, one run after
        another; calling it again resumes killed runs and skips finished rows."""
        if self.gpu is None:
            return ""
        return (f"python experiments/graph_property.py --config {self.config} --root DATA "
                f"--runs $BRL_RUNS/graph_property_gpu {self.gpu.options} "
                f"--models brl mpnn full --seeds {self.seed_list()} --device cuda "
                f"--json benchmarks/results/{self.stem.rsplit('-e', 1)[0]}-gpu.json")


# The gate every molhiv probe had to pass before its seeds 1-3 ran, fixed in RECIPE
# before each run: the shipped BRL seed 0's best valid.
_BELOW_GATE = ("Seeds 1-3 did not run: seed 0's best valid, {valid}, did not reach the shipped "
               "BRL seed 0's 0.820577, the gate fixed in docs/RECIPE.md before it ran")
# The bar every molhiv probe's rule 2 set, fixed in RECIPE before each ran: the shipped
# BRL seeds 0-3's mean best valid.
_SHIPPED_MEAN_VALID = "0.827189"
# What a probe that passed the gate and then missed that bar says.
_RULE_2_MISSED = ("Seed 0 reached the gate (valid {seed0}), so seeds 1-3 ran, and BRL's mean "
                  "best valid over the four, {mean}, is not above the shipped seeds 0-3's "
                  f"{_SHIPPED_MEAN_VALID}, the bar fixed in docs/RECIPE.md before they ran")
# Every molhiv recipe before weight decay 0.1 with the weight average had AdamW's
# weight decay at 1e-5 and no average of the weights.
_WD_1E5 = ("train.weight_decay=1e-5", "train.ema_decay=null")
_WITH_WD_1E5 = ", with weight decay 1e-5 and no average of the weights"
MOLHIV = Protocol(
    "ogbg-molhiv-e100", "Full OGB protocol: 100 epochs, 10 seeds", "configs/ogbg-molhiv.yaml",
    100, "ROC-AUC", (("GPS", 0.7880, 0.0101), ("GIN-virtual", 0.7707, 0.0149)),
    "OGB leaderboard, test ROC-AUC", {BRL: 0.785, MPNN: 0.77},
    # Ten seeds, as OGB's leaderboard rows; four was issue 11's minimum and the first
    # figure reported, so RESULTS keeps each target model's figures over its first four
    # seeds beside the table's current mean (the ten-seed one once all have run).
    seeds=10, interim_seeds=4,
    note=("OGB's leaderboard takes the mean and unbiased std over ten seeds, 0-9, as the "
          "published rows do. Seeds 4-9 were added after seeds 0-3, issue 11's minimum, left "
          "BRL short of its target; the rule for them, fixed in docs/RECIPE.md before they "
          "ran, is that the ten-seed figure of each model is the one set against the targets, "
          "whatever it is, and that no interim mean decides anything."),
    earlier=(Earlier("ogbg-molhiv-e100-wd1e5",
                     "AdamW weight decay 1e-5 and no average of the weights, the config's "
                     "values before `weight_decay: 0.1` and `ema_decay: 0.999`; both models",
                     _WD_1E5),
             Earlier("ogbg-molhiv-e100-unfolded",
                     "unfolded reservoir projections, the config's value before `fold: true`"
                     + _WITH_WD_1E5 + "; the twin has no reservoir, but its width was matched "
                     "to the unfolded BRL's 437k parameters",
                     ("model.fold=false", *_WD_1E5)),
             Earlier("ogbg-molhiv-e100-postnorm",
                     "post-norm layers and unfolded projections, the config's values before "
                     "`pre_norm: true` and `fold: true`" + _WITH_WD_1E5,
                     ("model.pre_norm=false", "model.fold=false", *_WD_1E5))),
    # The fourth, fifth and seventh probes ran all four seeds, under a rule that
    # docs/RECIPE.md fixed before they ran: each ships only if BRL's mean valid over them
    # is above the shipped seeds 0-3's 0.827189.
    probes=(Probe("ogbg-molhiv-e100-k16",
                  "sixteen tokens instead of the config's eight, `num_tokens: 16` "
                  "(371,201 parameters against 370,689), BRL only",
                  ("model.num_tokens=16",),
                  _RULE_2_MISSED.format(seed0="0.833241", mean="0.825975")),
            Probe("ogbg-molhiv-e100-rtok",
                  "a head that also reads the mean of the last layer's tokens, "
                  "`readout_tokens: true` (374,913 parameters against 370,689), BRL only",
                  ("model.readout_tokens=true",),
                  _RULE_2_MISSED.format(seed0="0.824371", mean="0.815283")),
            Probe("ogbg-molhiv-e100-drop02",
                  "dropout 0.2 instead of the config's 0.05, BRL only",
                  ("model.dropout=0.2",),
                  "All four seeds ran, and BRL's mean best valid over them, 0.819942, is not "
                  f"above the shipped seeds 0-3's {_SHIPPED_MEAN_VALID}, the bar fixed in "
                  "docs/RECIPE.md before its seeds ran"),
            Probe("ogbg-molhiv-e100-c72",
                  "72 channels (465,985 parameters) instead of the config's 64 (370,689), "
                  "BRL only", ("model.channels=72",), _BELOW_GATE.format(valid=0.819301)),
            Probe("ogbg-molhiv-e100-attn05",
                  "attention dropout 0.5 on the token path instead of the config's 0.2, BRL only",
                  ("model.attn_dropout=0.5",), _BELOW_GATE.format(valid=0.820421))),
    probes_note=("Seven probes have run against the shipped recipe, in this order: attention "
                 "dropout 0.5, width 72, depth 5, dropout 0.2, then a token readout and four "
                 "tokens side by side, then sixteen tokens. Depth 5 and four tokens stopped at "
                 "epoch 60 with no row, their seed 0's best valid (0.804585 and 0.811150) short "
                 "of the same gate as the first two (docs/RECIPE.md). None has been taken "
                 "over. A probe is chosen on valid; the test figures below are reported and "
                 "choose nothing."),
    gpu=GpuRun("OGB's protocol as above (100 epochs) for all three models",
               "--epochs 100 --warmup-epochs 0"))
# Every Peptides-func recipe before weight decay 0.1 with the weight average ran
# without either; every one before the folded one (stored commands name their own
# width) also had unfolded projections and a head on the pooled nodes only.
_NO_DECAY = ("train.weight_decay=0.0", "train.ema_decay=null")
_UNFOLDED_NODE_HEAD = ("model.fold=false", "model.readout_tokens=false")
_BEFORE_FOLD = ("; unfolded at 64 channels with a head on the pooled nodes only, as every "
                "recipe before `fold: true`, and without weight decay or the average")
_BRL_ONLY = ("; BRL only: the twin has no tokens, and its matched width is 104 under both")
PEPTIDES = Protocol(
    "peptides-func-e60", "Full LRGB protocol: 60 epochs, 4 seeds", "configs/peptides-func.yaml",
    60, "AP", (("GPS", 0.6535, 0.0041), ("tuned GCN", 0.6860, 0.0050)),
    "LRGB (GPS) and Tönshoff et al. 2023 (tuned GCN), test AP", {BRL: 0.62}, clear_of_mpnn=True,
    earlier=(Earlier("peptides-func-e60-nodecay",
                     "no weight decay and no average of the weights, the config's values before "
                     "`weight_decay: 0.1` and `ema_decay: 0.999`; both models",
                     _NO_DECAY),
             Earlier("peptides-func-e60-nodereadout",
                     "a head that reads the pooled nodes only (418k parameters), the config's "
                     "value before `readout_tokens: true`, without weight decay or the "
                     "average" + _BRL_ONLY,
                     ("model.readout_tokens=false", *_NO_DECAY)),
             Earlier("peptides-func-e60-unfolded",
                     "unfolded reservoir projections at 64 channels (438k parameters) and a "
                     "head on the pooled nodes only, the config's values before `fold: true` "
                     "at 68 channels, without weight decay or the average" + _BRL_ONLY,
                     ("model.channels=64", *_UNFOLDED_NODE_HEAD, *_NO_DECAY)),
             Earlier("peptides-func-e60-dropout01",
                     "dropout 0.1, the config's value before `dropout: 0.0`" + _BEFORE_FOLD,
                     ("model.dropout=0.1", *_UNFOLDED_NODE_HEAD, *_NO_DECAY)),
             Earlier("peptides-func-e60-postnorm",
                     "post-norm layers and dropout 0.1, the config's values before "
                     "`pre_norm: true` and `dropout: 0.0`" + _BEFORE_FOLD,
                     ("model.pre_norm=false", "model.dropout=0.1", *_UNFOLDED_NODE_HEAD,
                      *_NO_DECAY)),
             Earlier("peptides-func-e60-bs128",
                     "batch 128, post-norm layers and dropout 0.1, the config's values before "
                     "batch 32, `pre_norm: true` and `dropout: 0.0`" + _BEFORE_FOLD,
                     ("model.pre_norm=false", "model.dropout=0.1", *_UNFOLDED_NODE_HEAD,
                      *_NO_DECAY))),
    note=("BRL's seeds are 1-4, not 0-3: seed 0 under this config is the run weight decay "
          "0.1 with the average was chosen on (test AP 0.6315 at valid 0.6522), and a rerun "
          "of the same command is bit-identical on this CPU, so it cannot run fresh; it stays "
          "out of the mean so that the luck of the choice does not lift it (docs/RECIPE.md)."),
    gpu=GpuRun("LRGB's own budget (200 epochs at batch 128, 5 warm-up epochs; the config's "
               "other settings, lr 1e-3 included, which were chosen at batch 32) for all three "
               "models", "--epochs 200 --warmup-epochs 5 --set train.batch_size=128"))


class SeedRun(NamedTuple):
    """One seed's run under a protocol, read at its best validation epoch."""
    seed: int
    test: float
    epoch: Optional[int]  # the best validation epoch, where the row holds it
    valid: Optional[float] = None  # the valid metric there, where the row holds it


@dataclass
class ModelStats:
    """One model's runs under the protocol: test at the best valid epoch per seed."""
    model: str
    per_seed: List[SeedRun] = field(default_factory=list)
    epochs: List[int] = field(default_factory=list)
    num_params: Optional[int] = None

    @property
    def mean_std(self) -> Tuple[float, float]:
        return mean_std([r.test for r in self.per_seed])

    @property
    def valid_mean_std(self) -> Optional[Tuple[float, float]]:
        """The valid metric at the selected epochs, mean and std.

        All or nothing: ``None`` (shown as "—") if any seed's row lacks it, so that
        the figure never silently covers fewer seeds than the test figure beside it.
        """
        valid = [r.valid for r in self.per_seed]
        if not valid or any(v is None for v in valid):
            return None
        return mean_std(valid)

    @property
    def n(self) -> int:
        return len(self.per_seed)


def protocol_stats(data: Optional[Mapping[str, Any]]) -> Dict[str, ModelStats]:
    """``{model: ModelStats}`` from the rows that hold a test value, seeds in order."""
    stats: Dict[str, ModelStats] = {}
    order = list(NAMES)

    def key(r: Mapping[str, Any]) -> tuple:
        return (order.index(r["model"]) if r["model"] in order else len(order), r["model"], r["seed"])

    for r in sorted((data or {}).get("rows") or [], key=key):
        if r.get("test") is None:
            continue
        s = stats.setdefault(r["model"], ModelStats(r["model"]))
        valid = r.get("valid")
        s.per_seed.append(SeedRun(int(r["seed"]), float(r["test"]), r.get("best_epoch"),
                                  None if valid is None else float(valid)))
        s.epochs = sorted(set(s.epochs) | {r.get("epochs")} - {None})
        s.num_params = r.get("num_params", s.num_params)
    return stats


def protocol_verdict(p: Protocol, stats: Mapping[str, ModelStats]) -> Verdict:
    """Holds when every target is met over :attr:`Protocol.seeds` seeds; "partial:
    <model> N, ... of <seeds> seeds" (each model named by a target that has fewer)
    while any of them has fewer. Once complete, the evidence names each target as
    hit or missed with the mean and the bar, ahead of the figures."""
    needed = _needed(p)
    if not stats:
        return ("untested", f"{p.stem}: no runs yet")
    ev = "; ".join(f"{m} {_mean_std_text(s)} (n={s.n})"
                   for m, s in stats.items())
    counts = {m: stats[m].n if m in stats else 0 for m in needed}
    fewest = min(counts.values())
    if fewest < p.seeds:
        short = ", ".join(f"{m} {n}" for m, n in counts.items() if n < p.seeds)
        return ("partial", f"partial: {short} of {p.seeds} seeds; {p.metric} {ev}")
    # Each target is named with its outcome, so that a "partial" verdict says which
    # part was hit and which was missed without the reader redoing the comparison.
    ok, parts = [], []
    for m, bar in p.targets.items():
        mean = stats[m].mean_std[0]
        hit = mean >= bar
        ok.append(hit)
        parts.append(f"{m} {'hit' if hit else 'missed'} ({mean:.4f} {'>=' if hit else '<'} {bar})")
    if p.clear_of_mpnn:
        brl, twin = stats[BRL].mean_std, stats[MPNN].mean_std
        clear = clear_gap(brl, twin)
        ok.append(clear)
        parts.append(f"{BRL} above {MPNN} by {'more' if clear else 'no more'} than the larger "
                     f"std ({brl[0] - twin[0]:.4f} vs {max(brl[1], twin[1]):.4f})")
    status = "holds" if all(ok) else ("fails" if not any(ok) else "partial")
    return (status, f"{'; '.join(parts)}; {p.metric} {ev}")


def _needed(p: Protocol) -> List[str]:
    """The models :attr:`Protocol.targets` (and the twin, when BRL must clear it) name."""
    return list(p.targets) + ([MPNN] if p.clear_of_mpnn and MPNN not in p.targets else [])


def _mean_std_text(s: ModelStats) -> str:
    """``mean ± std``; one seed has no spread, so only its value is shown."""
    return _spread_text(s.mean_std, s.n, " (one seed)")


def _spread_text(figure: Tuple[float, float], n: int, one: str = "") -> str:
    """``mean ± std`` over ``n`` seeds; one seed has no spread, so its value and ``one``."""
    mean, std = figure
    return f"{mean:.4f} ± {std:.4f}" if n > 1 else f"{mean:.4f}{one}"


def _valid_text(s: ModelStats) -> str:
    """The valid metric at the selected epochs as ``mean ± std`` (one seed: its value)."""
    valid = s.valid_mean_std
    return "—" if valid is None else _spread_text(valid, s.n)


def _model_line(s: ModelStats) -> List[str]:
    return [f"{NAMES.get(s.model, s.model)} (`{s.model}`)", _per_seed_text(s), _mean_std_text(s),
            _valid_text(s), str(s.n), ", ".join(str(e) for e in s.epochs) or "—",
            fmt(s.num_params)]


def _targets_text(p: Protocol) -> str:
    bars = " and ".join(f"{_short_name(m)} >= {bar}" for m, bar in p.targets.items())
    clear = (", BRL above the MPNN twin by more than the larger of their stds over seeds"
             if p.clear_of_mpnn else "")
    return f"Targets: {bars}{clear}; a verdict once every model named has {p.seeds} seeds."


def protocol_section(p: Protocol, data: Optional[Mapping[str, Any]],
                     others: Optional[Mapping[str, Any]] = None) -> Tuple[str, Verdict]:
    """The protocol's table (our runs, then the published rows) and its verdict;
    ``others`` maps the stems of :attr:`Protocol.candidates`, :attr:`Protocol.probes`
    and :attr:`Protocol.earlier` to their data."""
    stats = protocol_stats(data)
    command = (f"python experiments/graph_property.py --config {p.config} --root ../shared/datasets "
               f"--epochs {p.epochs} --warmup-epochs 0 --seeds {p.seed_list()} "
               f"--json benchmarks/results/{p.stem}.json")
    lines = [_model_line(stats[m]) for m in NAMES if m in stats]
    lines += [_model_line(s) for m, s in stats.items() if m not in NAMES]
    lines += [[f"{name} (published)", "—", f"{mean:.4f} ± {std:.4f}", "—", "—", "—", "—"]
              for name, mean, std in p.published]
    text = (f"### {p.title}\n\n"
            f"Test {p.metric} at each seed's best validation epoch (ep), mean ± sample std over "
            f"seeds, from `benchmarks/results/{p.stem}.json`; beside it the valid {p.metric} at "
            f"the same epochs, the figure selection maximised. Published rows: {p.source}. "
            + _targets_text(p) + (f" {p.note}" if p.note else "") + "\n\n"
            + table(["model", f"test {p.metric} per seed", "mean ± std", "valid, mean ± std",
                     "seeds", "epochs", "parameters"], lines) + "\n\n"
            + _interim_text(p, stats))
    rows = list((data or {}).get("rows") or [])
    drivers = list(dict.fromkeys(r["driver"] for r in rows if r.get("driver")))
    if not stats:
        text += (f"Not run yet. Commands (one process per model):\n\n    {command} --models brl\n"
                 f"    {command} --models mpnn\n")
    else:
        text += ("Driver calls:\n\n" + commands_block(drivers or [command]) + "\n\n"
                 "Commands (one per model and seed):\n\n"
                 + commands_block([r["command"] for r in rows if r.get("command")]) + "\n")
        # a model the targets name with no rows yet, e.g. after a recipe change
        missing = [m for m in _needed(p) if m not in stats]
        if missing:
            text += ("\nNot run yet: " + ", ".join(_short_name(m) for m in missing) + ".\n\n"
                     + commands_block([f"{command} --models {m}" for m in missing]) + "\n")
    if p.gpu is not None:
        text += (f"\nOn a CUDA GPU, {p.gpu.what}, {p.seeds} seeds each, one run after "
                 "another, in one command (`DATA`: the folder holding the dataset; "
                 "`$BRL_RUNS`: a folder outside the work tree for the run folders, e.g. "
                 "`~/.cache/brl_graph/runs`; calling it again resumes killed runs):\n\n"
                 f"    {p.gpu_command()}\n")
    if p.probes_note:
        text += f"\n{p.probes_note}\n"
    for c in p.candidates:
        text += _candidate_text(c, (others or {}).get(c.stem), p.seeds)
    for probe in p.probes:
        text += _probe_text(probe, (others or {}).get(probe.stem))
    for e in p.earlier:
        text += _earlier_text(e, (others or {}).get(e.stem))
    return text, protocol_verdict(p, stats)


def _interim_text(p: Protocol, stats: Mapping[str, ModelStats]) -> str:
    """Each target model's figures over its first :attr:`Protocol.interim_seeds` seeds,
    the figure reported before the protocol took more (``""``: no interim count, or a
    model short of it)."""
    n = p.interim_seeds
    needed = _needed(p)
    if n is None or any(m not in stats or stats[m].n < n for m in needed):
        return ""
    first = {m: ModelStats(m, stats[m].per_seed[:n]) for m in needed}
    figures = "; ".join(f"{_short_name(m)} {_mean_std_text(s)} (valid {_valid_text(s)}, seeds "
                        f"{', '.join(str(r.seed) for r in s.per_seed)})"
                        for m, s in first.items())
    return (f"Over each model's first {n} seeds, the figures reported while the protocol took "
            f"{n} seeds, kept for the record and not a verdict: {figures}.\n\n")


def _per_seed_text(s: ModelStats) -> str:
    """``s1 0.6063 (ep 45), s2 ...``: each seed's test figure and its epoch."""
    return ", ".join(f"s{r.seed} {r.test:.4f}" + (f" (ep {r.epoch})" if r.epoch is not None else "")
                     for r in s.per_seed)


def _candidate_text(c: Candidate, data: Optional[Mapping[str, Any]], seeds: int) -> str:
    """The rows of a recipe under test: figures, the mean over its seeds so far, commands."""
    every = list((data or {}).get("rows") or [])
    rows = [r for r in every if (r["model"], int(r["seed"])) not in c.chosen_on]
    left_out = sorted({(r["model"], int(r["seed"])) for r in every} & set(c.chosen_on))
    # the valid figure is what decides whether the config takes the candidate over
    figures = _seed_figures(protocol_stats({"rows": rows}), valid=True, of_seeds=seeds)
    if not figures:
        return ""
    skipped = ("".join(f" {_short_name(m)}'s seed {seed} is the run the "
                       "candidate was chosen on and is left out." for m, seed in left_out))
    overrides = " ".join(c.overrides)
    return (f"\nA candidate recipe under test ({c.what}), `benchmarks/results/{c.stem}.json`, "
            f"not counted above until the config takes it over: {figures}.{skipped} Commands "
            f"(each with `{overrides}`):\n\n"
            + _commands_with(rows, c.overrides) + "\n")


def _seed_figures(stats: Mapping[str, ModelStats], valid: bool = False,
                  of_seeds: Optional[int] = None) -> str:
    """``BRL s0 0.7844 (ep 34), s1 ... (mean 0.7820 ± 0.0083, valid ...)`` per model,
    ``; ``-joined (``""``: no models): the test mean over two or more seeds, which a
    reader sets beside the protocol table's, the valid figure when ``valid``, and
    ``n of <of_seeds> seeds so far`` when ``of_seeds`` is given."""
    def summary(s: ModelStats) -> str:
        parts = ([f"mean {_mean_std_text(s)}"] if s.n > 1 else []) + (
            [f"valid {_valid_text(s)}"] if valid else []) + (
            [f"{s.n} of {of_seeds} seeds so far"] if of_seeds is not None else [])
        return f" ({', '.join(parts)})" if parts else ""

    return "; ".join(f"{_short_name(m)} {_per_seed_text(s)}{summary(s)}"
                     for m, s in stats.items())


def _recipe_figures(data: Optional[Mapping[str, Any]], valid: bool = False
                    ) -> Tuple[str, List[Mapping[str, Any]]]:
    """A recipe file's :func:`_seed_figures` (``""``: no rows with a test value) and
    its rows."""
    return (_seed_figures(protocol_stats(data), valid),
            list((data or {}).get("rows") or []))


def _probe_text(probe: Probe, data: Optional[Mapping[str, Any]]) -> str:
    """The rows of a probe not taken over: test and the valid that decided, and commands."""
    figures, rows = _recipe_figures(data, valid=True)
    if not figures:
        return ""
    overrides = " ".join(probe.overrides)
    return (f"\nA probe not taken over ({probe.what}), `benchmarks/results/{probe.stem}.json`, "
            f"not counted above: {figures}. {probe.outcome}. Commands "
            f"(each with `{overrides}`):\n\n"
            + _commands_with(rows, probe.overrides) + "\n")


def _earlier_text(e: Earlier, data: Optional[Mapping[str, Any]]) -> str:
    """The rows of an earlier recipe: figures and commands, outside the verdict."""
    figures, rows = _recipe_figures(data)
    if not figures:
        return ""
    overrides = " ".join(e.overrides)
    how = (f" (each with `{overrides}`, which runs the earlier recipe under today's config)"
           if overrides else "")
    return (f"\nAn earlier recipe ({e.what}), `benchmarks/results/{e.stem}.json`, not counted "
            f"above: {figures}. Commands{how}:\n\n"
            + _commands_with(rows, e.overrides) + "\n")


def _short_name(model: str) -> str:
    """``BRL``, ``MPNN twin``: the model's name without its parenthesised detail."""
    return NAMES.get(model, model).split(" (")[0]


def _commands_with(rows: Sequence[Mapping[str, Any]], overrides: Sequence[str]) -> str:
    """The rows' stored commands as a block, each carrying ``overrides``."""
    return commands_block([_with_overrides(r["command"], overrides)
                           for r in rows if r.get("command")])


def _with_overrides(command: str, overrides: Sequence[str]) -> str:
    """``command`` with each of ``overrides`` appended unless it already holds it."""
    words = command.split()
    return " ".join(words + [o for o in overrides if o not in words])


def target_line(p: Protocol) -> str:
    """The protocol's target, as the closing table of targets states it."""
    bars = ", ".join(f"{m} >= {bar}" for m, bar in p.targets.items())
    extra = ", BRL above mpnn by more than the seed spread" if p.clear_of_mpnn else ""
    return (f"{p.stem.split('-e')[0]}, full protocol ({p.epochs} epochs, {p.seeds} seeds): "
            f"{bars} test {p.metric}{extra}")


def protocol_parts(results: Mapping[str, Any], protocols: Sequence[Protocol] = (MOLHIV, PEPTIDES)
                   ) -> Dict[str, Tuple[str, Verdict]]:
    """``{stem: (text, verdict)}`` for every protocol."""
    return {p.stem: protocol_section(p, results.get(p.stem),
                                     {e.stem: results.get(e.stem)
                                      for e in (*p.earlier, *p.candidates, *p.probes)})
            for p in protocols}
