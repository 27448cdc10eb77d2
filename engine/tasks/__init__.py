"""The task side: built-in and custom tasks, their data, metrics and evaluation."""
