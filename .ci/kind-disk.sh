#!/usr/bin/env bash
# Disk for the e2e-kind job (.github/workflows/ci.yml) on a GitHub-hosted runner, before anything
# is built or pulled; the budget is in docs/kubernetes.md ("The kind job's budget").
#   .ci/kind-disk.sh              free the runner's preinstalled SDKs, put Docker on the largest
#                                 filesystem with its classic image store, then check the space
#   .ci/kind-disk.sh --check GB DIR...   only the check: fail unless each DIR's filesystem has GB free
# Hosted runner disks have changed under us: once a ~19 GB-free root plus a larger /mnt, since
# about May 2026 (reported) one disk of 72 or 145 GB. Neither layout is assumed: the job frees
# what it can, uses /mnt only when it is a separate, larger filesystem, and stops at once, with
# the numbers, when the space is not there, rather than 20 minutes later inside `kind load`.
set -euo pipefail

free_gb() { echo $(($(df -Pk "$1" | awk 'NR == 2 {print $4}') / 1024 / 1024)); }

check() {  # GB DIR...: each DIR's filesystem must have GB free
  local need="$1" dir avail short=0
  shift
  for dir in "$@"; do
    avail="$(free_gb "$dir")"
    echo "free for $dir: ${avail} GB (need ${need} GB)"
    if [ "$avail" -lt "$need" ]; then
      echo "not enough disk for the kind job: ${avail} GB free for $dir, ${need} GB needed (docs/kubernetes.md, The kind job's budget)" >&2
      short=1
    fi
  done
  return "$short"
}

case "${1:-}" in
  --check) shift; [ $# -ge 2 ] || { echo "--check GB DIR..." >&2; exit 2; }; check "$@"; exit ;;
  -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "unknown argument: $1 (--help)" >&2; exit 2 ;;
esac

# 1. The runner image's SDKs this job never uses (the largest preinstalled trees; ~27 GB reported).
sudo rm -rf /usr/share/dotnet /usr/local/lib/android /opt/ghc /usr/local/.ghcup /opt/hostedtoolcache/CodeQL

# 2. Docker's data on /mnt only when that is a separate filesystem with more room, and the classic
#    image store: with containerd's image store (Docker 29's default on new installs) images live
#    in /var/lib/containerd whatever data-root says, and keep compressed and unpacked layers.
root_dir=/var/lib/docker tmp_dir=/tmp
if [ -d /mnt ] && [ "$(stat -c %d /mnt)" != "$(stat -c %d /)" ] && [ "$(free_gb /mnt)" -gt "$(free_gb /)" ]; then
  root_dir=/mnt/docker tmp_dir=/mnt/tmp
fi
sudo mkdir -p "$root_dir" "$tmp_dir" && sudo chmod 1777 "$tmp_dir"
{ sudo cat /etc/docker/daemon.json 2>/dev/null || echo '{}'; } |
  jq --arg root "$root_dir" '."data-root" = $root | .features."containerd-snapshotter" = false' |
  sudo tee /etc/docker/daemon.json.new >/dev/null
sudo mv /etc/docker/daemon.json.new /etc/docker/daemon.json && sudo systemctl restart docker
driver="$(docker info -f '{{.Driver}}')"
[ "$driver" = overlay2 ] || { echo "Docker's storage driver is $driver, not overlay2 (the classic image store)" >&2; exit 1; }
[ "$(docker info -f '{{.DockerRootDir}}')" = "$root_dir" ] || { echo "Docker did not take data-root $root_dir" >&2; exit 1; }
echo "Docker: $driver in $root_dir; TMPDIR=$tmp_dir (kind load's image tar)"
[ -z "${GITHUB_ENV:-}" ] || echo "TMPDIR=$tmp_dir" >>"$GITHUB_ENV"

# 3. The peak (~12 GB, an estimate: ~8.6 GB of images under Docker, ~3.5 GB of venv and models
#    on /) with a margin: 15 GB on one disk; 11 GB for Docker and 5 GB on / when they are apart.
df -h / "$root_dir"
if [ "$root_dir" = /var/lib/docker ]; then check 15 /; else check 11 "$root_dir" && check 5 /; fi
