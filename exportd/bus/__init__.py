"""The message bus: RabbitMQ (aio-pika) for the service, in-process for the embedded mode."""
