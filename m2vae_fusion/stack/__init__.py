"""The trained perception model of the simulated AMiRo: dataset from bags, training, loading."""
