"""The edges to outside services, one module each: the Hub, GitHub, Slack. Only these import their clients."""
