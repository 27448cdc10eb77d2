"""The training side: models, TRL stages and their callbacks, checkpoints, and a run's life cycle.
Heavy libraries load only inside the functions that train."""
