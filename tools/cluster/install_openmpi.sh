#!/usr/bin/env bash
# Install Open MPI's launcher (mpirun) from Debian packages when it is missing.
#
#   bash tools/cluster/install_openmpi.sh          # openmpi-bin (runtime + mpirun)
#   bash tools/cluster/install_openmpi.sh --dev    # also libopenmpi-dev (mpicc, headers), only
#                                                  # needed to build MPI code such as mpi4py
#
# Exit codes: 0 ok (already there or installed); 2 usage; 3 cannot install here (callers may skip).
#
# Running as root: Open MPI refuses to start as root unless told to, either with
#     mpirun --allow-run-as-root ...
# or with the environment
#     OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# On a box with fewer cores than ranks, add --oversubscribe (or OMPI_MCA_rmaps_base_oversubscribe=1).
# Each rank sees OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK,
# OMPI_COMM_WORLD_LOCAL_SIZE and OMPI_COMM_WORLD_NODE_RANK.
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"
want_dev=0
case ${1:-} in
"") ;;
--dev) want_dev=1 ;;
*)
    echo "usage: $0 [--dev]" >&2
    exit 2
    ;;
esac

log() { echo "install_openmpi: $*" >&2; }
skip() {
    log "cannot install Open MPI here: $*"
    exit 3
}

pkgs=()
command -v mpirun >/dev/null || pkgs+=(openmpi-bin)
# mpicc itself ships with openmpi-bin; the headers and libraries it needs come with libopenmpi-dev.
dev_installed() { dpkg-query -W -f='${Status}' libopenmpi-dev 2>/dev/null | grep -q 'ok installed'; }
if ((want_dev)) && ! dev_installed; then
    pkgs+=(libopenmpi-dev)
fi
if ((${#pkgs[@]} == 0)); then
    log "already installed: $(command -v mpirun) ($(mpirun --version 2>/dev/null | head -n1))"
    exit 0
fi
[[ $EUID -eq 0 ]] || skip "installing ${pkgs[*]} needs root"
command -v apt-get >/dev/null || skip "no apt-get to install ${pkgs[*]} with"

logfile=$(mktemp /tmp/install_openmpi.XXXXXX.log)
opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=300)
t0=$SECONDS
log "installing ${pkgs[*]} ..."
if ! DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "${pkgs[@]}" >"$logfile" 2>&1; then
    log "apt-get install failed; running apt-get update and retrying"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$logfile" 2>&1 || true
    if ! DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "${pkgs[@]}" >>"$logfile" 2>&1; then
        tail -n 15 "$logfile" >&2
        skip "apt-get install ${pkgs[*]} failed; full log in $logfile"
    fi
fi
command -v mpirun >/dev/null || skip "installed ${pkgs[*]} but there is still no mpirun on PATH"
rm -f "$logfile"
log "installed in $((SECONDS - t0)) s: $(mpirun --version 2>/dev/null | head -n1)"
