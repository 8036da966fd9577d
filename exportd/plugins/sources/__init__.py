"""Built-in sources: rooms, workflows, qna."""
