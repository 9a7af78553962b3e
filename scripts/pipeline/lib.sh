# Shared by the pipeline scripts (sourced, not run).
#
# Each environment of the pipeline is a lab of its own, and a lab's runtime
# state (nodes, HAProxy, its socket) and journal live in one data directory.
# So every environment gets DATA/envs/ENV, whose images/ and base/ are links
# to DATA/images and DATA/base: one image store, one base cache, so the image
# baked once is the image every environment runs, and the passes recorded in
# its manifest are seen by the next environment's gate.
#
# Knobs (environment variables):
#   ROLLOUT_DATA_DIR    the shared data directory [/var/lib/rollout as root]
#   ROLLOUT_PROJECT     the project [this repository]
#   ROLLOUT_BASE_CACHE  a prebuilt base to share instead of DATA/base
#   ROLE                the role to bake and roll out [web]
#   IMAGE_ID            the image (deploy, promote) [the id in ./image-id]
set -euo pipefail

PIPELINE_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ROLLOUT_BIN="${ROLLOUT_BIN:-$PIPELINE_REPO/.venv/bin/rollout}"
PYTHON_BIN="${PYTHON_BIN:-$PIPELINE_REPO/.venv/bin/python}"
PROJECT="${ROLLOUT_PROJECT:-$PIPELINE_REPO}"
if [[ -n "${ROLLOUT_DATA_DIR:-}" ]]; then
    DATA_ROOT="$ROLLOUT_DATA_DIR"
elif [[ "$(id -u)" == 0 ]]; then
    DATA_ROOT=/var/lib/rollout
else
    DATA_ROOT="$HOME/.local/share/rollout"
fi
ROLE="${ROLE:-web}"
# The environments in the order an image goes through them.
PIPELINE_ENVS=(dev staging prod)

die() {
    echo "pipeline: $*" >&2
    exit 2
}

known_env() {
    local env
    for env in "${PIPELINE_ENVS[@]}"; do
        [[ "$env" == "$1" ]] && return 0
    done
    die "unknown environment '$1' (the pipeline's: ${PIPELINE_ENVS[*]})"
}

# The data directory of ENV, made on first use with its links to the shared
# image store and base cache.
env_data_dir() {
    local dir="$DATA_ROOT/envs/$1"
    mkdir -p -m 0700 "$DATA_ROOT" "$DATA_ROOT/envs" "$dir" "$DATA_ROOT/images"
    if [[ ! -e "$DATA_ROOT/base" && -n "${ROLLOUT_BASE_CACHE:-}" ]]; then
        mkdir -p "$ROLLOUT_BASE_CACHE"
        ln -s "$(cd "$ROLLOUT_BASE_CACHE" && pwd)" "$DATA_ROOT/base"
    fi
    mkdir -p -m 0700 "$DATA_ROOT/base"
    local name
    for name in images base; do
        if [[ -L "$dir/$name" ]]; then
            continue
        elif [[ -e "$dir/$name" ]]; then
            die "$dir/$name: expected a link to $DATA_ROOT/$name; move it away and run again"
        fi
        ln -s "../../$name" "$dir/$name"
    done
    echo "$dir"
}

# `rollout --env ENV ARGS...` on ENV's data directory.
rollout_in() {
    local env="$1" dir
    shift
    dir="$(env_data_dir "$env")"
    "$ROLLOUT_BIN" --project "$PROJECT" --data-dir "$dir" --env "$env" "$@"
}

# The image id: $IMAGE_ID, else the one the build saved in ./image-id.
image_id() {
    if [[ -n "${IMAGE_ID:-}" ]]; then
        echo "$IMAGE_ID"
    elif [[ -s image-id ]]; then
        cat image-id
    else
        die "no image: set IMAGE_ID or run scripts/pipeline/build first (it writes ./image-id)"
    fi
}
