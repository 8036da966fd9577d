"""Workers: the task consumer, which runs the export kernel on the tasks of the bus."""
