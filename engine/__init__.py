"""The headless side of budgettui: advise, train, record.

Only the modules that train import torch, transformers, trl, peft or bitsandbytes, and only
when called: `engine --help`, `engine advise` and everything the TUI imports stay light.
"""
