"""Where a sync's driver runs: a child process on this host, or a Ray job on the cluster's storage node; the
control plane starts and follows one through :class:`~hugflow_ray.drivers.base.Driver`."""
