"""Workers: the export pipeline (and, later, the task consumer)."""
