# Enter the m2vae_fusion environment: `source env.sh` (after `make setup`).
# Safe to source more than once. Works beside a sourced system ROS 2 (its paths are kept).

_m2vae_repo="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
_m2vae_venv="${M2VAE_VENV:-$_m2vae_repo/.venv}"

if [ ! -x "$_m2vae_venv/bin/python" ]; then
  echo "env.sh: $_m2vae_venv does not exist yet; run 'make setup' first" >&2
  return 1 2>/dev/null || exit 1
fi

# shellcheck disable=SC1091
. "$_m2vae_venv/bin/activate"

case ":${AMENT_PREFIX_PATH:-}:" in
  *":$VIRTUAL_ENV:"*) ;;
  *) export AMENT_PREFIX_PATH="$VIRTUAL_ENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
esac
# m2vae_msgs' typesupport libraries live in the venv's lib/.
case ":${LD_LIBRARY_PATH:-}:" in
  *":$VIRTUAL_ENV/lib:"*) ;;
  *) export LD_LIBRARY_PATH="$VIRTUAL_ENV/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;;
esac

export ROS_HOME="${ROS_HOME:-$_m2vae_repo/.ros}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# Shared-memory segment large enough for 640x480 images; the localhost variant also keeps
# UDP on loopback when ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST.
if [ "${ROS_AUTOMATIC_DISCOVERY_RANGE:-}" = "LOCALHOST" ]; then
  export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$_m2vae_repo/config/fastdds_localhost.xml}"
else
  export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$_m2vae_repo/config/fastdds.xml}"
fi
export MUJOCO_GL="${MUJOCO_GL:-egl}"
export PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-$MUJOCO_GL}"
mkdir -p "$ROS_HOME"

unset _m2vae_repo _m2vae_venv
