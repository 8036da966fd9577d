"""Built-in delivery methods: how a finished export reaches its requester."""
