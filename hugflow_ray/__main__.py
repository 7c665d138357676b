"""``python -m hugflow_ray``."""

from hugflow_ray.cli import main

main()
