#!/bin/sh
# A container's entrypoint (a Hugging Face Space, a training image): bring the datasets in, then start the app.
#
#     ENV HUGFLOW_TIER=minimal STORAGE_ROOT=/data/datasets MAX_STORAGE_GB=150
#     ENTRYPOINT ["/opt/hugflow/src/cluster/entrypoint.sh"]
#     CMD ["python", "app.py"]
#
# Run from the checkout that holds requests/ and catalog.yaml. A failed dataset is reported and the app starts
# anyway with what is there (set HUGFLOW_RECONCILE_STRICT=1 to refuse to start instead); the next start resumes.
set -u
cd "$(dirname "$0")/.." || exit 1
if ! hugflow reconcile --apply; then
    echo "entrypoint: some datasets could not be brought in (see above); the next start resumes them" >&2
    if [ "${HUGFLOW_RECONCILE_STRICT:-0}" = "1" ]; then
        exit 1
    fi
fi
[ "$#" -gt 0 ] || exit 0
exec "$@"
