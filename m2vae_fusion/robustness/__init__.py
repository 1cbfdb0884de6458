"""Robustness: what the nodes count about the messages they take (diagnostics, published on
/diagnostics) and `m2vae fuzz`, which feeds the running node graph adversarial messages and checks
that nothing crashes, every belief stays finite and every rejection is counted."""
