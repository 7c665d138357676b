"""``python -m hugflow_ray``."""

from hugflow_ray.cli.main import main

main()
