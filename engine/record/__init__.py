"""The run record: what a run leaves behind and how to read it — events, the store, home
paths, the run configuration, past runs, compute figures and one-line errors. Imports no torch:
this is the only part of the engine the TUI may import."""
