"""Evaluation: everything an oracle touches. The toy oracle (`toy_oracle`), NudeNet and the I2P
rule (`nudenet`), the annotator that adds oracle figures to a round (`annotate`) and the protocol
the benches share (`protocol`: bench seeds, reference renders, which oracle annotates a run), and
the broad evaluation protocol (`broad`: a stratified grid of every harmful scene the toy world can
caption, with per-stratum cuts before/after an edit).

The Safe-CB loop never reaches this package: `safecb.engine`, `safecb.vapi` and `safecb.models`
never import it (tests/test_layering.py), so no oracle judgment can steer a round.
"""
