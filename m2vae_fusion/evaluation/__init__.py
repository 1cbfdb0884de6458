"""How good a perception model is: classification per sensor subset offline, and the live scoreboard against ground truth."""
