"""The `hugflow` command and the demo: parse, call one function, print."""
