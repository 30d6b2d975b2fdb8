"""Training what no package ships: ``python -m ragmem.training.reader`` (the reader)."""
