"""One home for every default, label key and media type."""

from __future__ import annotations

DEFAULT_SOCKET_PATH = "/run/containerd/containerd.sock"
DEFAULT_NAMESPACE = "default"
BACKEND_CONTAINERD = "containerd"
BACKEND_DOCKER = "docker"
BACKEND_APPLE = "apple"
BACKEND_SWARM = "swarm"
DEFAULT_RUNTIME = "io.containerd.runc.v2"
DEFAULT_SNAPSHOTTER = "overlayfs"
DEFAULT_STOP_TIMEOUT = 10.0

# Environment variables that point ctr-magic at a daemon.
ENV_SOCKET = "CTR_MAGIC_SOCKET"
ENV_NAMESPACE = "CTR_MAGIC_NAMESPACE"
ENV_BACKEND = "CTR_MAGIC_BACKEND"
ENV_REGISTRY = "CTR_MAGIC_REGISTRY"
ENV_HOME = "CTR_MAGIC_HOME"
# Comma-separated registries (host or host:port) that may be reached over plain HTTP.
ENV_INSECURE_REGISTRIES = "CTR_MAGIC_INSECURE_REGISTRIES"

# gRPC metadata keys containerd reads.
NAMESPACE_HEADER = "containerd-namespace"
LEASE_HEADER = "containerd-lease"

# Docker reference defaults.
DEFAULT_REGISTRY = "docker.io"
DEFAULT_TAG = "latest"
LEGACY_DEFAULT_REGISTRY = "index.docker.io"
REGISTRY_V2_HOST = "registry-1.docker.io"

# Media types.
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
MEDIA_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_MANIFEST_V1 = "application/vnd.docker.distribution.manifest.v1+json"
MEDIA_DOCKER_MANIFEST_V1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
MEDIA_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MEDIA_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

INDEX_MEDIA_TYPES = frozenset({MEDIA_OCI_INDEX, MEDIA_DOCKER_MANIFEST_LIST})
MANIFEST_MEDIA_TYPES = frozenset({MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST})
SCHEMA1_MEDIA_TYPES = frozenset({MEDIA_DOCKER_MANIFEST_V1, MEDIA_DOCKER_MANIFEST_V1_SIGNED})
CONFIG_MEDIA_TYPES = frozenset({MEDIA_OCI_CONFIG, MEDIA_DOCKER_CONFIG})

# containerd garbage-collection labels (as containerd's own client sets them).
LABEL_GC_ROOT = "containerd.io/gc.root"
LABEL_GC_REF_CONTENT = "containerd.io/gc.ref.content"
LABEL_GC_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot"
LABEL_UNCOMPRESSED = "containerd.io/uncompressed"
LABEL_DISTRIBUTION_SOURCE = "containerd.io/distribution.source"
LABEL_SNAPSHOT_REF = "containerd.io/snapshot.ref"
LABEL_GC_EXPIRE = "containerd.io/gc.expire"

# Labels ctr-magic puts on what it creates.
LABEL_PREFIX = "io.ctr-magic"
LABEL_LOG_PATH = "io.ctr-magic/log-path"
LABEL_IMAGE_NAME = "io.containerd.image.name"

# Any type URLs for specs stored in containers and exec processes.
SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"
PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process"
RUNC_OPTIONS_TYPE_URL = "containerd.runc.v1.Options"

# Containers, tasks and exec (containerd backend).
#: Where ctr-magic keeps per-container files (logs, resolv.conf): ``$CTR_MAGIC_HOME/data`` when
#: CTR_MAGIC_HOME is set, else this directory (expanded).
DEFAULT_DATA_DIR = "~/.local/share/ctr-magic"
DATA_SUBDIR = "data"
CONTAINER_LOG_NAME = "container.log"
CONTAINER_RESOLV_CONF_NAME = "resolv.conf"
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: Set by containerd's clients (ctr, nerdctl) from the image config's StopSignal.
LABEL_STOP_SIGNAL = "io.containerd.image.config.stop-signal"
#: Prefixes of the temporary directories ctr-magic creates (FIFO sets, rootfs peeks), so leaks can be found.
FIFO_DIR_PREFIX = "ctr-magic-io-"
ROOTFS_PEEK_PREFIX = "ctr-magic-rootfs-"
EXEC_ID_PREFIX = "ctr-magic-exec-"
#: Leases ctr-magic holds while creating a container expire on their own after this long, as the Go client's.
CREATE_LEASE_EXPIRY_SECONDS = 24 * 3600
TOPIC_TASK_EXIT = "/tasks/exit"
#: An event ctr-magic publishes to itself to learn that an Events subscription is live.
TOPIC_SUBSCRIPTION_PROBE = "/ctr-magic/probe"
PROBE_TYPE_URL = "types.ctr-magic.io/events/SubscriptionProbe"

# Snapshots, host mounts and CNI networking (containerd backend).
#: Temporary View snapshots (read-only mounts, commit) and host mount directories ctr-magic creates.
VIEW_SNAPSHOT_PREFIX = "ctr-magic-view-"
MOUNT_DIR_PREFIX = "ctr-magic-mnt-"
#: Labels on a checkpoint's committed snapshot: which container and version it holds.
LABEL_CHECKPOINT_CONTAINER = "io.ctr-magic/checkpoint.container"
LABEL_CHECKPOINT_VERSION = "io.ctr-magic/checkpoint.version"
DEFAULT_CNI_BIN_DIR = "/usr/lib/cni"
#: Where distributions put the CNI plugins; searched in order when the default directory is asked for.
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin", "/usr/libexec/cni")
#: The default CNI network ctr-magic writes when asked (or when the conf dir has none).
DEFAULT_NETWORK_NAME = "ctr-magic"
DEFAULT_BRIDGE = "ctrmagic0"
DEFAULT_SUBNET = "10.213.0.0/24"
#: Under the data directory: CNI configs (cni/net.d), IPAM state (cni/ipam); per namespace: results, pinned netns.
CNI_SUBDIR = "cni"
NETWORK_STATE_SUBDIR = "networks"

# Docker Engine API backend.
DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"
ENV_DOCKER_HOST = "DOCKER_HOST"
DOCKER_MIN_API_VERSION = "1.24"  # API versions ctr-magic speaks (1.41: Debian's dockerd 20.10; 1.51: socktainer)
DOCKER_MAX_API_VERSION = "1.51"

# Apple Container through socktainer.
SOCKTAINER_BINARY = "socktainer"
SOCKTAINER_SOCKET = "~/.socktainer/container.sock"  # socktainer always serves here ($HOME-relative)
SOCKTAINER_START_TIMEOUT = 30.0  # its start-up clean-up can take this long
