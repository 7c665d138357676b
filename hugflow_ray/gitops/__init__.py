"""The pull-request workflow: the gate (who may sync what), the living comment, and the control plane."""
