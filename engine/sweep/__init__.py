"""The paper's grid as one command: a sweep's definition and cells (`grid`) and its figure (`figure`)."""
