"""Reproductions of the paper's experiments (`m2vae reproduce ...`): data, training runs, tables, figures."""
