#!/usr/bin/env bash
# The Jenkinsfile's stages, in order, on this machine's lab:
#   lab up dev, staging, prod -> build -> deploy dev -> promote staging ->
#   deploy staging -> (--approve) promote prod -> deploy prod
# Without --approve it stops before prod and says how to go on. Needs root.
# The labs stay up afterwards; take them down with
#   scripts/pipeline/run-local.sh --down
# Knobs: those of lib.sh (ROLLOUT_DATA_DIR, ROLLOUT_PROJECT, ROLE, VERSION...).
source "$(dirname "$0")/lib.sh"
here="$(dirname "$0")"
approve=false
case "${1:-}" in
    "") ;;
    --approve) approve=true ;;
    --down)
        for env in "${PIPELINE_ENVS[@]}"; do
            echo "pipeline: lab down $env" >&2
            rollout_in "$env" lab down >&2
        done
        exit 0 ;;
    *) die "usage: scripts/pipeline/run-local.sh [--approve | --down]" ;;
esac
[[ $# -le 1 ]] || die "usage: scripts/pipeline/run-local.sh [--approve | --down]"

# Labs first: a pool comes up on the role's first image, so the image built
# next is new to every pool and each deploy really rolls it out.
for env in "${PIPELINE_ENVS[@]}"; do
    echo "pipeline: lab up $env" >&2
    rollout_in "$env" lab up >&2
done
IMAGE_ID="$("$here/build")"
export IMAGE_ID
"$here/deploy" dev
"$here/promote" staging
"$here/deploy" staging
if ! $approve; then
    echo "pipeline: stopping before prod: $IMAGE_ID passed staging and waits for approval." >&2
    echo "pipeline: to go on: IMAGE_ID=$IMAGE_ID $here/promote prod && IMAGE_ID=$IMAGE_ID $here/deploy prod" >&2
    echo "pipeline: (or run $here/run-local.sh --approve)" >&2
    exit 0
fi
"$here/promote" prod
"$here/deploy" prod
echo "pipeline: $IMAGE_ID is in dev, staging and prod" >&2
