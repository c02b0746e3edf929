#!/bin/sh
# The offline job of docker-compose.yml's `build` service: python -m models.build with its parameters
# taken from environment variables, so `DATASET=csv INPUT=/data/my.csv K=64 docker compose up` works.
#
#   DATASET              simulation (default) | csv | goodbooks
#   INPUT                csv: the file; goodbooks: the folder (paths inside the container, e.g. /data/...)
#   K                    embedding dimension                  (--k)
#   LAMBDA_DENOISING     objective 1's lambda                 (--lambda-denoising)
#   LAMBDA_WEIGHT_DECAY  objective 2's lambda                 (--lambda-weight-decay)
#   SEED                 random seed                          (--seed)
#   BUILD_ARGS           any other flags, split on spaces     (e.g. "--movielens --min-value 4 --binarize")
#   ARTIFACTS_DIR        where versions are published         (default /artifacts, the named volume)
# Unset or empty variables keep the CLI's defaults; arguments given to this script are appended.
# Exit status is the job's: 0 published, 2 bad input or parameter (nothing published).
set -eu
set -- --dataset "${DATASET:-simulation}" --out "${ARTIFACTS_DIR:-/artifacts}" "$@"
if [ -n "${INPUT:-}" ]; then set -- "$@" --input "$INPUT"; fi
if [ -n "${K:-}" ]; then set -- "$@" --k "$K"; fi
if [ -n "${LAMBDA_DENOISING:-}" ]; then set -- "$@" --lambda-denoising "$LAMBDA_DENOISING"; fi
if [ -n "${LAMBDA_WEIGHT_DECAY:-}" ]; then set -- "$@" --lambda-weight-decay "$LAMBDA_WEIGHT_DECAY"; fi
if [ -n "${SEED:-}" ]; then set -- "$@" --seed "$SEED"; fi
# shellcheck disable=SC2086  # BUILD_ARGS is a list of flags: word splitting is the point
set -f  # no globbing of BUILD_ARGS
exec python -m models.build "$@" ${BUILD_ARGS:-}
