"""The labels that name the compared models in results rows, scripts and ``docs/RESULTS.md``.

One label per concept, spelled as the config's ``model.global_attn`` value
where there is one:

- ``brl``: the BRL global branch (K learned tokens);
- ``brl-k1``: BRL with a single token (``model.num_tokens=1``), the classic
  virtual node with a content-addressed read and write;
- ``mpnn``: the MPNN-only baseline, the same model without a global branch
  (``model.num_tokens=0``; prose calls it "the MPNN twin");
- ``full``: GPS-style multihead full attention (PyG's ``GPSConv``);
- ``performer``: GPS with Performer attention.

Results files written before these labels were fixed hold other spellings,
and drivers started from an older checkout keep writing them. Every reader
maps them through :func:`canonical_model`, the one place that knows them.
This module imports nothing, so scripts and the package can share it.
"""
from typing import Dict

BRL = "brl"
BRL_K1 = "brl-k1"
MPNN = "mpnn"
FULL = "full"
PERFORMER = "performer"

#: Legacy label -> label. Kept for reading (and re-running the stored commands
#: of) older results: ``twin`` (graph-property and long-range sweeps, step
#: times), ``local`` (scaling), ``gps`` (step times), ``gps-multihead`` and
#: ``gps-performer`` (scaling).
LEGACY_MODEL_LABELS: Dict[str, str] = {
    "twin": MPNN,
    "local": MPNN,
    "gps": FULL,
    "gps-multihead": FULL,
    "gps-performer": PERFORMER,
}


def canonical_model(label: str) -> str:
    """The current label of ``label``: itself, or what a legacy label became.

    Also usable as an ``argparse`` ``type=`` so a stored command with a legacy
    label still runs.
    """
    return LEGACY_MODEL_LABELS.get(label, label)
